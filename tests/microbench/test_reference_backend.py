"""The reference backend is the oracle: it must agree with the most naive attention there is."""

import math

import pytest

torch = pytest.importorskip("torch")

from attnbench.microbench import inputs  # noqa: E402
from attnbench.microbench.base import DecodeShape, PrefillShape  # noqa: E402
from attnbench.microbench.adapters.reference import decode_reference, prefill_reference  # noqa: E402


def naive(q, k, v, scale, causal_offset):
    """One query row, one head at a time, softmax written out by hand."""
    lq, hq, d = q.shape
    group = hq // k.shape[1]
    out = torch.zeros(lq, hq, d, dtype=torch.float64)
    for i in range(lq):
        for h in range(hq):
            kh, vh = k[:, h // group].double(), v[:, h // group].double()
            last = k.shape[0] - 1 if causal_offset is None else causal_offset + i
            s = [float(q[i, h].double() @ kh[j]) * scale for j in range(last + 1)]
            m = max(s)
            w = [math.exp(x - m) for x in s]
            out[i, h] = sum(wj * vh[j] for j, wj in enumerate(w)) / sum(w)
    return out


def gathered_kv(shape, inp, i):
    """Sequence i's K/V read token by token through the block table."""
    ps, n = shape.page_size, shape.context_lens[i]
    pages = [int(inp.block_table[i, t // ps]) for t in range(n)]
    k = torch.stack([inp.k_cache[p, t % ps] for t, p in enumerate(pages)])
    v = torch.stack([inp.v_cache[p, t % ps] for t, p in enumerate(pages)])
    return k, v


def test_decode_matches_naive_with_ragged_lengths_gqa_and_multi_token_queries():
    shape = DecodeShape(batch=3, context_lens=(5, 23, 9), q_heads=4, kv_heads=2, head_dim=8, page_size=4, q_len=2)
    inp = inputs.decode_inputs(shape, "cpu", seed=1)
    ref = decode_reference(shape, inp)
    for i, n in enumerate(shape.context_lens):
        k, v = gathered_kv(shape, inp, i)
        rows = slice(2 * i, 2 * i + 2)
        expect = naive(inp.q[rows], k, v, inp.scale, causal_offset=n - 2)
        assert torch.allclose(ref[rows].double(), expect, atol=1e-5), f"sequence {i}"


def test_gqa_grouping_maps_query_heads_to_their_kv_head():
    """Query heads 0,1 read kv head 0 and heads 2,3 kv head 1: changing kv head 1 must move
    exactly heads 2 and 3."""
    shape = DecodeShape.uniform(1, 12, q_heads=4, kv_heads=2, head_dim=8, page_size=4)
    inp = inputs.decode_inputs(shape, "cpu")
    before = decode_reference(shape, inp)
    inp.v_cache[:, :, 1] += 1.0
    after = decode_reference(shape, inp)
    moved = (after - before).abs().amax(dim=(0, 2)) > 0.5
    assert moved.tolist() == [False, False, True, True]


def test_prefill_causal_noncausal_and_chunked_match_naive():
    for causal, ctx in ((True, None), (False, None), (True, (6, 0))):
        shape = PrefillShape(seqlens=(5, 3), q_heads=4, kv_heads=1, head_dim=8, causal=causal,
                             context_lens=ctx, page_size=4)
        inp = inputs.prefill_inputs(shape, "cpu", seed=2)
        ref = prefill_reference(shape, inp)
        qs, ks = inp.cu_seqlens_q.tolist(), inp.cu_seqlens_k.tolist()
        for i in range(2):
            q, k, v = inp.q[qs[i]:qs[i + 1]], inp.k[ks[i]:ks[i + 1]], inp.v[ks[i]:ks[i + 1]]
            off = k.shape[0] - q.shape[0] if causal else None
            assert torch.allclose(ref[qs[i]:qs[i + 1]].double(), naive(q, k, v, inp.scale, off), atol=1e-5)


def test_chunked_prefill_paged_cache_holds_the_packed_kv():
    shape = PrefillShape(seqlens=(5, 9), context_lens=(7, 3), q_heads=2, kv_heads=1, head_dim=4, page_size=4)
    inp = inputs.prefill_inputs(shape, "cpu")
    ks = inp.cu_seqlens_k.tolist()
    for i, n in enumerate(shape.kv_lens):
        for t in range(n):
            page = int(inp.block_table[i, t // 4])
            assert torch.equal(inp.k_cache[page, t % 4], inp.k[ks[i] + t])
            assert torch.equal(inp.v_cache[page, t % 4], inp.v[ks[i] + t])
