"""What the compiled kernels specialise on (the launcher's compile-cache keys), in plain Python:
the launcher plans, and a server lists what it must compile, without importing the CuTe DSL."""

from __future__ import annotations

import math
from dataclasses import dataclass

from attnbench.kernels.fa4_decode import limits

LOG2_E = math.log2(math.e)
VEC_BYTES = 16  # one 128-bit global load per thread per row


@dataclass(frozen=True)
class DecodeConfig:
    """Everything the compiled kernel specialises on (the launcher's compile-cache key)."""

    dtype: str  # "bfloat16" | "float16"
    head_dim: int  # 64 | 128 | 256
    group: int  # query heads per KV head (GQA group)
    page_size: int
    write_final: bool  # num_splits == 1: write the dtype output directly, no workspace
    num_threads: int = 256
    tokens_per_thread: int = 4  # independent K+V row loads in flight per thread per step
    pipeline: bool = False  # two register buffers: load step i+1 while computing step i (v2)
    smem_stages: int = 0  # > 0: cp.async K/V into a ring of this many shared-memory steps (v3)
    mma: bool = False  # tensor cores (kernel_mma.py, v4): each warp streams mma_tile_tokens-token tiles
    pdl: bool = False  # programmatic dependent launch: overlap this launch with the kernel before it and let the combine launch early

    def __post_init__(self):
        check = limits.mma_unsupported if self.mma else limits.unsupported
        why = check(head_dim=self.head_dim, group=self.group, page_size=self.page_size, dtype=self.dtype)
        if why:
            raise ValueError(f"attnbench-fa4 decode cannot run {why}")
        if self.mma:
            self._check_mma()
            return
        if self.num_threads % self.lanes_per_row or self.num_threads % 32 or not 32 <= self.num_threads <= 1024:
            raise ValueError("num_threads must be a multiple of 32 (and of head_dim/8), at most 1024")
        if self.smem_stages < 0 or (self.smem_stages and self.pipeline):
            raise ValueError("smem_stages must be >= 0, and the smem ring (v3) replaces pipeline (v2): pick one")
        if self.smem_bytes() > 48 * 1024:  # the default dynamic shared memory limit
            raise ValueError(f"{self.num_threads} threads x group {self.group} x head_dim {self.head_dim} "
                             f"needs {self.smem_bytes()} B of shared memory (> 48 KB); use fewer threads")

    @property
    def vec(self) -> int:
        return VEC_BYTES // 2  # elements per 16-byte load (16-bit types)

    @property
    def lanes_per_row(self) -> int:
        return self.head_dim // self.vec

    @property
    def rows(self) -> int:
        """Tokens a CTA reads side by side (one per group of lanes_per_row threads)."""
        return self.num_threads // self.lanes_per_row

    def _check_mma(self) -> None:
        """The tensor-core kernel's own constraints (the geometry's are in limits.mma_unsupported)."""
        if self.num_threads % 32 or not 32 <= self.num_threads <= 512:
            raise ValueError(f"mma=True runs whole warps: num_threads must be 32..512 in steps of 32, "
                             f"not {self.num_threads}")
        if self.tokens_per_thread != 1 or self.pipeline:
            raise ValueError("mma=True streams whole tiles per warp through the shared-memory ring: set "
                             "tokens_per_thread=1 and pipeline off")
        if self.smem_stages < 2:
            raise ValueError(f"mma=True needs smem_stages >= 2 (one tile computed while the next lands), "
                             f"not {self.smem_stages}")
        if self.smem_bytes() > limits.MMA_MAX_SMEM:
            raise ValueError(f"mma=True with {self.warps} warps x {self.smem_stages} stages needs "
                             f"{self.smem_bytes()} B of shared memory (> {limits.MMA_MAX_SMEM}); use fewer "
                             f"warps or stages")

    @property
    def warps(self) -> int:
        return self.num_threads // 32

    @property
    def mma_tile_tokens(self) -> int:
        """Tokens a warp streams per step in the mma kernel: 4 KB of K and 4 KB of V (16 at D128,
        32 at D64), a multiple of the MMA's k = 16 so P . V needs no padding."""
        return 2048 // self.head_dim

    def smem_bytes(self) -> int:
        if self.mma:
            # Q tile (16 rows) + the K/V ring of every warp; the end-of-CTA merge reuses the ring
            ring = self.warps * self.smem_stages * 2 * self.mma_tile_tokens * self.head_dim * 2
            stats = 2 * 4 * self.warps * 16
            return 16 * self.head_dim * 2 + ring + stats + 2048  # + 1 KB swizzle alignment of each ring
        merge = 4 * self.rows * self.group * (self.head_dim + 2)
        ring = self.num_threads * self.smem_stages * self.tokens_per_thread * 2 * VEC_BYTES
        return merge + ring + 128  # + alignment slack



@dataclass(frozen=True)
class CombineConfig:
    dtype: str  # output dtype
    head_dim: int
    max_splits: int  # workspace capacity: lse slots each lane scans (multiple of 32)
    warps: int = 4
    pdl: bool = False  # launched as a programmatic dependent of the split decode: waits on it in-kernel
    row_warps: int = 1  # warps per (sequence, head) row, each summing every row_warps-th split

    def __post_init__(self):
        if self.head_dim % 32 or self.head_dim > 256:
            raise ValueError(f"combine supports head_dim 32..256 in steps of 32, not {self.head_dim}")
        if not 1 <= self.max_splits <= 256:
            raise ValueError(f"max_splits must be 1..256, got {self.max_splits}")
        if self.row_warps < 1 or self.warps % self.row_warps:
            raise ValueError(f"combine row_warps must divide warps ({self.warps}), not {self.row_warps}")

    def smem_bytes(self) -> int:
        """Each warp's split weights, and its partial sum of the row when row_warps > 1."""
        return 4 * self.warps * 32 * self.slots + (4 * self.warps * self.head_dim if self.row_warps > 1 else 0)

    @property
    def slots(self) -> int:
        return (self.max_splits + 31) // 32  # lse values per lane

    @property
    def per_lane(self) -> int:
        return self.head_dim // 32
