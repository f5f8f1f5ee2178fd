"""attnbench-fa4 inside vLLM (0.26): vLLM's FlashAttention backend with decode-only batches sent
to our split-KV kernel (attnbench.kernels.fa4_decode.launcher.FA4Decode), and everything else on
the FlashAttention version vLLM picks: FA3 on SM90, the fastest prefill measured on the H200
(8000:1 x 256: fa3 254.8k total tok/s, fa4 248.0k, this backend when pinned to FA4 238.2k;
results/h200/serve/).

Inherited unchanged from vllm.v1.attention.backends.flash_attn: the KV cache shape and layout
(logical [blocks, kv_heads, block_size, 2 * head_dim], K and V packed in the last dim, physically
NHD), the cache write (do_kv_cache_update runs before forward), metadata building, and every batch
or layer our kernel does not take: prefill and mixed batches, encoder attention, sliding window,
sinks, soft-cap, DCP, multimodal prefix masks. Refused at startup: ALiBi (our kernel has none) and
fp8 KV caches. Ours: get_name() "CUSTOM" (vLLM maps layers back to the enum by name),
uniform-batch CUDA graphs, no FA3 ahead-of-time scheduler, no cascade attention, SM90 only, and
the decode branch. Where vLLM is configured for FA4, FA4's prefill kernels are compiled at start-up.

This module imports vLLM at load: only vLLM imports it, after `--attention-backend CUSTOM` has
selected it (attnbench.kernels.vllm_plugin registers the path without importing it).
"""

from __future__ import annotations

import torch
from vllm.logger import init_logger
from vllm.utils.torch_utils import canonicalize_singleton_dim_strides
from vllm.v1.attention.backend import AttentionCGSupport, AttentionType
from vllm.v1.attention.backends.flash_attn import (
    FlashAttentionBackend,
    FlashAttentionImpl,
    FlashAttentionMetadata,
    FlashAttentionMetadataBuilder,
)

from attnbench.kernels import warmup
from attnbench.kernels.fa4_decode import limits

# Under the "vllm" logger tree: only it has a handler in a vLLM process, so this is what shows up
# in the server log (plugin-check.sh greps it).
logger = init_logger("vllm.attnbench_fa4")

KERNEL_DTYPES = tuple(getattr(torch, name) for name in limits.DTYPES)
_PLAIN_CACHE = ("auto", "bfloat16", "float16")

# One FA4Decode per geometry and device, shared by every layer: layers run one after another on
# one stream, so they can share its fp32 split workspace (64 x max_batch x heads x dim floats).
_DECODERS: dict[tuple, object] = {}


def decoder_for(*, q_heads: int, kv_heads: int, head_dim: int, page_size: int, dtype: torch.dtype,
                max_batch: int, max_context: int, device: torch.device):
    """The shared, compiled FA4Decode for this geometry, made on the first decode-only call. On
    vLLM 0.26 that call comes in the full-CUDA-graph capture phase (the H200 server log of
    2026-12-03 says "decode kernel ready" there), so the workspace is allocated then; nothing is
    compiled, as the CuTe DSL warm-up compiled the kernels before (see
    AttnbenchFA4Impl.get_cutedsl_warmup_compile_units) and this only finds them cached."""
    key = (q_heads, kv_heads, head_dim, page_size, dtype, max_batch, device)
    decoder = _DECODERS.get(key)
    if decoder is None:
        from attnbench.kernels.fa4_decode.launcher import FA4Decode

        decoder = FA4Decode(q_heads=q_heads, kv_heads=kv_heads, head_dim=head_dim,
                            page_size=page_size, dtype=str(dtype).removeprefix("torch."),
                            max_batch=max_batch, device=device).compile(max_context=max_context)
        _DECODERS[key] = decoder
        logger.info("attnbench-fa4: decode kernel ready for %d q heads / %d kv heads, head_dim %d, "
                    "page %d, %s, max batch %d", q_heads, kv_heads, head_dim, page_size, dtype, max_batch)
    return decoder


def server_limits(config=None) -> warmup.ServerLimits:
    """What the serving configuration fixes (vLLM's current config; defaults outside a server)."""
    from vllm.config import get_current_vllm_config_or_none

    config = config or get_current_vllm_config_or_none()
    if config is None:
        return warmup.ServerLimits(capture_sizes=(), max_batch=256, max_model_len=1 << 30,
                                   max_num_batched_tokens=8192)
    comp, sched = config.compilation_config, config.scheduler_config
    return warmup.ServerLimits(
        capture_sizes=tuple(comp.cudagraph_capture_sizes or ()),
        max_batch=max(sched.max_num_seqs, comp.max_cudagraph_capture_size or 0),
        max_model_len=config.model_config.max_model_len,
        max_num_batched_tokens=sched.max_num_batched_tokens,
        compile_sizes=tuple(x for x in (comp.compile_sizes or ()) if isinstance(x, int)))


class AttnbenchFA4MetadataBuilder(FlashAttentionMetadataBuilder):
    """FlashAttention's builder with uniform batches (decode-only among them) captured as full CUDA
    graphs and mixed ones run piecewise; no FA3 ahead-of-time scheduler (its split plan is for
    FA3's decode, which ours replaces; FA3's prefill plans itself)."""

    _cudagraph_support = AttentionCGSupport.UNIFORM_BATCH

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The parent enables these when the global FA version is 3 (SM90's default).
        self.aot_schedule = False
        self.max_num_splits = 0

    def use_cascade_attention(self, *args, **kwargs) -> bool:
        """Never: a shared-prefix cascade would take decode batches away from our kernel."""
        return False


class AttnbenchFA4Impl(FlashAttentionImpl):
    """vLLM's FlashAttention for everything, except decode-only batches of plain layers, which use our kernel."""

    def __init__(self, *args, **kwargs):
        # Prefill and mixed batches on the FlashAttention vLLM picks for this GPU and config (the
        # parent's choice: FA3 on SM90 unless its attention config asks for another version).
        super().__init__(*args, **kwargs)
        if self.alibi_slopes is not None:
            raise ValueError("attnbench-fa4's decode kernel has no ALiBi; serve this model with --backends fa2")
        self.decode_unsupported = self._why_not_ours()
        # Read now: vLLM sets its current config while it builds the layers, but not when it runs
        # the CuTe DSL warm-up (there the current config is None, and nothing would be compiled).
        from vllm.config import get_current_vllm_config_or_none

        self.vllm_config = get_current_vllm_config_or_none()
        limits = server_limits(self.vllm_config)
        self.max_batch = limits.max_batch  # max_num_seqs, or the largest captured graph
        self.max_context = limits.max_model_len
        self._register_warmup()
        fa = f"FA{self.vllm_flash_attn_version}"
        if self.decode_unsupported:
            logger.warning_once("attnbench-fa4: %s handles decode too for a layer with %s", fa,
                                self.decode_unsupported)
        else:
            logger.info_once("attnbench-fa4: decode-only batches use attnbench's split-KV kernel; "
                             "prefill and mixed batches use %s", fa)

    def _why_not_ours(self) -> str | None:
        """What keeps this layer's decode off our kernel (fixed per layer), or None."""
        if self.attn_type != AttentionType.DECODER:
            return f"attention type {self.attn_type}"
        if self.sliding_window != (-1, -1):
            return "a sliding window"
        if self.sinks is not None:
            return "attention sinks"
        if self.logits_soft_cap:
            return "a logits soft-cap"
        if self.kv_cache_dtype not in _PLAIN_CACHE:
            return f"kv cache dtype {self.kv_cache_dtype}"
        # the cache dtype is plain (checked above); the query dtype is checked per call
        why = limits.unsupported(head_dim=self.head_size, group=self.num_queries_per_kv,
                                 page_size=limits.MIN_PAGE_SIZE, dtype=limits.DTYPES[0])
        if why:
            return why
        if self.dcp_world_size > 1:
            return "decode context parallelism"
        return None

    def _register_warmup(self) -> None:
        """Ask vLLM's CuTe DSL warm-up (run before CUDA-graph capture) to compile our decode kernels
        and, on FA4, its prefill/combine for this layer, as vLLM's FA4 MLA prefill backend does."""
        try:
            from vllm.model_executor.warmup.cutedsl_warmup import register_cutedsl_warmup_provider
        except ImportError:  # a vLLM without the hook: kernels compile on first use, as before
            logger.warning_once("attnbench-fa4: this vLLM has no CuTe DSL warm-up hook; kernels compile on first use")
            return
        register_cutedsl_warmup_provider(self)

    def warmup_layer(self, page_size: int, dtype: torch.dtype) -> warmup.Layer:
        return warmup.Layer(q_heads=self.num_heads, kv_heads=self.num_kv_heads, head_dim=self.head_size,
                            page_size=page_size, dtype=str(dtype).removeprefix("torch."),
                            decode_ours=self.decode_unsupported is None and dtype in KERNEL_DTYPES,
                            fa4_variant=(tuple(self.sliding_window or ()), float(self.logits_soft_cap or 0),
                                         self.sinks is not None))

    def get_cutedsl_warmup_compile_units(self):
        """vLLM calls this once per worker before serving (enable_cutedsl_warmup, on by default)."""
        from vllm.model_executor.warmup.cutedsl_warmup import CuTeDSLCompileUnit

        from attnbench.kernels.fa4_decode import launcher

        config = self.vllm_config
        if config is None:
            return ()
        dtype = config.model_config.dtype
        layer = self.warmup_layer(config.cache_config.block_size, dtype)
        arch = launcher.target_arch()

        def compile_ours(cfg):
            compile_fn = launcher.compile_combine if isinstance(cfg, launcher.CombineConfig) else launcher.compile_decode
            compile_fn(cfg, arch)

        def compile_fa4(probe):
            self._compile_fa4(probe, layer, dtype)

        found = warmup.units(layer, server_limits(config), compile_decode=compile_ours, arch=arch,
                             compile_prefill=compile_fa4 if self.vllm_flash_attn_version == 4 else None)
        logger.info_once("attnbench-fa4: start-up compiles %d decode configurations and %d FA4 prefill probes",
                         sum(u.name.endswith("decode") for u in found), sum(u.name.endswith("prefill") for u in found))
        return tuple(CuTeDSLCompileUnit(name=u.name, key=u.key, compile=u.compile) for u in found)

    def _compile_fa4(self, probe: warmup.PrefillProbe, layer: warmup.Layer, dtype: torch.dtype) -> None:
        """Compile (never run) FA4 for one probe: the call FlashAttentionImpl.forward makes for a
        prefill or mixed batch, on fake tensors (FA4 compiles and skips the launch under
        FakeTensorMode), over a cache laid out as vLLM's."""
        from torch._subclasses.fake_tensor import FakeTensorMode
        from vllm.v1.attention.backends.fa_utils import flash_attn_varlen_func

        n, d, page = probe.num_reqs, layer.head_dim, layer.page_size
        total_q = probe.max_seqlen_q + n - 1
        pages = -(-probe.max_seqlen_k // page)
        with FakeTensorMode():
            dev = torch.device("cuda", torch.cuda.current_device())
            q = torch.empty(total_q, layer.q_heads, d, dtype=dtype, device=dev)
            physical = torch.empty(n * pages, page, layer.kv_heads, 2 * d, dtype=dtype, device=dev)
            kv_cache = physical.permute(0, 2, 1, 3)  # vLLM's logical (blocks, kv_heads, page, 2 * head_dim)
            key_cache, value_cache = kv_cache.transpose(1, 2).split(d, dim=-1)
            sinks = None if self.sinks is None else torch.empty(self.sinks.shape, dtype=self.sinks.dtype, device=dev)
            flash_attn_varlen_func(
                q=q, k=canonicalize_singleton_dim_strides(key_cache), v=canonicalize_singleton_dim_strides(value_cache),
                out=torch.empty_like(q), cu_seqlens_q=torch.empty(n + 1, dtype=torch.int32, device=dev),
                max_seqlen_q=probe.max_seqlen_q, seqused_k=torch.empty(n, dtype=torch.int32, device=dev),
                max_seqlen_k=probe.max_seqlen_k, softmax_scale=self.scale, causal=True, alibi_slopes=None,
                window_size=list(self.sliding_window) if self.sliding_window is not None else None,
                block_table=torch.empty(n, pages, dtype=torch.int32, device=dev), softcap=self.logits_soft_cap,
                scheduler_metadata=None, fa_version=4, num_splits=0, s_aux=sinks)

    def forward(self, layer, query, key, value, kv_cache, attn_metadata, output,
                output_scale=None, output_block_scale=None):
        if (self.decode_unsupported is None and attn_metadata is not None
                and output_scale is None and output_block_scale is None
                and query.dtype in KERNEL_DTYPES and is_plain_decode(attn_metadata)
                and attn_metadata.num_actual_tokens <= self.max_batch):
            return self._decode(query, kv_cache, attn_metadata, output)
        return super().forward(layer, query, key, value, kv_cache, attn_metadata, output,
                               output_scale, output_block_scale)

    def _decode(self, query, kv_cache, attn_metadata: FlashAttentionMetadata, output):
        """One query token per sequence, in request order. Host-side ints and views only, so a
        full CUDA graph captures it; the split plan comes from max_seq_len, which vLLM sets to
        max_model_len while capturing, so a captured plan covers any later sequence."""
        n = attn_metadata.num_actual_tokens
        # (B, H, N, 2*D) -> ((B, N, H, D), (B, N, H, D)): strided views, as FlashAttention reads them
        key_cache, value_cache = kv_cache.transpose(1, 2).split(self.head_size, dim=-1)
        key_cache = canonicalize_singleton_dim_strides(key_cache)
        value_cache = canonicalize_singleton_dim_strides(value_cache)
        decoder = decoder_for(q_heads=self.num_heads, kv_heads=self.num_kv_heads,
                              head_dim=self.head_size, page_size=key_cache.shape[1],
                              dtype=query.dtype, max_batch=self.max_batch, max_context=self.max_context,
                              device=query.device)
        decoder(query[:n], key_cache, value_cache, attn_metadata.block_table,
                attn_metadata.seq_lens, self.scale, output[:n], max_context=attn_metadata.max_seq_len)
        return output


def is_plain_decode(m: FlashAttentionMetadata) -> bool:
    """A batch our kernel computes exactly: every query length 1 (one token per request),
    causal, no cascade prefix, window or extra masks. Reads host-side fields only."""
    return (m.max_query_len == 1
            and not m.use_cascade
            and m.num_actual_tokens <= m.seq_lens.shape[0]
            and m.causal is True
            and (m.sliding_window is None or tuple(m.sliding_window) == (-1, -1))
            and m.mm_prefix_range_tensor is None
            and m.rswa_prefix_lens is None)


class AttnbenchFA4Backend(FlashAttentionBackend):
    """vLLM's FlashAttention backend with AttnbenchFA4Impl; selected by `--attention-backend CUSTOM`."""

    supported_kv_cache_dtypes = list(_PLAIN_CACHE)

    @staticmethod
    def get_name() -> str:
        return "CUSTOM"

    @staticmethod
    def get_impl_cls() -> type[AttnbenchFA4Impl]:
        return AttnbenchFA4Impl

    @staticmethod
    def get_builder_cls() -> type[AttnbenchFA4MetadataBuilder]:
        return AttnbenchFA4MetadataBuilder

    @classmethod
    def supports_compute_capability(cls, capability) -> bool:
        return capability.major == 9  # the decode kernel is SM90 code

    @classmethod
    def supports_kv_cache_dtype(cls, kv_cache_dtype) -> bool:
        return kv_cache_dtype is None or kv_cache_dtype in _PLAIN_CACHE

    @classmethod
    def supports_batch_invariance(cls) -> bool:
        return False  # FA4 and our split plan both depend on the batch shape
