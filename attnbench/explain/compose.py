"""The decode batches a serve run actually ran, from its in-flight samples (samples.inflight).

serve-bench samples, every `interval_s`, the context length of every request that is streaming
(decode) and the prompt length of every request still waiting for its first token (prefill).
Each sample is bucketed by (decode batch size, mean context) on log grids; a bucket's
representative batch has the bucket's mean context and the spread of context lengths seen within
its samples, so ragged batches stay ragged and uniform ones (all requests sent at once) uniform.

Samples are weighted by their decode batch size B: mean TPOT averages over requests, and a step
of batch B is lived through by B of them (exact when all outputs have one length and steps are
about equally long, so that time-sampling counts steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from attnbench.errors import UserError

BATCH_STEPS = 2  # batch buckets per doubling (~41% apart)
CONTEXT_STEPS = 8  # mean-context buckets per doubling (~9% apart)
COVERAGE = 0.9  # keep the most frequent compositions until they cover this share of the weight


@dataclass(frozen=True)
class Composition:
    """One representative decode batch and the share of decode token-steps it stands for."""

    context_lens: tuple[int, ...]  # per sequence, rounded to the KV page; len == batch
    weight: float  # share of the kept weight (kept compositions sum to 1)
    samples: int  # in-flight samples in this bucket
    mean_batch: float  # batch-weighted mean decode batch of those samples
    mean_context: float  # mean context of all their sequences (before rounding)

    @property
    def batch(self) -> int:
        return len(self.context_lens)

    def label(self) -> str:
        """As microbench labels shapes: mean context, '~' when the lengths differ."""
        ragged = "~" if len(set(self.context_lens)) > 1 else ""
        return f"B{self.batch} ctx{round(sum(self.context_lens) / self.batch)}{ragged}"

    def to_json(self) -> dict:
        return {"batch": self.batch, "context": round(sum(self.context_lens) / self.batch),
                "context_lens": list(self.context_lens), "weight": self.weight, "samples": self.samples,
                "mean_batch": self.mean_batch, "mean_context": self.mean_context}


@dataclass
class Mix:
    """What one serve run's decode steps looked like."""

    compositions: list[Composition]  # most frequent first
    coverage: float  # share of all decode weight the kept compositions had before renormalising
    samples: int  # all in-flight samples
    decode_samples: int  # samples with at least one decoding request
    mean_batch: float  # batch-weighted mean decode batch over all decode samples
    mean_context: float  # mean context over all decoding sequences of all samples
    mixed_share: float  # decode weight of samples that also had prompts waiting for prefill
    mean_waiting_prefill: float  # prompts waiting per decode sample that had any
    source: str = "client"
    interval_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"compositions": [c.to_json() for c in self.compositions], "coverage": self.coverage,
                "samples": self.samples, "decode_samples": self.decode_samples, "mean_batch": self.mean_batch,
                "mean_context": self.mean_context, "mixed_share": self.mixed_share,
                "mean_waiting_prefill": self.mean_waiting_prefill, "source": self.source,
                "interval_s": self.interval_s}


def inflight_of(samples: dict, where: str) -> dict:
    """The record's samples.inflight, checked; `where` names the record in the error."""
    inf = samples.get("inflight")
    if not isinstance(inf, dict) or not isinstance(inf.get("decode_ctx"), list):
        raise UserError(f"{where}: the serve record has no in-flight samples (samples.inflight); "
                        "re-run serve-bench with this attnbench version")
    pre = inf.get("prefill_len")
    if pre is not None and (not isinstance(pre, list) or len(pre) != len(inf["decode_ctx"])):
        raise UserError(f"{where}: samples.inflight.prefill_len does not match decode_ctx sample for sample; "
                        "re-run serve-bench with this attnbench version")
    return inf


def _bucket(value: float, steps: int) -> int:
    return round(steps * math.log2(value))


def _page(c: float, page: int) -> int:
    """Round a context length to the nearest whole number of KV pages (halves up; at least one)."""
    return max(page, math.floor(c / page + 0.5) * page)


def _quantiles(values: list[float], n: int) -> list[float]:
    """n values spread like `values`: the midpoints (i + 0.5) / n of its sorted order."""
    s = sorted(values)
    return [s[min(len(s) - 1, int((i + 0.5) / n * len(s)))] for i in range(n)]


def compose(inflight: dict, page_size: int, coverage: float = COVERAGE, batch_steps: int = BATCH_STEPS,
            context_steps: int = CONTEXT_STEPS, where: str = "record") -> Mix:
    """Bucket the decode samples and keep the most frequent compositions up to `coverage`."""
    if not 0 < coverage <= 1:
        raise UserError(f"coverage must lie in (0, 1], got {coverage}")
    decode = inflight["decode_ctx"]
    prefill = inflight.get("prefill_len") or [[] for _ in decode]
    buckets: dict[tuple[int, int], list[list[int]]] = {}
    total_w = mixed_w = 0
    waiting = []
    for ctx, pre in zip(decode, prefill):
        if not ctx:
            continue
        ctx = [int(c) for c in ctx]
        b = len(ctx)
        total_w += b
        if pre:
            mixed_w += b
            waiting.append(len(pre))
        key = (_bucket(b, batch_steps), _bucket(max(1.0, sum(ctx) / b), context_steps))
        buckets.setdefault(key, []).append(ctx)
    if not total_w:
        raise UserError(f"{where}: no in-flight sample has a decoding request (the run never decoded?); "
                        "explain needs --output > 1 and a run long enough to sample")
    comps = []
    for group in buckets.values():
        w = sum(len(c) for c in group)
        mean_batch = sum(len(c) ** 2 for c in group) / w  # batch-weighted, as a step of batch B counts B times
        rep_batch = max(1, round(mean_batch))
        pooled = [c for ctx in group for c in ctx]
        mean = sum(pooled) / len(pooled)
        # spread within a batch, not across the samples: the bucket's mean plus each sample's deviations
        spread = [c - sum(ctx) / len(ctx) for ctx in group for c in ctx]
        lens = tuple(_page(mean + d, page_size) for d in _quantiles(spread, rep_batch))
        comps.append(Composition(lens, w / total_w, len(group), mean_batch, mean))
    comps.sort(key=lambda c: (-c.weight, c.batch, sum(c.context_lens)))
    kept, cum = [], 0.0
    for c in comps:
        if cum >= coverage - 1e-12:
            break
        kept.append(c)
        cum += c.weight
    kept = [Composition(c.context_lens, c.weight / cum, c.samples, c.mean_batch, c.mean_context) for c in kept]
    all_ctx = [int(c) for ctx in decode for c in ctx]
    return Mix(
        compositions=kept, coverage=cum, samples=len(decode), decode_samples=sum(1 for c in decode if c),
        mean_batch=sum(len(c) ** 2 for c in decode) / total_w, mean_context=sum(all_ctx) / len(all_ctx),
        mixed_share=mixed_w / total_w, mean_waiting_prefill=sum(waiting) / len(waiting) if waiting else 0.0,
        source=str(inflight.get("source") or "client"), interval_s=inflight.get("interval_s"),
    )


def prefill_attention_flops(input_lens: list[int], q_heads: int, head_dim: int, layers: int) -> float:
    """Causal prefill attention FLOPs of the run's prompts, all layers.

    A prompt of L tokens has L(L+1)/2 (query, key) pairs per head; each costs D MACs for q.k and
    D for p.v, i.e. 4D FLOPs: 2 * D * Hq * L(L+1) per layer.
    """
    return float(sum(2 * head_dim * q_heads * n * (n + 1) for n in input_lens)) * layers
