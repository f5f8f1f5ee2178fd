"""The pure-torch split-KV decode: splitting then combining is the same attention as no split."""

import math

import pytest

torch = pytest.importorskip("torch")

from attnbench.kernels.fa4_decode import reference  # noqa: E402


def make_case(lengths, q_heads=8, kv_heads=2, dim=16, page_size=4, spare_pages=3, seed=0):
    """Random q and a paged cache whose pages are shuffled, so sequences own non-contiguous pages."""
    g = torch.Generator().manual_seed(seed)
    pages_each = [max(1, math.ceil(n / page_size)) for n in lengths]
    total = sum(pages_each) + spare_pages
    k_cache = torch.randn(total, page_size, kv_heads, dim, generator=g)
    v_cache = torch.randn(total, page_size, kv_heads, dim, generator=g)
    perm = torch.randperm(total, generator=g)
    width = max(pages_each)
    block_table = torch.full((len(lengths), width), total - 1, dtype=torch.int32)
    used = 0
    for b, n in enumerate(pages_each):
        block_table[b, :n] = perm[used:used + n].to(torch.int32)
        used += n
    q = torch.randn(len(lengths), q_heads, dim, generator=g)
    seq_lens = torch.tensor(lengths, dtype=torch.int32)
    return q, k_cache, v_cache, block_table, seq_lens, 1.0 / math.sqrt(dim)


def split_then_combine(case, num_splits, pages_per_split):
    out_p, lse_p = reference.split_decode(*case, num_splits, pages_per_split)
    return out_p, lse_p, reference.combine(out_p, lse_p)


def pps_for(lengths, page_size, num_splits):
    pages = max(math.ceil(n / page_size) for n in lengths)
    return max(1, math.ceil(pages / num_splits))


@pytest.mark.parametrize("num_splits", [1, 2, 3, 5, 8, 16])
def test_split_and_combine_equals_plain_decode(num_splits):
    lengths = [1, 7, 16, 33, 64]
    case = make_case(lengths)
    pps = pps_for(lengths, 4, num_splits)
    *_, out = split_then_combine(case, num_splits, pps)
    assert torch.allclose(out, reference.decode(*case), atol=1e-5, rtol=1e-5)


def test_length_one_is_the_single_value_row():
    case = make_case([1], q_heads=4, kv_heads=4)
    q, k_cache, v_cache, block_table, *_ = case
    out = reference.decode(*case)
    first = v_cache[block_table[0, 0].long(), 0]  # [Hkv, D]
    assert torch.allclose(out[0], first, atol=1e-6)
    *_, split_out = split_then_combine(case, 4, 1)
    assert torch.allclose(split_out[0], first, atol=1e-6)


def test_lengths_not_a_multiple_of_the_page_ignore_the_page_tail():
    lengths = [5, 13]
    case = make_case(lengths, page_size=4)
    q, k_cache, v_cache, block_table, seq_lens, scale = case
    before = reference.decode(*case)
    # Poison the unused tail of each sequence's last page: the result must not change.
    for b, n in enumerate(lengths):
        last = block_table[b, (n - 1) // 4].long()
        k_cache[last, n % 4:] = 1e4
        v_cache[last, n % 4:] = float("nan")
    assert torch.equal(reference.decode(*case), before)
    *_, out = split_then_combine(case, 3, 2)
    assert not torch.isnan(out).any()
    assert torch.allclose(out, before, atol=1e-5)


def test_fewer_tokens_than_splits_leaves_empty_splits_at_minus_inf_and_zero():
    case = make_case([3], page_size=1)
    out_p, lse_p, out = split_then_combine(case, 8, 1)
    assert torch.isfinite(lse_p[:3]).all()
    assert torch.isneginf(lse_p[3:]).all()
    assert torch.equal(out_p[3:], torch.zeros_like(out_p[3:]))
    assert not torch.isnan(out_p).any()
    assert torch.allclose(out, reference.decode(*case), atol=1e-5)


def test_short_sequence_in_a_batch_planned_for_a_long_one_has_empty_splits():
    lengths = [2, 200]
    case = make_case(lengths, page_size=4)
    out_p, lse_p, out = split_then_combine(case, 10, 5)
    assert torch.isneginf(lse_p[1:, 0]).all() and torch.isfinite(lse_p[:, 1]).all()
    assert torch.allclose(out, reference.decode(*case), atol=1e-5)


def test_zero_length_row_outputs_zeros_not_nan():
    case = make_case([0, 9])
    out_p, lse_p, out = split_then_combine(case, 4, 1)
    assert torch.isneginf(lse_p[:, 0]).all()
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    assert torch.equal(reference.decode(*case)[0], torch.zeros_like(out[0]))


def test_combine_is_exact_when_one_split_dominates_and_ignores_minus_inf():
    # exp(1000) overflows float32 unless the max LSE is subtracted first.
    out_p = torch.tensor([[[[1.0, 2.0]]], [[[3.0, 4.0]]], [[[9.0, 9.0]]]])  # [S=3, B=1, H=1, D=2]
    lse_p = torch.tensor([[[1000.0]]], dtype=torch.float32).expand(3, 1, 1).clone()
    lse_p[1] = 1000.0 + math.log(3.0)
    lse_p[2] = float("-inf")
    out = reference.combine(out_p, lse_p)
    assert torch.allclose(out, torch.tensor([[[2.5, 3.5]]]))  # weights 1:3, third split ignored


def test_combine_of_all_empty_splits_is_zero_not_nan():
    out = reference.combine(torch.zeros(4, 2, 3, 5), torch.full((4, 2, 3), float("-inf")))
    assert torch.equal(out, torch.zeros(2, 3, 5))


def test_lse_is_the_log_sum_exp_of_the_scaled_scores():
    case = make_case([6], q_heads=2, kv_heads=1, page_size=8)
    q, k_cache, _, block_table, _, scale = case
    _, lse_p = reference.split_decode(*case, 1, 1)
    k = k_cache[block_table[0, 0].long(), :6, 0]  # [6, D]
    expected = torch.logsumexp(q[0] @ k.T * scale, dim=-1)
    assert torch.allclose(lse_p[0, 0], expected, atol=1e-5)


def test_gqa_query_head_h_reads_kv_head_h_over_group():
    case = make_case([11], q_heads=8, kv_heads=2)
    q, k_cache, v_cache, block_table, seq_lens, scale = case
    out = reference.decode(*case)
    # Head 5 belongs to group 1 (heads 4..7): zeroing KV head 0 must not change it, but changes head 1.
    k_cache2, v_cache2 = k_cache.clone(), v_cache.clone()
    k_cache2[:, :, 0] = 0
    v_cache2[:, :, 0] = 0
    out2 = reference.decode(q, k_cache2, v_cache2, block_table, seq_lens, scale)
    assert torch.equal(out2[0, 4:], out[0, 4:])
    assert not torch.allclose(out2[0, :4], out[0, :4])


def test_plain_decode_matches_dense_softmax_attention():
    case = make_case([10, 3], q_heads=4, kv_heads=4, page_size=4)
    q, k_cache, v_cache, block_table, seq_lens, scale = case
    out = reference.decode(*case)
    for b, n in enumerate([10, 3]):
        pages = block_table[b, :math.ceil(n / 4)].long()
        k = k_cache[pages].reshape(-1, 4, 16)[:n]
        v = v_cache[pages].reshape(-1, 4, 16)[:n]
        for h in range(4):
            w = torch.softmax(k[:, h] @ q[b, h] * scale, dim=0)
            assert torch.allclose(out[b, h], w @ v[:, h], atol=1e-5)


def test_low_precision_inputs_are_computed_in_float32():
    case = make_case([20])
    q, k_cache, v_cache, block_table, seq_lens, scale = case
    half = (q.bfloat16(), k_cache.bfloat16(), v_cache.bfloat16(), block_table, seq_lens, scale)
    out = reference.decode(*half)
    assert out.dtype == torch.float32
    out_p, lse_p = reference.split_decode(*half, 5, 1)
    assert out_p.dtype == lse_p.dtype == torch.float32
    assert torch.allclose(reference.combine(out_p, lse_p), out, atol=1e-5)


def test_a_plan_too_small_for_the_sequence_is_an_error():
    case = make_case([40], page_size=4)
    with pytest.raises(ValueError, match="cover only"):
        reference.split_decode(*case, 2, 2)  # 2 * 2 * 4 = 16 tokens < 40


@pytest.mark.parametrize("seed", range(6))
def test_random_shapes_sweep(seed):
    g = torch.Generator().manual_seed(100 + seed)
    page_size = [1, 4, 16][seed % 3]
    kv_heads = [1, 2, 4][seed % 3]
    group = [1, 4, 8][(seed + 1) % 3]
    lengths = torch.randint(1, 90, (int(torch.randint(1, 5, (1,), generator=g)),), generator=g).tolist()
    case = make_case(lengths, q_heads=kv_heads * group, kv_heads=kv_heads, dim=8,
                     page_size=page_size, seed=seed)
    num_splits = int(torch.randint(1, 12, (1,), generator=g))
    pps = pps_for(lengths, page_size, num_splits)
    out_p, lse_p, out = split_then_combine(case, num_splits, pps)
    assert not torch.isnan(out_p).any() and not torch.isnan(lse_p).any()
    assert torch.allclose(out, reference.decode(*case), atol=1e-5)


def test_per_sequence_even_split_spreads_every_sequence_over_all_splits():
    lengths = [3, 17, 40, 100]
    case = make_case(lengths, page_size=4)
    out_p, lse_p, out = split_then_combine(case, 5, None)
    assert torch.allclose(out, reference.decode(*case), atol=1e-5)
    # 100 tokens = 25 pages -> 5 pages per split, all five used; 17 tokens = 5 pages -> 1 each
    assert torch.isfinite(lse_p[:, 3]).all() and torch.isfinite(lse_p[:, 1]).all()
    assert torch.isneginf(lse_p[1:, 0]).all()  # 3 tokens fit one page: one split, the rest empty
