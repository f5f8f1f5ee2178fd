"""The split-KV decode algorithm in plain torch (float32, CPU ok): the oracle the kernels are
checked against and the place the combine math and its edge cases are tested.

Shapes follow vLLM's paged cache: q [B, Hq, D]; k_cache, v_cache [num_pages, page_size, Hkv, D];
block_table [B, max_pages] (page ids of each sequence, in order); seq_lens [B]. GQA: query head h
reads KV head h // (Hq // Hkv). A sequence of length 0 (a CUDA-graph padding row) outputs zeros.

Split s of a sequence covers its pages [s * pps, (s + 1) * pps). Each split writes
    out_s = sum_t softmax_t(x) v_t  over its own tokens,   lse_s = log sum_t exp(x_t),
and the exact result is the LSE-weighted mean of the splits, because
    sum_s exp(lse_s) * out_s = sum_all exp(x_t) v_t  and  sum_s exp(lse_s) = sum_all exp(x_t).
A split with no tokens has lse = -inf and out = 0, so its weight exp(-inf) is exactly 0.
"""

from __future__ import annotations


def _gather(cache, block_table, b: int, length: int):
    """The first `length` tokens of sequence b as a [length, Hkv, D] float32 tensor."""
    page_size = cache.shape[1]
    pages = -(-length // page_size)
    if pages > block_table.shape[1]:
        raise ValueError(f"sequence {b} has {length} tokens but block_table holds only "
                         f"{block_table.shape[1]} pages of {page_size}")
    rows = cache[block_table[b, :pages].long().to(cache.device)].float()
    return rows.reshape(pages * page_size, *cache.shape[2:])[:length]


def _grouped(q, k_cache):
    """q [B, Hq, D] -> [B, Hkv, G, D] float32: the G query heads that share each KV head."""
    batch, q_heads, dim = q.shape
    kv_heads = k_cache.shape[2]
    if q_heads % kv_heads:
        raise ValueError(f"q heads ({q_heads}) must be a multiple of KV heads ({kv_heads})")
    return q.float().reshape(batch, kv_heads, q_heads // kv_heads, dim)


def split_decode(q, k_cache, v_cache, block_table, seq_lens, scale, num_splits, pages_per_split):
    """Partial outputs [S, B, Hq, D] and natural-log LSEs [S, B, Hq], float32, one per split.

    pages_per_split=None divides each sequence's own pages evenly, ceil(pages_b / num_splits):
    a variant a kernel can compute on the device from seq_lens, so a CUDA graph captured with one
    num_splits still spreads short sequences over all their splits."""
    import torch

    batch, q_heads, dim = q.shape
    kv_heads = k_cache.shape[2]
    page_size = k_cache.shape[1]
    group = q_heads // kv_heads
    qg = _grouped(q, k_cache)
    dev = q.device
    out = torch.zeros(num_splits, batch, q_heads, dim, dtype=torch.float32, device=dev)
    lse = torch.full((num_splits, batch, q_heads), float("-inf"), dtype=torch.float32, device=dev)
    for b in range(batch):
        length = int(seq_lens[b])
        pages = -(-length // page_size)
        pps = pages_per_split or max(1, -(-pages // num_splits))
        span = pps * page_size  # tokens per split
        if length > num_splits * span:
            raise ValueError(f"sequence {b} has {length} tokens; {num_splits} splits of "
                             f"{pps} pages cover only {num_splits * span}")
        if length == 0:
            continue
        padded = num_splits * span
        k = torch.zeros(padded, kv_heads, dim, device=dev)
        v = torch.zeros(padded, kv_heads, dim, device=dev)
        k[:length] = _gather(k_cache, block_table, b, length)
        v[:length] = _gather(v_cache, block_table, b, length)
        x = torch.einsum("hgd,thd->hgt", qg[b], k) * scale  # [Hkv, G, T]
        x[..., length:] = float("-inf")
        x = x.reshape(kv_heads, group, num_splits, span)
        m = x.amax(dim=-1, keepdim=True)
        m = torch.where(torch.isinf(m), torch.zeros_like(m), m)  # empty split: avoid -inf - -inf
        p = torch.exp(x - m)
        l = p.sum(dim=-1)  # [Hkv, G, S]
        acc = torch.einsum("hgst,sthd->hgsd", p, v.reshape(num_splits, span, kv_heads, dim))
        o = acc / l.clamp_min(torch.finfo(torch.float32).tiny).unsqueeze(-1)
        s_lse = m.squeeze(-1) + torch.log(l)  # log(0) = -inf for an empty split
        out[:, b] = o.permute(2, 0, 1, 3).reshape(num_splits, q_heads, dim)
        lse[:, b] = s_lse.permute(2, 0, 1).reshape(num_splits, q_heads)
    return out, lse


def combine(out_partial, lse_partial):
    """Merge splits: out = sum_s w_s out_s / sum_s w_s with w_s = exp(lse_s - max_s lse_s).
    Rows whose splits are all empty come out as zeros, never NaN."""
    import torch

    out_partial, lse_partial = out_partial.float(), lse_partial.float()
    top = lse_partial.amax(dim=0, keepdim=True)
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    w = torch.exp(lse_partial - top)  # [S, B, H]; exactly 0 for empty splits
    total = w.sum(dim=0)
    merged = (w.unsqueeze(-1) * out_partial).sum(dim=0)
    return merged / total.clamp_min(torch.finfo(torch.float32).tiny).unsqueeze(-1)


def decode(q, k_cache, v_cache, block_table, seq_lens, scale):
    """Plain float32 softmax attention over each sequence's tokens: out [B, Hq, D] (on q's device)."""
    import torch

    batch, q_heads, dim = q.shape
    qg = _grouped(q, k_cache)
    out = torch.zeros(batch, q_heads, dim, dtype=torch.float32, device=q.device)
    for b in range(batch):
        length = int(seq_lens[b])
        if length == 0:
            continue
        k = _gather(k_cache, block_table, b, length)
        v = _gather(v_cache, block_table, b, length)
        weights = torch.softmax(torch.einsum("hgd,thd->hgt", qg[b], k) * scale, dim=-1)
        out[b] = torch.einsum("hgt,thd->hgd", weights, v).reshape(q_heads, dim)
    return out
