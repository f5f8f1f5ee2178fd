"""Grid files: the shipped grids load, flags parse, shapes that would not fit are skipped and named."""

from pathlib import Path

import pytest

from attnbench.errors import UserError
from attnbench.microbench import grid
from attnbench.microbench.base import DecodeShape, PrefillShape

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_decode_grid_covers_three_head_layouts_and_the_issue_grid():
    g = grid.load(ROOT / "scenarios/decode-grid.toml")
    shapes, skipped = g.shapes()
    assert g.op == "decode" and g.heads == ((16, 8, 128), (32, 8, 128), (64, 8, 64))
    assert len(shapes) + len(skipped) == 3 * 6 * 6
    assert all(isinstance(s, DecodeShape) and s.page_size == 16 and s.dtype == "bfloat16" for s in shapes)
    assert DecodeShape.uniform(256, 2048) in shapes and DecodeShape.uniform(1, 32768) in shapes


def test_shipped_prefill_grid_has_plain_and_chunked_prefill():
    shapes, _ = grid.load(ROOT / "scenarios/prefill-grid.toml").shapes()
    assert all(isinstance(s, PrefillShape) and s.causal for s in shapes)
    assert PrefillShape.uniform(8, 8192) in shapes
    assert any(s.paged for s in shapes) and any(not s.paged for s in shapes)


def test_shapes_over_the_memory_limit_are_skipped_with_a_reason(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text('name = "t"\n[microbench]\nop = "decode"\nheads = ["16/8/128"]\nbatch = [1, 256]\n'
                 'context = [1024, 32768]\nmax_kv_gib = 2\n')
    shapes, skipped = grid.load(f).shapes()
    assert [s.label() for s in shapes] == ["B1 ctx1024 H16/8/128 bf16", "B1 ctx32768 H16/8/128 bf16",
                                           "B256 ctx1024 H16/8/128 bf16"]
    assert len(skipped) == 1 and "B256 ctx32768" in skipped[0] and "32.0 GiB > max_kv_gib 2" in skipped[0]


@pytest.mark.parametrize("text,match", [
    ("[microbench]\nop = 'sideways'\ncontext=[1]", "op must be"),
    ("name = 'x'", "no \\[microbench\\] table"),
    ("[microbench]\nop = 'decode'\ncontext=[1]\nbach=[1]", "unknown \\[microbench\\] keys"),
    ("[microbench]\nop = 'prefill'\ncontext=[1]", "needs seqlen"),
    ("[microbench]\nop = 'decode'\ncontext=[1]\nheads=['16/3']", "multiple of KV"),
    ("[microbench\n", "not valid TOML"),
])
def test_bad_grid_files_give_one_line_errors(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(UserError, match=match) as e:
        grid.load(f)
    assert "\n" not in str(e.value)


def test_flag_parsers():
    assert grid.parse_ints("1,4, 8", "batch") == (1, 4, 8)
    assert grid.parse_ints("1k,32k", "context") == (1024, 32768)
    assert grid.parse_heads("16/8", 128) == (16, 8, 128) and grid.parse_heads("64/8/64") == (64, 8, 64)
    assert grid.dtype_name("fp16") == "float16"
    for bad in ("a,b", "0"):
        with pytest.raises(UserError):
            grid.parse_ints(bad, "batch")
    with pytest.raises(UserError, match="bf16 or fp16"):
        grid.dtype_name("fp8")
