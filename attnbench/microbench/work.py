"""THE one place where work is counted: FLOPs and minimum bytes moved per shape.

Every formula counts a multiply-add as 2 FLOPs and ignores softmax/exp work (not tensor-core
work), as FlashAttention's papers do. Bytes are the least traffic any kernel must move: each
input read once, the output written once; block-table and cu_seqlens reads are left out (< 0.1%).
"""

from __future__ import annotations

from attnbench.microbench.base import DecodeShape, PrefillShape, Shape
from attnbench.microbench.inputs import element_size


def _attended_pairs(q_lens, kv_lens, causal: bool) -> int:
    """Number of (query token, key token) pairs that are not masked, summed over sequences.

    Causal, queries = the last Lq of Lk positions: query i (0-based) sees Lk-Lq+i+1 keys, so a
    sequence contributes sum_i (Lk-Lq+i+1) = Lq*(Lk-Lq) + Lq(Lq+1)/2; with Lk = Lq = L that is
    L(L+1)/2. Non-causal: Lq*Lk.
    """
    if causal:
        return sum(lq * (lk - lq) + lq * (lq + 1) // 2 for lq, lk in zip(q_lens, kv_lens))
    return sum(lq * lk for lq, lk in zip(q_lens, kv_lens))


def flops(shape: Shape) -> int:
    """4 * D * Hq * pairs: per (query, key) pair and head, QK^T is D multiply-adds (2D FLOPs) and
    PV another D (2D FLOPs). Causal prefill: 4*D*Hq*sum L(L+1)/2; decode (q_len 1): 4*D*Hq*sum ctx."""
    if isinstance(shape, DecodeShape):
        pairs = _attended_pairs((shape.q_len,) * shape.batch, shape.context_lens, causal=True)
    else:
        pairs = _attended_pairs(shape.seqlens, shape.kv_lens, shape.causal)
    return 4 * shape.head_dim * shape.q_heads * pairs


def kv_bytes(shape: Shape) -> int:
    """K and V read once: 2 (K and V) * sum kv_len * Hkv * D * element size."""
    kv_lens = shape.context_lens if isinstance(shape, DecodeShape) else shape.kv_lens
    return 2 * sum(kv_lens) * shape.kv_heads * shape.head_dim * element_size(shape.dtype)


def q_tokens(shape: Shape) -> int:
    return shape.batch * shape.q_len if isinstance(shape, DecodeShape) else sum(shape.seqlens)


def bytes_moved(shape: Shape) -> int:
    """K+V read once + q read once + out written once (out has q's shape, hence 2x q)."""
    return kv_bytes(shape) + 2 * q_tokens(shape) * shape.q_heads * shape.head_dim * element_size(shape.dtype)


def footprint_bytes(shape: Shape) -> int:
    """Device memory one set of inputs needs: the KV (paged, rounded up to whole pages; chunked
    prefill also keeps a packed copy) plus q and out."""
    elt = element_size(shape.dtype)
    ps = shape.page_size
    kv_lens = shape.context_lens if isinstance(shape, DecodeShape) else shape.kv_lens
    paged_tokens = sum(-(-n // ps) * ps for n in kv_lens)
    per_token = 2 * shape.kv_heads * shape.head_dim * elt
    if isinstance(shape, DecodeShape):
        kv = paged_tokens * per_token
    else:
        kv = sum(kv_lens) * per_token + (paged_tokens * per_token if shape.paged else 0)
    return kv + 2 * q_tokens(shape) * shape.q_heads * shape.head_dim * elt


def rates(shape: Shape, seconds: float) -> dict[str, float]:
    """TFLOP/s and GB/s (10^9 bytes/s) achieved by a kernel that took `seconds`."""
    return {"tflops": flops(shape) / seconds / 1e12, "gbps": bytes_moved(shape) / seconds / 1e9,
            "kv_gbps": kv_bytes(shape) / seconds / 1e9}


__all__ = ["flops", "bytes_moved", "kv_bytes", "footprint_bytes", "rates", "DecodeShape", "PrefillShape"]
