"""Correctness before speed: a backend's output against the float32 reference.

rel_err = ||out - ref||_F / ||ref||_F over the whole output, in float32. The tolerance is a few
ulps of the storage dtype (bf16 has 8 mantissa bits, fp16 11): a kernel that is right but rounds
differently stays well under it, one that drops a page or a head lands far above it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The one correctness tolerance of attnbench: microbench verdicts, the attnbench-fa4 sweep and the
# kernel's GPU tests all compare against it.
TOLERANCE = {"bfloat16": 1e-2, "float16": 5e-3}


@dataclass(frozen=True)
class Verdict:
    rel_err: float  # inf when part of the output was never written (still NaN from the poison)
    tolerance: float
    unwritten: int  # output elements still NaN

    @property
    def ok(self) -> bool:
        return self.unwritten == 0 and self.rel_err <= self.tolerance

    def describe(self) -> str:
        if self.unwritten:
            return f"FAIL: {self.unwritten} output elements never written"
        if not self.ok:
            return f"FAIL: rel_err {self.rel_err:.3g} > tolerance {self.tolerance:g}"
        return "ok"


def poison(out) -> None:
    """Fill the output with NaN so a kernel that skips part of it cannot pass on stale values."""
    out.fill_(float("nan"))


def compare(out, ref, dtype: str) -> Verdict:
    import torch

    o = out.float()
    unwritten = int(torch.isnan(o).sum())
    if unwritten:
        return Verdict(math.inf, TOLERANCE[dtype], unwritten)
    ref = ref.float().to(o.device)
    denom = float(torch.linalg.vector_norm(ref))
    err = float(torch.linalg.vector_norm(o - ref)) / denom if denom else float(torch.linalg.vector_norm(o))
    return Verdict(err if math.isfinite(err) else math.inf, TOLERANCE[dtype], 0)


def reference(shape, inp):
    """The float32 oracle output for a shape (computed once per shape, shared by all backends)."""
    from attnbench.microbench.base import DecodeShape
    from attnbench.microbench.adapters.reference import decode_reference, prefill_reference

    return decode_reference(shape, inp) if isinstance(shape, DecodeShape) else prefill_reference(shape, inp)


def run_checked(fn, out, ref, dtype: str) -> Verdict:
    poison(out)
    fn()
    return compare(out, ref, dtype)
