"""Fresh random inputs for one shape: never zeros, KV pages scattered at random.

A kernel that ignores the block table, reads past a sequence's end, or skips writing part of
its output gives a wrong answer on these inputs, which is what check.py needs to see.
"""

from __future__ import annotations

import itertools
import math
import random
import re

from attnbench.errors import UserError
from attnbench.microbench.base import DecodeInputs, DecodeShape, PrefillInputs, PrefillShape


def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def element_size(dtype: str) -> int:
    return 2  # bf16 and fp16 are the only dtypes (base.DTYPES)


def parse_ragged(spec: str) -> tuple[str, int, int]:
    """'uniform:512:4096' -> ('uniform', 512, 4096). Supported: uniform (lengths drawn uniformly
    in [lo, hi]) and lognormal (log-uniform-ish spread with median sqrt(lo*hi), clipped to [lo, hi])."""
    m = re.fullmatch(r"(uniform|lognormal):(\d+):(\d+)", spec.strip())
    if not m or int(m.group(2)) < 1 or int(m.group(2)) > int(m.group(3)):
        raise UserError(f"--ragged {spec!r}: expected DIST:LO:HI with DIST uniform or lognormal and 1 <= LO <= HI, e.g. uniform:512:4096")
    return m.group(1), int(m.group(2)), int(m.group(3))


def ragged_lengths(spec: str, batch: int, seed: int = 0) -> tuple[int, ...]:
    dist, lo, hi = parse_ragged(spec)
    rng = random.Random(seed)
    if dist == "uniform":
        return tuple(rng.randint(lo, hi) for _ in range(batch))
    mu, sigma = math.log(math.sqrt(lo * hi)), max(math.log(hi / lo) / 4, 1e-9)
    return tuple(min(hi, max(lo, round(rng.lognormvariate(mu, sigma)))) for _ in range(batch))


def _paged(lens: tuple[int, ...], page_size: int, kv_heads: int, head_dim: int, dtype, device, gen):
    """K/V caches holding `lens` tokens per sequence on randomly permuted pages, plus spare pages
    of random garbage (a kernel reading pages it was not given picks those up)."""
    import torch

    pages_per_seq = [max(1, -(-n // page_size)) for n in lens]
    used = sum(pages_per_seq)
    num_pages = used + max(2, used // 8)
    shape = (num_pages, page_size, kv_heads, head_dim)
    # drawn directly in bf16/fp16: a float32 temporary of a 32 GiB cache would not fit
    k_cache = torch.randn(shape, generator=gen, device=device, dtype=dtype)
    v_cache = torch.randn(shape, generator=gen, device=device, dtype=dtype)
    perm = torch.randperm(num_pages, generator=gen, device=device)[:used].to(torch.int32)
    # make sure the pages really are out of order even for tiny caches (randperm may keep order)
    if used > 1 and bool((perm[1:] == perm[:-1] + 1).all()):
        perm = perm.flip(0)
    block_table = torch.zeros((len(lens), max(pages_per_seq)), dtype=torch.int32, device=device)
    start = 0
    for i, n in enumerate(pages_per_seq):
        block_table[i, :n] = perm[start:start + n]
        start += n
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=device)
    return k_cache, v_cache, block_table, seq_lens


def _generator(device: str, seed: int):
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _cu(lens, device):
    import torch

    return torch.tensor([0, *itertools.accumulate(lens)], dtype=torch.int32, device=device)


def decode_inputs(shape: DecodeShape, device: str = "cuda", seed: int = 0) -> DecodeInputs:
    import torch

    dtype, gen = torch_dtype(shape.dtype), _generator(device, seed)
    k_cache, v_cache, block_table, seq_lens = _paged(
        shape.context_lens, shape.page_size, shape.kv_heads, shape.head_dim, dtype, device, gen)
    q = torch.randn((shape.batch * shape.q_len, shape.q_heads, shape.head_dim), generator=gen,
                    device=device, dtype=dtype)
    return DecodeInputs(q=q, k_cache=k_cache, v_cache=v_cache, block_table=block_table, seq_lens=seq_lens,
                        scale=shape.head_dim ** -0.5, out=torch.full_like(q, float("nan")),
                        cu_seqlens_q=_cu([shape.q_len] * shape.batch, device))


def prefill_inputs(shape: PrefillShape, device: str = "cuda", seed: int = 0) -> PrefillInputs:
    """Packed q/k/v (cu_seqlens); for chunked prefill the full K/V (cached prefix + new tokens)
    are also laid out in a paged cache, and `k`/`v` hold the same values packed."""
    import torch

    dtype, gen = torch_dtype(shape.dtype), _generator(device, seed)
    kv_lens = shape.kv_lens
    total_q, total_kv = sum(shape.seqlens), sum(kv_lens)

    def rand(n, heads):
        return torch.randn((n, heads, shape.head_dim), generator=gen, device=device, dtype=dtype)

    q = rand(total_q, shape.q_heads)
    inp = PrefillInputs(q=q, k=rand(total_kv, shape.kv_heads), v=rand(total_kv, shape.kv_heads),
                        cu_seqlens_q=_cu(shape.seqlens, device), cu_seqlens_k=_cu(kv_lens, device),
                        max_seqlen_q=max(shape.seqlens), max_seqlen_k=max(kv_lens),
                        scale=shape.head_dim ** -0.5, out=torch.full_like(q, float("nan")))
    if shape.paged:
        k_cache, v_cache, block_table, seq_lens = _paged(
            kv_lens, shape.page_size, shape.kv_heads, shape.head_dim, dtype, device, gen)
        # copy the packed K/V into the pages the block table names, so both layouts agree
        pages, slots = token_slots(block_table, kv_lens, shape.page_size)
        k_cache[pages, slots] = inp.k
        v_cache[pages, slots] = inp.v
        inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens = k_cache, v_cache, block_table, seq_lens
    return inp


def token_slots(block_table, lens, page_size: int):
    """(page, slot) of every token of every sequence, packed in sequence order:
    token t of sequence i lives at page block_table[i, t // page_size], slot t % page_size."""
    import torch

    device = block_table.device
    lens_t = torch.tensor(lens, dtype=torch.long, device=device)
    seq = torch.repeat_interleave(torch.arange(len(lens), device=device), lens_t)
    starts = torch.cumsum(lens_t, 0) - lens_t
    t = torch.arange(int(lens_t.sum()), device=device) - starts[seq]
    return block_table[seq, t // page_size].long(), t % page_size


def inputs_for(shape, device: str = "cuda", seed: int = 0):
    return decode_inputs(shape, device, seed) if isinstance(shape, DecodeShape) else prefill_inputs(shape, device, seed)


def nbytes(inp) -> int:
    """Device memory held by one set of inputs (for cold-L2 copies and the memory check)."""
    import torch

    return sum(v.numel() * v.element_size() for v in vars(inp).values() if isinstance(v, torch.Tensor))
