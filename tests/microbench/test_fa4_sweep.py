"""The attnbench-fa4 sweep (attnbench.microbench.fa4_sweep): which shapes and candidates it runs,
how a shape's numbers become the tuning table row the launcher reads, and that it refuses to run
without a GPU. Timing itself is GPU work (scripts/device/kernels.sh runs it)."""

from dataclasses import replace
from pathlib import Path

import pytest

from attnbench.errors import UserError
from attnbench.kernels.fa4_decode import tuning
from attnbench.microbench import fa4_sweep
from attnbench.microbench.base import DecodeShape

ROOT = Path(__file__).resolve().parents[2]
GRID = ROOT / "scenarios" / "decode-grid.toml"
V3 = tuning.Tuning(128, 2, 6, smem_stages=3)


def test_sweeps_the_decode_grid_for_every_head_layout_and_page_size():
    shapes = fa4_sweep.shapes(GRID, "16/8/128,32/8/128,64/8/64", "16,128", None, None, None)
    assert {(s.q_heads, s.kv_heads, s.head_dim) for s in shapes} == {(16, 8, 128), (32, 8, 128), (64, 8, 64)}
    assert {s.page_size for s in shapes} == {16, 128}
    assert {s.batch for s in shapes} == {1, 4, 8, 32, 128, 256}
    assert {s.context for s in shapes} == {1024, 2048, 4096, 8192, 16384, 32768}
    assert len(shapes) == 6 * 6 * 3 * 2 == len(tuning.table().rows)  # one table row per shape class
    pairs = fa4_sweep.shapes(GRID, "16/8/128", None, None, None, "256x2048,1x32k")
    assert [(s.batch, s.context, s.page_size) for s in pairs] == [(256, 2048, 16), (1, 32768, 16)]


def test_candidates_start_with_the_fallback_and_hold_the_v3_ring():
    for group in (2, 4, 8):
        cands = fa4_sweep.candidates(group)
        assert cands[0] == tuning.fallback(group) and V3 in cands and len(set(cands)) == len(cands)


def test_grouped_heads_also_sweep_the_tensor_core_kernel_and_every_candidate_is_a_valid_config():
    from attnbench.kernels.fa4_decode.launcher import decode_configs

    assert not any(t.mma for t in fa4_sweep.candidates(1))  # one head per KV head: 1 of the tile's 16 rows
    for group in (2, 4, 8, 16):
        mma = [t for t in fa4_sweep.candidates(group) if t.mma]
        assert mma == list(fa4_sweep.MMA_CANDIDATES)
    for t in fa4_sweep.MMA_CANDIDATES:  # none is an error row by construction (shared memory, threads)
        for d in (64, 128):
            for group in (2, 8):
                decode_configs(t, dtype="bfloat16", head_dim=d, group=group, page_size=16)


def _result(t, gbps, ok=True):
    return {"tuning": t.spec(), "gbps": gbps, "ok": ok, "us": 1.0, "splits": 1, "rel_err": 1e-3}


def test_the_fastest_correct_candidate_becomes_the_row_the_launcher_chooses(tmp_path):
    shape = DecodeShape.uniform(256, 2048)
    fb = tuning.fallback(2)
    results = [_result(fb, 3250.0), _result(tuning.Tuning(256, 2, 3), 5000.0, ok=False), _result(V3, 4271.0),
               {"tuning": tuning.Tuning(128, 8, 3).spec(), "ok": False, "error": "ValueError: shared memory"}]
    row = fa4_sweep.row_for(shape, results, "h200-test")
    assert (row.group, row.head_dim, row.page_size, row.batch, row.context) == (2, 128, 16, 256, 2048)
    assert row.tuning == V3 and row.gbps == 4271.0 and row.fallback_gbps == 3250.0  # the wrong 5000 never wins
    table = tuning.Table((tuning.Row(2, 128, 16, 256, 2048), tuning.Row(2, 128, 16, 1, 32768)), {}, "t")
    path = table.merged([row], {"h200-test": "H200, test"}).save(tmp_path / "tuning.json")
    back = tuning.load(path)
    assert back.choose(group=2, head_dim=128, page_size=16, batch=256, context=2048) == V3
    # the unmeasured class borrows the one measured winner of its geometry
    assert back.choose(group=2, head_dim=128, page_size=16, batch=1, context=32768) == V3
    assert back.row(group=2, head_dim=128, page_size=16, batch=1, context=32768).tuning is None
    assert back.sources == {"h200-test": "H200, test"}
    nothing = fa4_sweep.row_for(shape, [_result(V3, 1.0, ok=False)], "x")
    assert nothing.tuning is None and nothing.gbps is None


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="checks the no-GPU message")
def test_without_cuda_it_says_so_and_exits_2(tmp_path, capsys):
    rc = fa4_sweep.main(["--shapes", "1x64", "--out", str(tmp_path / "s.json"), "--table", str(tmp_path / "t.json")])
    assert rc == 2 and "CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


def test_a_bad_grid_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match="decode grid"):
        fa4_sweep.shapes(ROOT / "scenarios" / "prefill-grid.toml", None, None, None, None, None)


@pytest.mark.gpu
def test_gpu_sweep_of_one_small_shape_writes_a_row(tmp_path):
    pytest.importorskip("cutlass")
    rc = fa4_sweep.main(["--shapes", "4x512", "--out", str(tmp_path / "s.json"), "--table", str(tmp_path / "t.json"),
                         "--repeats", "3"])
    assert rc == 0
    row = tuning.load(tmp_path / "t.json").row(group=2, head_dim=128, page_size=16, batch=4, context=512)
    assert row is not None and row.tuning is not None and row.gbps > 0


def test_the_device_kernel_studies_name_only_what_exists():
    """scripts/device/kernels.sh runs scenarios/h200-kernels-*.toml unattended on the GPU: a typo
    there costs a session. The sweep, the three sanitizers and the four backends are in them."""
    import re
    import subprocess

    subprocess.run(["bash", "-n", str(ROOT / "scripts" / "device" / "kernels.sh")], check=True)
    text = "\n".join(p.read_text() for p in sorted((ROOT / "scenarios").glob("h200-kernels-*.toml")))
    for path in set(re.findall(r"(?:tests|scenarios|scripts)/[\w/.-]+\.(?:py|toml|sh)", text)):
        assert (ROOT / path).is_file(), path
    for module in set(re.findall(r'"-m", "(attnbench[\w.]*)"', text)):
        assert (ROOT / module.replace(".", "/")).with_suffix(".py").is_file() or (ROOT / module).is_dir(), module
    assert "attnbench.microbench.fa4_sweep" in text
    for tool in ("memcheck", "racecheck", "synccheck"):
        assert f'"--tool", "{tool}"' in text, tool
    for backend in ("fa3", "flashinfer", "fa4", "attnbench-fa4"):
        assert f'"{backend}"' in text, backend


def test_two_sweeps_of_one_day_keep_their_own_provenance():
    import datetime as dt

    morning = fa4_sweep.source_key("NVIDIA H200", dt.datetime(2026, 12, 3, 9, 0, 0, tzinfo=dt.timezone.utc))
    noon = fa4_sweep.source_key("NVIDIA H200", dt.datetime(2026, 12, 3, 12, 0, 0, tzinfo=dt.timezone.utc))
    assert morning == "NVIDIA-H200-2026-12-03T09:00:00Z" and morning != noon
    table = tuning.Table((), {morning: "heads 32/8/128"}, "t")
    fa4_sweep.check_source(table, morning, "heads 32/8/128")  # the same run resumed: fine
    fa4_sweep.check_source(table, noon, "heads 16/8/128")
    with pytest.raises(UserError, match="describes another run"):
        fa4_sweep.check_source(table, morning, "heads 16/8/128")


def test_the_winner_alone_is_tried_again_with_each_launch_and_combine_refinement():
    plain = [t for group in (1, 2, 4, 8) for t in fa4_sweep.candidates(group)]
    assert not any(t.pdl or t.combine_warps != 1 for t in plain)
    v4 = fa4_sweep.MMA_CANDIDATES[0]
    assert fa4_sweep.refinements(v4, splits=33) == [replace(v4, pdl=True), replace(v4, combine_warps=4),
                                                    replace(v4, pdl=True, combine_warps=4)]
    assert fa4_sweep.refinements(v4, splits=1) == [replace(v4, pdl=True)]  # no combine to share out
    assert fa4_sweep.refinements(replace(v4, pdl=True, combine_warps=4), splits=33) == []  # nothing left
    # the refinement competes with the candidates for the row, like any other result
    results = [_result(v4, 3357.0), _result(replace(v4, pdl=True), 3420.0)]
    assert fa4_sweep.row_for(DecodeShape.uniform(1, 32768), results, "x").tuning == replace(v4, pdl=True)


def test_every_tuning_field_is_a_decoder_argument():
    """measure() builds each candidate's decoder from the Tuning's fields as they are."""
    import inspect
    from dataclasses import fields

    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    assert {f.name for f in fields(tuning.Tuning)} <= set(inspect.signature(FA4Decode).parameters)
