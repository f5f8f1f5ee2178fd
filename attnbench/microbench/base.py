"""The contract between the microbenchmark and each backend's kernel adapter.

A shape is a frozen dataclass (what to run); inputs are the tensors built for it (see inputs.py);
a Kernel turns (shape, inputs) into a closure that writes `inp.out` — planning happens before the
closure is returned so the timed region holds only the kernel launch(es).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from torch import Tensor

DTYPES = ("bfloat16", "float16")


@dataclass(frozen=True)
class DecodeShape:
    batch: int
    context_lens: tuple[int, ...]  # per sequence, len == batch (KV length incl. the new q tokens)
    q_heads: int = 16
    kv_heads: int = 8
    head_dim: int = 128
    page_size: int = 16
    q_len: int = 1
    dtype: str = "bfloat16"  # or "float16"

    op = "decode"

    def __post_init__(self):
        object.__setattr__(self, "context_lens", tuple(int(c) for c in self.context_lens))
        _check_common(self.q_heads, self.kv_heads, self.head_dim, self.page_size, self.dtype)
        if self.batch < 1 or len(self.context_lens) != self.batch:
            raise ValueError(f"batch {self.batch} needs {self.batch} context lengths, got {len(self.context_lens)}")
        if self.q_len < 1:
            raise ValueError(f"q_len must be >= 1, got {self.q_len}")
        if min(self.context_lens) < self.q_len:
            raise ValueError(f"every context length must be >= q_len {self.q_len} (it includes the new tokens)")

    @classmethod
    def uniform(cls, batch: int, context: int, **kw) -> "DecodeShape":
        return cls(batch=batch, context_lens=(context,) * batch, **kw)

    @property
    def ragged(self) -> bool:
        return len(set(self.context_lens)) > 1

    @property
    def context(self) -> int:
        """The context length a table or plot shows: the mean over sequences (exact when uniform)."""
        return round(sum(self.context_lens) / self.batch)

    def label(self) -> str:
        ctx = f"{self.context}" + ("~" if self.ragged else "")
        q = f" q{self.q_len}" if self.q_len != 1 else ""
        return f"B{self.batch} ctx{ctx} H{self.q_heads}/{self.kv_heads}/{self.head_dim}{q} {_short(self.dtype)}"

    def describe(self) -> dict:
        """The scenario dict stored in a record (context_lens kept only when ragged)."""
        d = {"op": "decode", "batch": self.batch, "context": self.context, "q_heads": self.q_heads,
             "kv_heads": self.kv_heads, "head_dim": self.head_dim, "page_size": self.page_size,
             "q_len": self.q_len, "dtype": self.dtype, "ragged": self.ragged}
        if self.ragged:
            d["context_lens"] = list(self.context_lens)
        return d


@dataclass(frozen=True)
class PrefillShape:
    seqlens: tuple[int, ...]  # new (query) tokens per sequence
    q_heads: int = 16
    kv_heads: int = 8
    head_dim: int = 128
    dtype: str = "bfloat16"
    causal: bool = True
    context_lens: tuple[int, ...] | None = None  # cached prefix per seq (chunked prefill against paged KV)
    page_size: int = 16

    op = "prefill"

    def __post_init__(self):
        object.__setattr__(self, "seqlens", tuple(int(s) for s in self.seqlens))
        if self.context_lens is not None:
            object.__setattr__(self, "context_lens", tuple(int(c) for c in self.context_lens))
            if len(self.context_lens) != len(self.seqlens) or min(self.context_lens) < 0:
                raise ValueError("context_lens needs one non-negative cached length per sequence")
        _check_common(self.q_heads, self.kv_heads, self.head_dim, self.page_size, self.dtype)
        if not self.seqlens or min(self.seqlens) < 1:
            raise ValueError("prefill needs at least one sequence, each of >= 1 token")

    @classmethod
    def uniform(cls, batch: int, seqlen: int, **kw) -> "PrefillShape":
        ctx = kw.pop("context", None)
        return cls(seqlens=(seqlen,) * batch, context_lens=(ctx,) * batch if ctx else None, **kw)

    @property
    def batch(self) -> int:
        return len(self.seqlens)

    @property
    def paged(self) -> bool:
        """Chunked prefill: new tokens attend to a cached prefix held in a paged KV cache."""
        return self.context_lens is not None

    @property
    def kv_lens(self) -> tuple[int, ...]:
        return tuple(s + c for s, c in zip(self.seqlens, self.context_lens or (0,) * self.batch))

    @property
    def seqlen(self) -> int:
        return round(sum(self.seqlens) / self.batch)

    def label(self) -> str:
        rag = "~" if len(set(self.seqlens)) > 1 else ""
        ctx = f" +ctx{round(sum(self.context_lens) / self.batch)}" if self.paged else ""
        c = "" if self.causal else " noncausal"
        return f"B{self.batch} L{self.seqlen}{rag}{ctx} H{self.q_heads}/{self.kv_heads}/{self.head_dim}{c} {_short(self.dtype)}"

    def describe(self) -> dict:
        d = {"op": "prefill", "batch": self.batch, "seqlen": self.seqlen, "q_heads": self.q_heads,
             "kv_heads": self.kv_heads, "head_dim": self.head_dim, "dtype": self.dtype,
             "causal": self.causal, "paged": self.paged, "page_size": self.page_size,
             "ragged": len(set(self.seqlens)) > 1}
        if d["ragged"]:
            d["seqlens"] = list(self.seqlens)
        if self.paged:
            d["context_lens"] = list(self.context_lens)
        return d


Shape = DecodeShape | PrefillShape


@dataclass
class DecodeInputs:  # torch tensors, all on one device
    q: "Tensor"  # [batch*q_len, q_heads, head_dim]
    k_cache: "Tensor"  # [num_pages, page_size, kv_heads, head_dim]  (vLLM / FlashInfer NHD layout)
    v_cache: "Tensor"  # same
    block_table: "Tensor"  # [batch, max_pages] int32, random non-contiguous pages
    seq_lens: "Tensor"  # [batch] int32
    scale: float
    out: "Tensor"  # like q; poisoned (NaN) before each checked run
    # derived helpers adapters commonly need (built by inputs.py, int32, same device)
    cu_seqlens_q: "Tensor | None" = None  # [batch+1] prefix sums of q_len
    extra: dict = field(default_factory=dict)  # adapter-private cache (plans, workspaces)


@dataclass
class PrefillInputs:  # torch tensors, all on one device
    q: "Tensor"  # [total_q, q_heads, head_dim], sequences packed back to back
    k: "Tensor"  # [total_kv, kv_heads, head_dim] packed (ragged layout; for paged this is the same data)
    v: "Tensor"  # same
    cu_seqlens_q: "Tensor"  # [batch+1] int32
    cu_seqlens_k: "Tensor"  # [batch+1] int32
    max_seqlen_q: int
    max_seqlen_k: int
    scale: float
    out: "Tensor"  # like q; poisoned (NaN) before each checked run
    # chunked prefill (shape.paged): the same K/V also live in a paged cache
    k_cache: "Tensor | None" = None  # [num_pages, page_size, kv_heads, head_dim]
    v_cache: "Tensor | None" = None
    block_table: "Tensor | None" = None  # [batch, max_pages] int32
    seq_lens: "Tensor | None" = None  # [batch] int32, KV length per sequence (cached + new)
    extra: dict = field(default_factory=dict)


class Kernel:
    """One subclass per backend; the registry's Backend.microbench names it as "module:Class"."""

    name: str = "?"

    def unsupported(self, shape: Shape) -> str | None:
        """Why this kernel cannot run `shape` (checked before inputs are built), or None."""
        return None

    def decode(self, shape: DecodeShape, inp: DecodeInputs) -> Callable[[], None]:
        raise NotImplementedError(f"{self.name} has no decode kernel")

    def prefill(self, shape: PrefillShape, inp: PrefillInputs) -> Callable[[], None]:
        raise NotImplementedError(f"{self.name} has no prefill kernel")

    def with_options(self, **options) -> "Kernel":
        """A configured copy (e.g. num_splits for FA4); kernels without options ignore them."""
        return self


def _short(dtype: str) -> str:
    return {"bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)


def _check_common(q_heads, kv_heads, head_dim, page_size, dtype):
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} not one of {DTYPES}")
    if q_heads < 1 or kv_heads < 1 or q_heads % kv_heads:
        raise ValueError(f"q_heads {q_heads} must be a positive multiple of kv_heads {kv_heads}")
    if head_dim < 1 or page_size < 1:
        raise ValueError("head_dim and page_size must be positive")


__all__ = ["DecodeShape", "PrefillShape", "DecodeInputs", "PrefillInputs", "Kernel", "Shape", "DTYPES", "replace"]
