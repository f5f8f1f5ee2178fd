"""FlashAttention 2, 3 and 4 through the varlen entry point vLLM 0.26 serves with.

FA2/FA3: vLLM's `vllm.vllm_flash_attn.flash_attn_varlen_func(fa_version=2|3)` (the `flash_attn`
/ `flash_attn_interface` packages are not used: vLLM does not call them). FA3 gets its
scheduler metadata planned here with num_splits capped at 32 for steps of <= 512 tokens (vLLM's
full-CUDA-graph path) and FA3's heuristic (0) above that, as vLLM 0.26 does.
FA4: vLLM's vendored CuTe DSL copy (`fa_version=4`, what `--attention-backend FLASH_ATTN` with
flash_attn_version 4 runs), else the flash-attn-4 package's `flash_attn.cute.flash_attn_varlen_func`.
num_splits 0 = the kernel's own heuristic; 1 = split-KV off.
"""

from __future__ import annotations

from typing import Callable

from attnbench.microbench.base import DecodeInputs, DecodeShape, Kernel, PrefillInputs, PrefillShape

FA3_MAX_SPLITS_CUDA_GRAPH = 32  # vLLM's attention_config.flash_attn_max_num_splits_for_cuda_graph
VLLM_MAX_CUDA_GRAPH_TOKENS = 512  # vLLM's default max_cudagraph_capture_size: bigger steps run eagerly


def fa3_num_splits(num_tokens: int) -> int:
    """What vLLM passes FA3: the split cap inside a full CUDA graph, else 0 (FA3's heuristic)."""
    return FA3_MAX_SPLITS_CUDA_GRAPH if num_tokens <= VLLM_MAX_CUDA_GRAPH_TOKENS else 0


class _FlashAttn(Kernel):
    version: int = 2

    def __init__(self, num_splits: int = 0):
        self.num_splits = num_splits

    def with_options(self, num_splits: int | None = None, **_) -> "Kernel":
        return type(self)(num_splits=num_splits or 0) if num_splits is not None else self

    def unsupported(self, shape) -> str | None:
        if shape.head_dim % 8 or shape.head_dim > 256:
            return f"head_dim {shape.head_dim} must be a multiple of 8 and <= 256"
        return None

    def _fn(self):
        from vllm.vllm_flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func

    def _scheduler_metadata(self, shape, cu_seqlens_q, seq_lens, max_q, max_k, causal, dtype, splits):
        return None

    def _splits(self, num_tokens: int) -> int:
        return self.num_splits

    def _paged(self, shape, inp, cu_seqlens_q, max_q, max_k, causal, kv_lens) -> Callable[[], None]:
        fn = self._fn()
        splits = self._splits(inp.q.shape[0])
        meta = self._scheduler_metadata(shape, cu_seqlens_q, inp.seq_lens, max_q, max_k, causal, inp.q.dtype, splits)
        kw = dict(q=inp.q, k=inp.k_cache, v=inp.v_cache, max_seqlen_q=max_q, cu_seqlens_q=cu_seqlens_q,
                  max_seqlen_k=max_k, seqused_k=inp.seq_lens, softmax_scale=inp.scale, causal=causal,
                  block_table=inp.block_table, out=inp.out, fa_version=self.version, num_splits=splits)
        if meta is not None:
            kw["scheduler_metadata"] = meta
        return lambda: fn(**kw)

    def decode(self, shape: DecodeShape, inp: DecodeInputs) -> Callable[[], None]:
        return self._paged(shape, inp, inp.cu_seqlens_q, shape.q_len, max(shape.context_lens), True, shape.context_lens)

    def prefill(self, shape: PrefillShape, inp: PrefillInputs) -> Callable[[], None]:
        if shape.paged:
            return self._paged(shape, inp, inp.cu_seqlens_q, inp.max_seqlen_q, inp.max_seqlen_k, shape.causal, shape.kv_lens)
        fn = self._fn()
        kw = dict(q=inp.q, k=inp.k, v=inp.v, max_seqlen_q=inp.max_seqlen_q, cu_seqlens_q=inp.cu_seqlens_q,
                  max_seqlen_k=inp.max_seqlen_k, cu_seqlens_k=inp.cu_seqlens_k, softmax_scale=inp.scale,
                  causal=shape.causal, out=inp.out, fa_version=self.version, num_splits=self._splits(inp.q.shape[0]))
        return lambda: fn(**kw)


class FA2(_FlashAttn):
    name = "fa2"
    version = 2


class FA3(_FlashAttn):
    name = "fa3"
    version = 3

    def _splits(self, num_tokens: int) -> int:
        return self.num_splits or fa3_num_splits(num_tokens)

    def _scheduler_metadata(self, shape, cu_seqlens_q, seq_lens, max_q, max_k, causal, dtype, splits):
        """Planned here, outside the timed region, as vLLM plans it per step (aot_schedule)."""
        from vllm.vllm_flash_attn import get_scheduler_metadata

        return get_scheduler_metadata(
            batch_size=shape.batch, max_seqlen_q=max_q, max_seqlen_k=max_k, num_heads_q=shape.q_heads,
            num_heads_kv=shape.kv_heads, headdim=shape.head_dim, cache_seqlens=seq_lens, qkv_dtype=dtype,
            cu_seqlens_q=cu_seqlens_q, page_size=shape.page_size, causal=causal,
            num_splits=splits)


class FA4(_FlashAttn):
    name = "fa4"
    version = 4

    def __init__(self, num_splits: int = 0, source: str = "auto"):
        super().__init__(num_splits)
        self.source = source  # "vllm", "flash_attn" (the flash-attn-4 package) or "auto"

    def with_options(self, num_splits: int | None = None, source: str | None = None, **_) -> "Kernel":
        return FA4(num_splits=self.num_splits if num_splits is None else num_splits, source=source or self.source)

    def _use_vllm(self) -> bool:
        if self.source != "auto":
            return self.source == "vllm"
        import importlib.util

        return importlib.util.find_spec("vllm") is not None

    def _fn(self):
        if self._use_vllm():
            return super()._fn()
        from flash_attn.cute import flash_attn_varlen_func

        def call(q, k, v, max_seqlen_q, cu_seqlens_q, max_seqlen_k, out, softmax_scale, causal, num_splits,
                 cu_seqlens_k=None, seqused_k=None, block_table=None, fa_version=4):
            # the package's public function has no `out=`: the copy is one extra small kernel
            res = flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                                         max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, seqused_k=seqused_k,
                                         page_table=block_table, softmax_scale=softmax_scale, causal=causal,
                                         num_splits=num_splits)
            out.copy_(res[0] if isinstance(res, tuple) else res)

        return call
