"""FLOP and byte counts against cases worked out by hand."""

from attnbench.microbench import work
from attnbench.microbench.base import DecodeShape, PrefillShape


def test_causal_prefill_counts_only_the_unmasked_triangle():
    # L=4: query i sees i+1 keys -> 1+2+3+4 = 10 pairs; L=2 -> 3 pairs; 4*D*Hq per pair
    s = PrefillShape(seqlens=(4, 2), q_heads=2, kv_heads=1, head_dim=8)
    assert work.flops(s) == 4 * 8 * 2 * 13


def test_noncausal_and_chunked_prefill():
    assert work.flops(PrefillShape(seqlens=(3,), q_heads=1, kv_heads=1, head_dim=2, causal=False)) == 4 * 2 * 9
    # 2 new tokens after 5 cached: they see 6 and 7 keys
    chunked = PrefillShape(seqlens=(2,), context_lens=(5,), q_heads=1, kv_heads=1, head_dim=2)
    assert work.flops(chunked) == 4 * 2 * 13


def test_decode_bytes_are_kv_once_plus_q_and_out():
    s = DecodeShape(batch=2, context_lens=(10, 30), q_heads=4, kv_heads=2, head_dim=8)
    kv = 2 * 40 * 2 * 8 * 2  # K and V, 40 tokens, 2 kv heads, D 8, 2 bytes
    q_out = 2 * (2 * 4 * 8 * 2)
    assert work.kv_bytes(s) == kv and work.bytes_moved(s) == kv + q_out
    assert work.flops(s) == 4 * 8 * 4 * 40


def test_speculative_decode_queries_are_causal_among_themselves():
    s = DecodeShape(batch=1, context_lens=(10,), q_heads=1, kv_heads=1, head_dim=1, q_len=3)
    assert work.flops(s) == 4 * (8 + 9 + 10)


def test_rates_and_footprint():
    s = DecodeShape.uniform(1, 1000, q_heads=1, kv_heads=1, head_dim=1, page_size=16)
    r = work.rates(s, 1e-6)
    assert abs(r["gbps"] - work.bytes_moved(s) / 1e3) < 1e-9
    assert work.footprint_bytes(s) == 1008 * 2 * 2 + 2 * 2  # pages rounded up to 63*16 tokens
