"""FlashInfer, configured as vLLM 0.26 configures it: decode through
BatchDecodeWithPagedKVCacheWrapper (tensor-core decode, CUDA-graph buffers, 394 MiB workspace),
multi-token decode and chunked prefill through BatchPrefillWithPagedKVCacheWrapper, plain varlen
prefill through BatchPrefillWithRaggedKVCacheWrapper. plan() runs here, outside the timed region;
the KV cache is passed as the (k_cache, v_cache) tuple in NHD layout."""

from __future__ import annotations

from typing import Callable

from attnbench.microbench.base import DecodeInputs, DecodeShape, Kernel, PrefillInputs, PrefillShape

WORKSPACE_BYTES = 394 * 1024 * 1024  # vLLM's VLLM_FLASHINFER_WORKSPACE_BUFFER_SIZE default


def paged_metadata(block_table, kv_lens, page_size: int):
    """FlashInfer's CSR view of a block table: (indptr [B+1] cpu, indices [pages] device,
    last_page_len [B] cpu), all int32."""
    import torch

    pages = [-(-n // page_size) for n in kv_lens]
    indptr = torch.tensor([0, *torch.tensor(pages).cumsum(0).tolist()], dtype=torch.int32)
    indices = torch.cat([block_table[i, :p] for i, p in enumerate(pages)]).to(torch.int32)
    last = torch.tensor([n - (p - 1) * page_size for n, p in zip(kv_lens, pages)], dtype=torch.int32)
    return indptr, indices, last


class FlashInfer(Kernel):
    name = "flashinfer"

    def __init__(self):
        self._workspace = None

    def _ws(self, device):
        import torch

        if self._workspace is None or self._workspace.device != device:
            self._workspace = torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        return self._workspace

    def unsupported(self, shape) -> str | None:
        if shape.head_dim not in (64, 128, 256):
            return f"head_dim {shape.head_dim} not in FlashInfer's compiled set (64, 128, 256)"
        return None

    def decode(self, shape: DecodeShape, inp: DecodeInputs) -> Callable[[], None]:
        import flashinfer
        import torch

        indptr, indices, last = paged_metadata(inp.block_table, shape.context_lens, shape.page_size)
        device, dtype = inp.q.device, inp.q.dtype
        kv = (inp.k_cache, inp.v_cache)
        if shape.q_len == 1:
            w = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
                self._ws(device), "NHD", use_cuda_graph=True, use_tensor_cores=True,
                paged_kv_indptr_buffer=torch.empty(shape.batch + 1, dtype=torch.int32, device=device),
                paged_kv_indices_buffer=torch.empty(len(indices), dtype=torch.int32, device=device),
                paged_kv_last_page_len_buffer=torch.empty(shape.batch, dtype=torch.int32, device=device))
            w.plan(indptr, indices, last, shape.q_heads, shape.kv_heads, shape.head_dim, shape.page_size,
                   q_data_type=dtype, kv_data_type=dtype, sm_scale=inp.scale)
            return lambda: w.run(inp.q, kv, out=inp.out)
        # speculative decoding (q_len > 1): the q_len new tokens attend causally, as in vLLM
        w = self._paged_prefill(shape, inp.cu_seqlens_q.cpu(), indptr, indices, last, True, inp.scale, dtype)
        return lambda: w.run(inp.q, kv, out=inp.out)

    def _paged_prefill(self, shape, qo_indptr, indptr, indices, last, causal, scale, dtype):
        import flashinfer

        w = flashinfer.BatchPrefillWithPagedKVCacheWrapper(self._ws(indices.device), "NHD")
        w.plan(qo_indptr, indptr, indices, last, shape.q_heads, shape.kv_heads, shape.head_dim, shape.page_size,
               causal=causal, sm_scale=scale, q_data_type=dtype, kv_data_type=dtype)
        return w

    def prefill(self, shape: PrefillShape, inp: PrefillInputs) -> Callable[[], None]:
        import flashinfer

        dtype = inp.q.dtype
        if shape.paged:
            indptr, indices, last = paged_metadata(inp.block_table, shape.kv_lens, shape.page_size)
            w = self._paged_prefill(shape, inp.cu_seqlens_q.cpu(), indptr, indices, last, shape.causal, inp.scale, dtype)
            kv = (inp.k_cache, inp.v_cache)
            return lambda: w.run(inp.q, kv, out=inp.out)
        w = flashinfer.BatchPrefillWithRaggedKVCacheWrapper(self._ws(inp.q.device), "NHD")
        w.plan(inp.cu_seqlens_q.cpu(), inp.cu_seqlens_k.cpu(), shape.q_heads, shape.kv_heads, shape.head_dim,
               causal=shape.causal, sm_scale=inp.scale, q_data_type=dtype, kv_data_type=dtype)
        return lambda: w.run(inp.q, inp.k, inp.v, out=inp.out)
