"""check.py, the on-GPU acceptance script: what it covers, and that it fails cleanly without a GPU."""

import pytest

from attnbench.kernels.fa4_decode import check


def test_covers_the_acceptance_grid():
    shapes = [s for s, _ in check.SHAPES]
    assert {s.batch for s in shapes} >= {1, 4, 32, 256}
    assert {c for s in shapes for c in s.context_lens} >= {1, 17, 1000, 2048, 32768}
    assert {s.head_dim for s in shapes} == {64, 128}
    assert {s.dtype for s in shapes} == {"bfloat16", "float16"}
    assert {s.page_size for s in shapes} == {16, 64}
    assert any(s.ragged for s in shapes) and any(n not in (None, 1) for _, n in check.SHAPES)
    assert [t.label() for t in check.TIMED] == ["B256 ctx2048 H16/8/128 bf16", "B1 ctx32768 H16/8/128 bf16"]


def test_sanitize_mode_is_small_and_exercises_both_kernel_variants():
    assert all(sum(s.context_lens) <= 200 for s, _ in check.SANITIZE)
    assert {n for _, n in check.SANITIZE} >= {1, 4}


def test_without_cuda_it_says_so_and_exits_nonzero(capsys, tmp_path):
    torch = pytest.importorskip("torch")

    if torch.cuda.is_available():
        return
    assert check.main(["--out", str(tmp_path / "c.json"), "--watchdog", "60"]) == 2
    assert "no CUDA device" in capsys.readouterr().out
