"""What attnbench-fa4's decode kernel computes, declared once: the kernel config checks it, the
launcher, the vLLM backend and the microbench adapter ask it. Plain Python (no torch, no CuTe
DSL), so the adapter and the vLLM backend can decide before anything heavy is imported.
"""

from __future__ import annotations

DTYPES = ("bfloat16", "float16")  # 16-bit K/V: one 16-byte load is 8 elements
HEAD_DIMS = (64, 128, 256)  # head_dim / 8 lanes per token row must divide the CTA
MAX_GROUP = 16  # query heads per KV head: each lane keeps q and acc of the whole group
MIN_PAGE_SIZE = 1  # any page size works (token t reads page t // P); vLLM uses 16..256


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
