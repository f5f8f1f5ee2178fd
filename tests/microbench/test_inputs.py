"""Inputs must expose kernels that ignore the block table, read zeros, or skip output."""

import pytest

torch = pytest.importorskip("torch")

from attnbench.errors import UserError  # noqa: E402
from attnbench.microbench import inputs  # noqa: E402
from attnbench.microbench.base import DecodeShape  # noqa: E402


def test_pages_are_scattered_and_distinct():
    shape = DecodeShape(batch=4, context_lens=(64, 17, 1, 40), page_size=8, head_dim=16)
    inp = inputs.decode_inputs(shape, "cpu")
    used = [int(p) for i, n in enumerate(shape.context_lens) for p in inp.block_table[i, : -(-n // 8)]]
    assert len(set(used)) == len(used), "two sequences share a page"
    assert used != sorted(used), "pages are laid out in order: a kernel ignoring the block table would pass"
    assert inp.k_cache.shape[0] > len(used), "no spare garbage pages"
    assert inp.seq_lens.tolist() == [64, 17, 1, 40] and inp.block_table.dtype == torch.int32


def test_inputs_are_random_not_zero_and_output_poisoned():
    inp = inputs.decode_inputs(DecodeShape.uniform(2, 32, head_dim=16), "cpu")
    assert inp.q.abs().min() >= 0 and inp.q.std() > 0.5 and inp.k_cache.std() > 0.5
    assert torch.isnan(inp.out).all()
    assert inp.q.dtype == torch.bfloat16
    other = inputs.decode_inputs(DecodeShape.uniform(2, 32, head_dim=16), "cpu", seed=1)
    assert not torch.equal(inp.q, other.q)


def test_ragged_distribution_spec():
    lens = inputs.ragged_lengths("uniform:100:200", 50, seed=3)
    assert len(lens) == 50 and min(lens) >= 100 and max(lens) <= 200 and len(set(lens)) > 10
    logn = inputs.ragged_lengths("lognormal:16:4096", 50)
    assert min(logn) >= 16 and max(logn) <= 4096
    for bad in ("uniform:200:100", "normal:1:2", "uniform:0:10", "512"):
        with pytest.raises(UserError, match="--ragged"):
            inputs.parse_ragged(bad)
