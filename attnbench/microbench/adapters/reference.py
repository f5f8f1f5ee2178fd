"""The `reference` backend: plain torch, float32 math, any device. It is also the oracle every
other backend is checked against (check.py), so it is written for obviousness, not speed."""

from __future__ import annotations

from typing import Callable

from attnbench.microbench.base import DecodeInputs, DecodeShape, Kernel, PrefillInputs, PrefillShape

Q_CHUNK = 1024  # query rows per step, so a long causal prefill's score matrix stays small


def attend(q, k, v, scale: float, causal_offset: int | None):
    """Softmax attention of one sequence in float32 with GQA.

    q [Lq, Hq, D], k/v [Lk, Hkv, D]. With causal_offset c, query row i sees keys 0..c+i
    (the queries are the last Lq positions when c = Lk - Lq). Returns [Lq, Hq, D] float32.
    """
    import torch

    lq, hq, _ = q.shape
    lk, hkv, _ = k.shape
    group = hq // hkv  # query heads h*group .. h*group+group-1 share kv head h
    kf = k.float().repeat_interleave(group, dim=1).transpose(0, 1)  # [Hq, Lk, D]
    vf = v.float().repeat_interleave(group, dim=1).transpose(0, 1)
    out = torch.empty((lq, hq, q.shape[2]), dtype=torch.float32, device=q.device)
    for lo in range(0, lq, Q_CHUNK):
        hi = min(lq, lo + Q_CHUNK)
        qf = q[lo:hi].float().transpose(0, 1)  # [Hq, n, D]
        scores = torch.matmul(qf, kf.transpose(1, 2)) * scale  # [Hq, n, Lk]
        if causal_offset is not None:
            rows = torch.arange(lo, hi, device=q.device)[:, None] + causal_offset
            scores.masked_fill_(torch.arange(lk, device=q.device)[None, :] > rows, float("-inf"))
        out[lo:hi] = torch.matmul(torch.softmax(scores, dim=-1), vf).transpose(0, 1)
    return out


def decode_reference(shape: DecodeShape, inp: DecodeInputs):
    """float32 [batch*q_len, Hq, D]: each sequence's K/V gathered from its pages; the q_len new
    tokens are the sequence's last positions and attend causally."""
    import torch

    out = torch.empty(inp.q.shape, dtype=torch.float32, device=inp.q.device)
    ps = shape.page_size
    for i, n in enumerate(shape.context_lens):
        pages = inp.block_table[i, : -(-n // ps)].long()
        k = inp.k_cache[pages].reshape(-1, shape.kv_heads, shape.head_dim)[:n]
        v = inp.v_cache[pages].reshape(-1, shape.kv_heads, shape.head_dim)[:n]
        rows = slice(i * shape.q_len, (i + 1) * shape.q_len)
        out[rows] = attend(inp.q[rows], k, v, inp.scale, n - shape.q_len)
    return out


def prefill_reference(shape: PrefillShape, inp: PrefillInputs):
    """float32 [total_q, Hq, D] from the packed K/V (the paged copy holds the same values)."""
    import torch

    out = torch.empty(inp.q.shape, dtype=torch.float32, device=inp.q.device)
    qs, ks = inp.cu_seqlens_q.tolist(), inp.cu_seqlens_k.tolist()
    for i in range(shape.batch):
        q = inp.q[qs[i]:qs[i + 1]]
        k, v = inp.k[ks[i]:ks[i + 1]], inp.v[ks[i]:ks[i + 1]]
        offset = (k.shape[0] - q.shape[0]) if shape.causal else None
        out[qs[i]:qs[i + 1]] = attend(q, k, v, inp.scale, offset)
    return out


class Reference(Kernel):
    name = "reference"

    def decode(self, shape: DecodeShape, inp: DecodeInputs) -> Callable[[], None]:
        return lambda: inp.out.copy_(decode_reference(shape, inp))

    def prefill(self, shape: PrefillShape, inp: PrefillInputs) -> Callable[[], None]:
        return lambda: inp.out.copy_(prefill_reference(shape, inp))
