"""Pass/fail limits for one backend against the reference, with bf16 defaults.

Why these numbers: bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.002). Two correct
attention kernels round differently (tile order, split-KV reduction, exp2 vs exp), and after
~30 layers the logits differ by ~0.01-0.02 nats: the mean |Δ logprob| of two correct bf16
backends is typically below 0.01, so 0.02 is the mean limit. The max over thousands of positions
is a tail: 5-10 sigma of that noise reaches 0.1-0.2, so 0.25. KL over the top-k is about half
the variance of the logit noise (~1e-4); 0.005 leaves room yet is far below the >= 0.1 that a
real bug produces (wrong mask, scale or stale KV moves logprobs by whole nats). Top-1 agreement
counts near-ties (TIE_MARGIN) as agreement, so anything but ~1.0 is suspect: 0.98.

A source whose top-k logprobs are all exactly equal at over max_flat_fraction of the positions
fails whatever it is compared with: its logits are constant (weights not loaded), and two
such backends agree bitwise while neither computes the model.

Against the fp32 transformers reference every tolerance is multiplied by `fp32_factor` (2):
bf16 vs fp32 differs by the rounding of every activation, two bf16 kernels share most of it.
These are estimates from bf16 arithmetic; recalibrate them from the first H100 results."""

from __future__ import annotations

from dataclasses import dataclass

from attnbench.parity.metrics import TIE_MARGIN


@dataclass(frozen=True)
class Thresholds:
    max_abs_dlogprob: float = 0.25
    mean_abs_dlogprob: float = 0.02
    mean_kl: float = 0.005
    min_top1_agreement: float = 0.98  # applies to top1_agreement_tie_aware
    min_greedy_prefix_mean: float | None = None  # off by default: one near-tie ends a greedy prefix
    tie_margin: float = TIE_MARGIN
    fp32_factor: float = 2.0
    max_flat_fraction: float = 0.5  # share of positions with all top-k logprobs equal (metrics.degenerate)

    def failures(self, metrics: dict, fp32: bool = False) -> list[str]:
        """The limits these metrics break, as readable lines; empty when they pass."""
        f = self.fp32_factor if fp32 else 1.0
        out = []
        for key, limit in (("max_abs_dlogprob", self.max_abs_dlogprob * f),
                           ("mean_abs_dlogprob", self.mean_abs_dlogprob * f), ("mean_kl", self.mean_kl * f)):
            value = metrics.get(key)
            if value is not None and value > limit:
                out.append(f"{key} {value:.4g} > {limit:.4g}")
        top1 = metrics.get("top1_agreement_tie_aware")
        if top1 is not None and top1 < self.min_top1_agreement:
            out.append(f"top1_agreement_tie_aware {top1:.4f} < {self.min_top1_agreement}")
        prefix = metrics.get("greedy_prefix_mean")
        if self.min_greedy_prefix_mean is not None and prefix is not None and prefix < self.min_greedy_prefix_mean:
            out.append(f"greedy_prefix_mean {prefix:.2f} < {self.min_greedy_prefix_mean}")
        return out
