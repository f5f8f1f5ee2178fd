"""What attnbench-fa4 compiles while vLLM starts, so that nothing JIT-compiles while it serves.

vLLM (0.26) runs registered CuTe DSL warm-up providers once per worker, after its own warm-up
sizes and before CUDA-graph capture (`kernel_warmup` -> `cutedsl_warmup`, deduplicated by key);
its MLA prefill backend registers FA4 compiles that way. Our backend registers the same way
(vllm_backend.AttnbenchFA4Impl) and asks for two kinds of work, listed here without vLLM:

- our decode kernels: every launch configuration the tuning table can choose for a decode batch
  of up to max_batch sequences (the CUDA-graph capture sizes among them, and the eager batches
  above the largest one) at any context up to max_model_len, plus the combine;
- where vLLM is configured for FA4 (its pick on SM90 is FA3): FA4's prefill kernel and its
  split-KV combine, which run every prefill and mixed batch under our backend: FA4 specialises on
  whether it splits KV (and the combine on the split count's power of two), both chosen from
  (sequences, query length, KV length), so the probes are a one-sequence prefill of each token
  count vLLM's own warm-up visits (capture sizes, compile sizes, max_num_batched_tokens) fresh and
  at the end of a max_model_len prompt (counts above max_model_len as whole prompts side by side),
  and a two-token query against every power-of-two KV length up to max_model_len (the most splits
  FA4 picks for that length). FA4 compiles each distinct kernel once; repeated probes cost only its host-side choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

FA4_KV_TILE = 128  # the shortest KV length probed: below FA4's tile FA4 never splits


@dataclass(frozen=True)
class ServerLimits:
    """What vLLM's configuration fixes at start-up."""

    capture_sizes: tuple[int, ...]  # compilation_config.cudagraph_capture_sizes
    max_batch: int  # the largest decode batch our kernel takes
    max_model_len: int
    max_num_batched_tokens: int
    compile_sizes: tuple[int, ...] = ()  # compilation_config.compile_sizes (integers)


@dataclass(frozen=True)
class Layer:
    """An attention layer's geometry, as the compiled kernels see it."""

    q_heads: int
    kv_heads: int
    head_dim: int
    page_size: int
    dtype: str  # "bfloat16" | "float16"
    decode_ours: bool = True  # False: FA4 decodes this layer too (window, sinks, ...)
    fa4_variant: tuple = ()  # what else FA4 specialises on: (sliding window, soft-cap, sinks)


@dataclass(frozen=True)
class PrefillProbe:
    """One FA4 call shape, compiled and not run: num_reqs sequences, the longest with max_seqlen_q
    new tokens and max_seqlen_k tokens in all."""

    num_reqs: int
    max_seqlen_q: int
    max_seqlen_k: int


def decode_configs(layer: Layer, limits: ServerLimits) -> list:
    """Our kernels' compile keys (DecodeConfig / CombineConfig) for this layer."""
    if not layer.decode_ours:
        return []
    from attnbench.kernels.fa4_decode.launcher import kernel_configs

    return kernel_configs(q_heads=layer.q_heads, kv_heads=layer.kv_heads, head_dim=layer.head_dim,
                          page_size=layer.page_size, dtype=layer.dtype, max_batch=max(limits.max_batch, 1),
                          max_context=limits.max_model_len)


def chunk_sizes(limits: ServerLimits) -> list[int]:
    """The token counts vLLM's warm-up runs (a prefill chunk has at least 2 new tokens, at most
    max_num_batched_tokens)."""
    sizes = {*limits.capture_sizes, *limits.compile_sizes, limits.max_num_batched_tokens}
    return sorted(s for s in sizes if 2 <= s <= limits.max_num_batched_tokens)


def prefill_probes(limits: ServerLimits) -> list[PrefillProbe]:
    top = limits.max_model_len
    probes = []
    for q in chunk_sizes(limits):
        if q <= top:
            probes += [PrefillProbe(1, q, q), PrefillProbe(1, q, top)]
        else:  # more tokens than one sequence holds: whole prompts side by side
            probes.append(PrefillProbe(-(-q // top), top, top))
    k = FA4_KV_TILE
    while k < top:
        probes.append(PrefillProbe(1, 2, k))
        k *= 2
    probes.append(PrefillProbe(1, 2, top))
    return list(dict.fromkeys(probes))


@dataclass(frozen=True)
class Unit:
    """One compile request: vLLM's CuTeDSLCompileUnit without vLLM (name, dedup key, thunk)."""

    name: str
    key: tuple
    compile: Callable[[], None]


def units(layer: Layer, limits: ServerLimits, *, compile_decode: Callable, compile_prefill: Callable | None,
          arch: str) -> list[Unit]:
    """Every compile this layer needs before serving. compile_decode(cfg) compiles one of our
    kernel configs; compile_prefill(probe) compiles FA4 for one probe (on the layer it belongs to),
    None where prefill runs on FA3 (compiled ahead of time, nothing to warm).
    Keys repeat across layers of one geometry, so vLLM compiles each once."""
    out = [Unit("attnbench_fa4_decode", ("attnbench_fa4_decode", arch, cfg), _bind(compile_decode, cfg))
           for cfg in decode_configs(layer, limits)]
    if compile_prefill is not None:
        out += [Unit("attnbench_fa4_fa4_prefill", ("attnbench_fa4_fa4_prefill", arch, layer, probe),
                     _bind(compile_prefill, probe)) for probe in prefill_probes(limits)]
    return out


def _bind(fn: Callable, arg) -> Callable[[], None]:
    return lambda: fn(arg)
