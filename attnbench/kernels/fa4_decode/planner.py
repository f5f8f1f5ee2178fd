"""How many KV splits a decode batch gets, and the fp32 workspace the splits write into.

Decode reads every KV byte once and does almost no math per byte, so its speed is the number of
bytes in flight: the grid must put enough CTAs on every SM. The natural grid is one CTA per
(sequence, KV head); when that is already num_sms * ctas_per_sm or more the machine is full and a
split would only add a combine pass, so we use 1 split. Otherwise each sequence's pages are cut
into num_splits contiguous ranges so batch * kv_heads * num_splits reaches the target, within two
hard limits: at most max_splits (the workspace is preallocated for that many, which is what lets a
CUDA graph capture any batch) and at most one split per page (a split narrower than a page would
read the same page twice and leave others idle).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SplitPlan:
    """Split s of a sequence covers its pages [s * pages_per_split, (s + 1) * pages_per_split)."""

    num_splits: int
    pages_per_split: int
    max_splits: int  # the workspace's leading dimension; num_splits <= max_splits

    @property
    def split(self) -> bool:
        """False when the kernel writes the final output directly (no workspace, no combine)."""
        return self.num_splits > 1


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def plan(
    batch: int,
    kv_heads: int,
    max_context: int,
    num_sms: int,
    page_size: int,
    max_splits: int = 64,
    ctas_per_sm: int = 2,
) -> SplitPlan:
    """Choose the split count for the longest sequence of a batch. The launcher passes the
    kernel pages_per_split 0, so each sequence's own pages are cut into num_splits even ranges on
    the device; pages_per_split here is the longest sequence's range (and the range a forced
    split count uses).

    target = num_sms * ctas_per_sm CTAs; splits = ceil(target / (batch * kv_heads)), clamped to
    [1, min(max_splits, pages)]. pages_per_split = ceil(pages / splits), and splits is then
    recomputed as ceil(pages / pages_per_split) so the longest sequence has no empty trailing split.
    That recount can drop splits (65 pages, 64 wanted: 2 pages each, 33 splits) but loses nothing:
    the decode takes as long as its longest split, pages_per_split, and the dropped CTAs would
    only have finished early.
    """
    for name, value in (("batch", batch), ("kv_heads", kv_heads), ("num_sms", num_sms),
                        ("page_size", page_size), ("max_splits", max_splits),
                        ("ctas_per_sm", ctas_per_sm)):
        if value < 1:
            raise ValueError(f"plan(): {name} must be >= 1, got {value}")
    if max_context < 0:
        raise ValueError(f"plan(): max_context must be >= 0, got {max_context}")
    pages = max(1, _ceil_div(max_context, page_size))
    ctas = batch * kv_heads
    target = num_sms * ctas_per_sm
    wanted = 1 if ctas >= target else _ceil_div(target, ctas)
    splits = max(1, min(wanted, max_splits, pages))
    pages_per_split = _ceil_div(pages, splits)
    splits = _ceil_div(pages, pages_per_split)
    return SplitPlan(num_splits=splits, pages_per_split=pages_per_split, max_splits=max_splits)


def workspace_shape(max_batch: int, q_heads: int, head_dim: int, max_splits: int) -> dict:
    """Shapes of the fp32 buffers every split writes: its normalised partial output and its
    natural-log LSE. Sized for the largest batch once, so CUDA-graph replays never allocate."""
    return {
        "out_partial": (max_splits, max_batch, q_heads, head_dim),
        "lse_partial": (max_splits, max_batch, q_heads),
    }
