"""What attnbench-fa4's decode kernel computes, declared once: the kernel config checks it, the
launcher, the vLLM backend and the microbench adapter ask it. Plain Python (no torch, no CuTe
DSL), so the adapter and the vLLM backend can decide before anything heavy is imported.
"""

from __future__ import annotations

DTYPES = ("bfloat16", "float16")  # 16-bit K/V: one 16-byte load is 8 elements
HEAD_DIMS = (64, 128, 256)  # head_dim / 8 lanes per token row must divide the CTA
MAX_GROUP = 16  # query heads per KV head: each lane keeps q and acc of the whole group
MIN_PAGE_SIZE = 1  # any page size works (token t reads page t // P); vLLM uses 16..256

# the tensor-core kernel (kernel_mma.py, DecodeConfig(mma=True)): the group's heads are the M = 16
# rows of one mma.sync tile, and a warp streams 2048 / head_dim tokens (8 KB of K+V) per step
MMA_HEAD_DIMS = (64, 128)  # D256 would need 64 Q + 128 accumulator registers per lane: spills
MMA_MAX_GROUP = 16  # M of mma.sync m16n8k16
MMA_MAX_SMEM = 227 * 1024  # sm_90's per-block opt-in limit (the DSL opts every kernel in)


def unsupported(*, head_dim: int, group: int, page_size: int, dtype: str, q_len: int = 1) -> str | None:
    """Why the kernel cannot decode this geometry (one clause, no prefix), or None."""
    if dtype not in DTYPES:
        return f"dtype {dtype} (supports {'/'.join(DTYPES)})"
    if head_dim not in HEAD_DIMS:
        return f"head_dim {head_dim} (supports {'/'.join(map(str, HEAD_DIMS))})"
    if not 1 <= group <= MAX_GROUP:
        return f"{group} query heads per KV head (GQA group; supports 1..{MAX_GROUP})"
    if page_size < MIN_PAGE_SIZE:
        return f"page size {page_size}"
    if q_len != 1:
        return f"q_len {q_len} (decodes one query token per sequence)"
    return None


def mma_unsupported(*, head_dim: int, group: int, page_size: int, dtype: str) -> str | None:
    """Why the tensor-core kernel cannot decode this geometry (one clause), or None."""
    why = unsupported(head_dim=head_dim, group=group, page_size=page_size, dtype=dtype)
    if why:
        return why
    if head_dim not in MMA_HEAD_DIMS:
        return f"head_dim {head_dim} with mma=True (supports {'/'.join(map(str, MMA_HEAD_DIMS))})"
    if group > MMA_MAX_GROUP:
        return f"{group} query heads per KV head with mma=True (at most {MMA_MAX_GROUP}, one MMA tile)"
    return None
