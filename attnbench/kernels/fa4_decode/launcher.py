"""FA4Decode: the compiled decode + combine kernels, a fixed workspace, and the per-call plan.

Kernels are compiled once per specialisation from fake (shape-symbolic) tensors, so compiling
needs no GPU and no real tensors (`compile_decode` / `compile_combine` are what the CPU tests
exercise); calls then pass torch tensors straight through TVM-FFI, which takes the stream from
torch's current stream. A call does no allocation, no host sync and no .item(): the split plan
depends only on host-side ints (batch, max_context), so a CUDA graph can capture it. The launch
configuration is chosen per call from the same ints (tuning.py's table), so a decoder holds one
compiled kernel pair per configuration its shapes reach; `kernel_configs` lists them without
importing anything heavy, so a server can compile them all before it serves.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import replace
from functools import cache

from attnbench.kernels.fa4_decode import limits, planner, tuning
from attnbench.kernels.fa4_decode.config import LOG2_E, CombineConfig, DecodeConfig
from attnbench.kernels.fa4_decode.tuning import Tuning  # noqa: F401 (re-exported)

DEFAULT_ARCH = "sm_90a"
_lock = threading.Lock()


def target_arch() -> str:
    """The arch to compile for: $ATTNBENCH_FA4_ARCH, else the current GPU's, else sm_90a."""
    if os.environ.get("ATTNBENCH_FA4_ARCH"):
        return os.environ["ATTNBENCH_FA4_ARCH"]
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            return f"sm_{major}{minor}a" if major >= 9 else f"sm_{major}{minor}"
    except ImportError:
        pass
    return DEFAULT_ARCH


def _options(arch: str) -> str:
    extra = os.environ.get("ATTNBENCH_FA4_COMPILE_OPTIONS", "")  # e.g. "--keep-ptx --dump-dir /tmp/x"
    return f"--enable-tvm-ffi --gpu-arch {arch} {extra}".strip()


def _fake(dtype, shape, div):
    """A fake tensor whose last dim is contiguous and whose other strides are symbolic multiples
    of `div` elements (16 bytes for div = 16 // itemsize): what lets the kernel use 128-bit loads."""
    from cutlass import cute

    stride = tuple(1 if i == len(shape) - 1 else cute.sym_int64(divisibility=div) for i in range(len(shape)))
    return cute.runtime.make_fake_tensor(dtype, shape, stride=stride, assumed_align=max(div * dtype.width // 8, 1))


@cache
def compile_decode(cfg: DecodeConfig, arch: str = DEFAULT_ARCH):
    """The compiled split decode kernel for `cfg`; call it as
    f(q, k_cache, v_cache, block_table, seq_lens, out_partial, lse_partial, out, scale_log2, num_splits, pages_per_split)."""
    from cutlass import Float32, Int32, cute

    from attnbench.kernels.fa4_decode.kernel import SplitDecodeKernel, cutlass_dtype

    kernel = SplitDecodeKernel
    if cfg.mma:  # same arguments, tensor cores (kernel_mma.py)
        from attnbench.kernels.fa4_decode.kernel_mma import MmaDecodeKernel as kernel
    dt = cutlass_dtype(cfg.dtype)
    sym = cute.sym_int
    # block table / seq_lens rows get their own symbols: vLLM passes buffers longer than the batch
    batch, q_heads, kv_heads, num_pages, max_pages, splits, max_batch, bt_rows, sl_rows = (sym() for _ in range(9))
    d, p = cfg.head_dim, cfg.page_size
    args = (
        _fake(dt, (batch, q_heads, d), 8),
        _fake(dt, (num_pages, p, kv_heads, d), 8),
        _fake(dt, (num_pages, p, kv_heads, d), 8),
        _fake(Int32, (bt_rows, max_pages), 1),
        _fake(Int32, (sl_rows,), 1),
        _fake(Float32, (splits, max_batch, q_heads, d), 4),
        _fake(Float32, (splits, max_batch, q_heads), 1),
        _fake(dt, (batch, q_heads, d), 8),
        Float32(1.0), Int32(1), Int32(1),
        cute.runtime.make_fake_stream(use_tvm_ffi_env_stream=True),
    )
    with _lock:
        return cute.compile(kernel(cfg), *args, options=_options(arch))


@cache
def compile_combine(cfg: CombineConfig, arch: str = DEFAULT_ARCH):
    """The compiled combine kernel; f(out_partial, lse_partial, out, num_splits)."""
    from cutlass import Float32, Int32, cute

    from attnbench.kernels.fa4_decode.combine import CombineKernel
    from attnbench.kernels.fa4_decode.kernel import cutlass_dtype

    sym = cute.sym_int
    batch, q_heads, splits, max_batch = (sym() for _ in range(4))
    d = cfg.head_dim
    args = (
        _fake(Float32, (splits, max_batch, q_heads, d), 4),
        _fake(Float32, (splits, max_batch, q_heads), 1),
        _fake(cutlass_dtype(cfg.dtype), (batch, q_heads, d), 8),
        Int32(1),
        cute.runtime.make_fake_stream(use_tvm_ffi_env_stream=True),
    )
    with _lock:
        return cute.compile(CombineKernel(cfg), *args, options=_options(arch))


def decode_configs(t: Tuning, *, dtype: str, head_dim: int, group: int, page_size: int) -> tuple[DecodeConfig, DecodeConfig]:
    """(final-output kernel, split kernel) of one launch configuration."""
    common = {"dtype": dtype, "head_dim": head_dim, "group": group, "page_size": page_size,
              "num_threads": t.num_threads, "tokens_per_thread": t.tokens_per_thread, "pipeline": t.pipeline,
              "smem_stages": t.smem_stages, "mma": t.mma, "pdl": t.pdl}
    return DecodeConfig(write_final=True, **common), DecodeConfig(write_final=False, **common)


def kernel_configs(*, q_heads: int, kv_heads: int, head_dim: int, page_size: int, dtype: str, max_batch: int,
                   max_context: int, max_splits: int = 64, fixed: Tuning | None = None) -> list:
    """Every DecodeConfig / CombineConfig a decoder of this geometry launches for batch <=
    max_batch and context <= max_context: what to compile before serving (or capturing).
    `fixed` (or $ATTNBENCH_FA4_TUNING) replaces the table, as in FA4Decode."""
    group = q_heads // kv_heads
    fixed = fixed or tuning.from_env()
    tunings = [fixed] if fixed else tuning.table().reachable(group=group, head_dim=head_dim, page_size=page_size,
                                                             max_batch=max_batch, max_context=max_context)
    out = [cfg for t in tunings for cfg in decode_configs(t, dtype=dtype, head_dim=head_dim, group=group,
                                                          page_size=page_size)]
    combines = {combine_config(t, dtype=dtype, head_dim=head_dim, max_splits=max_splits): None for t in tunings}
    return out + list(combines)


def combine_config(t: Tuning, *, dtype: str, head_dim: int, max_splits: int) -> CombineConfig:
    """The combine kernel a launch configuration's split decode is followed by."""
    return CombineConfig(dtype=dtype, head_dim=head_dim, max_splits=max_splits, pdl=t.pdl, row_warps=t.combine_warps)


def _dtype_name(t) -> str:
    name = str(t.dtype).removeprefix("torch.")
    if name not in limits.DTYPES:
        raise ValueError(f"attnbench-fa4 decode needs bfloat16 or float16 tensors, got {name}")
    return name


def _check_vectorizable(name: str, t, elems: int) -> None:
    """Host-side metadata checks only (no sync): contiguous last dim, 16-byte aligned rows."""
    if t.stride(-1) != 1:
        raise ValueError(f"{name} must be contiguous in its last dimension (stride {tuple(t.stride())})")
    if any(s % elems for s in t.stride()[:-1]) or t.data_ptr() % 16:
        raise ValueError(f"{name} rows must be 16-byte aligned (strides {tuple(t.stride())})")


class FA4Decode:
    """Paged split-KV decode for one layer geometry, with a workspace for `max_batch` sequences.

    `__call__(q, k_cache, v_cache, block_table, seq_lens, scale, out, max_context=None)`:
    q/out [batch, q_heads, head_dim]; caches [num_pages, page_size, kv_heads, head_dim] (vLLM's
    NHD layout); block_table [batch, max_pages] int32; seq_lens [batch] int32 (KV length incl.
    the new token). max_context (default: the block table's capacity) is what the split plan is
    made from: pass the true maximum when it is known on the host, for the best split. Lengths
    beyond it are still attended (the last split runs to each sequence's end), only less evenly
    spread, so a CUDA graph captured with one max_context stays exact when lengths grow.
    """

    def __init__(self, *, q_heads: int, kv_heads: int, head_dim: int, page_size: int, dtype: str,
                 max_batch: int, max_splits: int = 64, device=None, num_sms: int | None = None,
                 ctas_per_sm: int | None = None, num_threads: int | None = None,
                 tokens_per_thread: int | None = None, pipeline: bool | None = None,
                 smem_stages: int | None = None, mma: bool | None = None, pdl: bool | None = None,
                 combine_warps: int | None = None, arch: str | None = None):
        import torch

        if q_heads % kv_heads:
            raise ValueError(f"q_heads {q_heads} must be a multiple of kv_heads {kv_heads}")
        self.q_heads, self.kv_heads, self.head_dim = q_heads, kv_heads, head_dim
        self.page_size, self.dtype, self.max_batch, self.max_splits = page_size, dtype, max_batch, max_splits
        self.device = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
        if num_sms is None:
            num_sms = torch.cuda.get_device_properties(self.device).multi_processor_count
        self.num_sms = num_sms
        self.arch = arch or target_arch()
        self.group = q_heads // kv_heads
        given = {k: v for k, v in (("num_threads", num_threads), ("tokens_per_thread", tokens_per_thread),
                                   ("ctas_per_sm", ctas_per_sm), ("pipeline", pipeline),
                                   ("smem_stages", smem_stages), ("mma", mma), ("pdl", pdl),
                                   ("combine_warps", combine_warps)) if v is not None}
        # explicit fields (sweeps, tests) or $ATTNBENCH_FA4_TUNING fix the configuration of every
        # call; else the table chooses per shape class
        env = tuning.from_env()
        self.fixed = replace(env or tuning.fallback(self.group), **given) if given else env
        self.table = tuning.table()
        self._configs: dict[Tuning, tuple[DecodeConfig, DecodeConfig]] = {}
        self._combines: dict[Tuning, CombineConfig] = {}
        for t in self._tunings(1 << 30):  # a configuration the geometry cannot run fails here, not mid-serving
            self.configs(t)
            self.combine(t)
        shapes = planner.workspace_shape(max_batch, q_heads, head_dim, max_splits)
        self.out_partial = torch.empty(shapes["out_partial"], dtype=torch.float32, device=self.device)
        self.lse_partial = torch.empty(shapes["lse_partial"], dtype=torch.float32, device=self.device)

    def tuning_for(self, batch: int, max_context: int) -> Tuning:
        """The launch configuration of a call: fixed if the constructor was given one, else the
        table's choice for this shape class. Host ints only, so CUDA-graph capture is safe."""
        if self.fixed is not None:
            return self.fixed
        return self.table.choose(group=self.group, head_dim=self.head_dim, page_size=self.page_size,
                                 batch=batch, context=max_context)

    def combine(self, t: Tuning) -> CombineConfig:
        """The combine config of a tuning, built once (every split call asks for it)."""
        cfg = self._combines.get(t)
        if cfg is None:
            cfg = self._combines[t] = combine_config(t, dtype=self.dtype, head_dim=self.head_dim,
                                                     max_splits=self.max_splits)
        return cfg

    def configs(self, t: Tuning) -> tuple[DecodeConfig, DecodeConfig]:
        """(final, split) kernel configs of a tuning, built once."""
        cfgs = self._configs.get(t)
        if cfgs is None:
            cfgs = self._configs[t] = decode_configs(t, dtype=self.dtype, head_dim=self.head_dim, group=self.group,
                                                     page_size=self.page_size)
        return cfgs

    def _tunings(self, max_context: int) -> list[Tuning]:
        if self.fixed is not None:
            return [self.fixed]
        return self.table.reachable(group=self.group, head_dim=self.head_dim, page_size=self.page_size,
                                    max_batch=self.max_batch, max_context=max_context)

    def compile(self, max_context: int = 1 << 30) -> FA4Decode:
        """Compile every kernel a call with batch <= max_batch and context <= max_context can
        launch (else each compiles on first use); call before CUDA-graph capture or serving."""
        for t in self._tunings(max_context):
            for cfg in self.configs(t):
                compile_decode(cfg, self.arch)
            compile_combine(self.combine(t), self.arch)
        return self

    def plan(self, batch: int, max_context: int) -> planner.SplitPlan:
        """Splits sized to fill num_sms x the chosen configuration's CTAs per SM."""
        return planner.plan(batch, self.kv_heads, max_context, self.num_sms, self.page_size,
                            max_splits=self.max_splits, ctas_per_sm=self.tuning_for(batch, max_context).ctas_per_sm)

    def __call__(self, q, k_cache, v_cache, block_table, seq_lens, scale: float, out,
                 max_context: int | None = None, *, window=None, sinks=None, num_splits: int | None = None):
        if window is not None and window != (-1, -1) and window != -1:
            raise ValueError("attnbench-fa4 decode has no sliding-window support; use fa4/fa3 for this model")
        if sinks is not None:
            raise ValueError("attnbench-fa4 decode has no attention-sink support; use fa4/fa3 for this model")
        batch = q.shape[0]
        self._check(q, k_cache, v_cache, block_table, seq_lens, out)
        if batch == 0:  # an empty grid is a launch error, and there is nothing to write
            return out
        if max_context is None:
            max_context = block_table.shape[1] * self.page_size
        plan = self.plan(batch, max_context)
        pages_per_split = 0  # each sequence's own pages spread over the splits (on the device)
        if num_splits is not None:  # forced split count with fixed page ranges (benchmarks, tests)
            pages = max(1, math.ceil(max_context / self.page_size))
            n = max(1, min(num_splits, self.max_splits, pages))
            pps = math.ceil(pages / n)
            plan = planner.SplitPlan(math.ceil(pages / pps), pps, self.max_splits)
            pages_per_split = plan.pages_per_split
        scale_log2 = float(scale) * LOG2_E
        t = self.tuning_for(batch, max_context)
        cfg_final, cfg_split = self.configs(t)
        if plan.num_splits == 1:
            compile_decode(cfg_final, self.arch)(
                q, k_cache, v_cache, block_table, seq_lens, self.out_partial, self.lse_partial, out,
                scale_log2, 1, plan.pages_per_split)
        else:
            compile_decode(cfg_split, self.arch)(
                q, k_cache, v_cache, block_table, seq_lens, self.out_partial, self.lse_partial, out,
                scale_log2, plan.num_splits, pages_per_split)
            compile_combine(self.combine(t), self.arch)(self.out_partial, self.lse_partial, out, plan.num_splits)
        return out

    def _check(self, q, k_cache, v_cache, block_table, seq_lens, out) -> None:
        import torch

        batch = q.shape[0]
        if q.dim() != 3 or tuple(q.shape[1:]) != (self.q_heads, self.head_dim):
            raise ValueError(f"q must be [batch, {self.q_heads}, {self.head_dim}], got {tuple(q.shape)}")
        if out.shape != q.shape or out.dtype != q.dtype:
            raise ValueError(f"out must match q ({tuple(q.shape)}, {q.dtype}), got {tuple(out.shape)}, {out.dtype}")
        want = (self.page_size, self.kv_heads, self.head_dim)
        for name, c in (("k_cache", k_cache), ("v_cache", v_cache)):
            if c.dim() != 4 or tuple(c.shape[1:]) != want:
                raise ValueError(f"{name} must be [num_pages, {', '.join(map(str, want))}], got {tuple(c.shape)}")
            if c.dtype != q.dtype:
                raise ValueError(f"{name} dtype {c.dtype} differs from q's {q.dtype}")
        if _dtype_name(q) != self.dtype:
            raise ValueError(f"this FA4Decode was built for {self.dtype}, got {q.dtype}")
        if batch > self.max_batch:
            raise ValueError(f"batch {batch} exceeds the workspace's max_batch {self.max_batch}")
        if block_table.dtype != torch.int32 or seq_lens.dtype != torch.int32:
            raise ValueError("block_table and seq_lens must be int32")
        if block_table.shape[0] < batch or seq_lens.shape[0] < batch:
            raise ValueError("block_table and seq_lens need a row per sequence")
        if block_table.stride(-1) != 1 or seq_lens.stride(-1) != 1:
            raise ValueError("block_table and seq_lens must be contiguous in their last dimension")
        elems = 16 // q.element_size()
        for name, t in (("q", q), ("out", out), ("k_cache", k_cache), ("v_cache", v_cache)):
            _check_vectorizable(name, t, elems)
