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
These are estimates from bf16 arithmetic; recalibrate them from the first H100 results.

Limits from a null pass: the reference backend collected a second time (from a second server of it, a fresh process; prompts sent
in another order, so batches are composed differently) shows the spread that "equal" means on
this model, GPU and prompt set. With it, a backend fails a metric when it exceeds `null_factor`
(3) times the null's value, never less than `null_floor` (a quarter) of the bf16 estimate above:
a reference that repeats itself bitwise would otherwise leave no room for honest rounding. The
null itself must stay within the bf16 estimates, or the reference fails: a backend that
disagrees with itself that much is nondeterministic (a race, a stale cache block), and limits
derived from it would be loose. Top-1 and top-k are limited through their disagreement
(1 - agreement) the same way."""

from __future__ import annotations

from dataclasses import dataclass, field

from attnbench.parity.metrics import TIE_MARGIN

TOPK_OVERLAP_SCALE = 0.9  # the overlap whose disagreement (0.1) the null floor takes its share of


def _flag(name: str, help: str) -> dict:
    """A limit's flag, and its [parity] scenario key: the flag's name (as parity.run.Parity says)."""
    return {"key": name.replace("-", "_"), "flag": f"--{name}", "help": help}


@dataclass(frozen=True)
class Thresholds:
    max_abs_dlogprob: float = field(default=0.25, metadata=_flag("max-dlogprob", "Fail above this max |Δ logprob| (nats)."))
    mean_abs_dlogprob: float = field(default=0.02, metadata=_flag("mean-dlogprob", "Fail above this mean |Δ logprob| (nats)."))
    mean_kl: float = field(default=0.005, metadata=_flag("max-mean-kl", "Fail above this mean top-k KL divergence (nats)."))
    # applies to top1_agreement_tie_aware
    min_top1_agreement: float = field(default=0.98, metadata=_flag(
        "min-top1", "Fail below this top-1 agreement (near-ties count as agreement)."))
    # off by default: one near-tie ends a greedy prefix
    min_greedy_prefix_mean: float | None = field(default=None, metadata=_flag(
        "min-greedy-prefix", "Fail below this mean identical greedy prefix (tokens); off by default."))
    tie_margin: float = TIE_MARGIN
    fp32_factor: float = field(default=2.0, metadata=_flag(
        "fp32-factor", "Tolerances against the fp32 reference are this many times looser."))
    max_flat_fraction: float = 0.5  # share of positions with all top-k logprobs equal (metrics.degenerate)
    # top-k overlap is judged only against a null (or when set): with near-flat distributions
    # (random weights) rounding reorders the near-tied tail of every top-k list
    min_topk_overlap: float | None = field(default=None, metadata=_flag(
        "min-topk-overlap", "Fail below this mean top-k overlap without a null pass (off by default: near-flat "
                            "distributions reorder their tails)."))
    # with a null pass: fail above this many times the null's value, but the limit is never below
    # null_floor's share of the bf16 estimate
    null_factor: float = field(default=3.0, metadata=_flag(
        "null-factor", "With the null pass: fail above this many times the reference's spread against itself."))
    null_floor: float = field(default=0.25, metadata=_flag(
        "null-floor", "With the null pass: a limit is never below this share of the fixed bf16 limit."))

    def fixed(self, fp32: bool = False) -> dict[str, tuple[str, float]]:
        """metric -> ('max' | 'min', limit): the bf16 estimates (times fp32_factor against fp32)."""
        f = self.fp32_factor if fp32 else 1.0
        out = {"max_abs_dlogprob": ("max", self.max_abs_dlogprob * f),
               "mean_abs_dlogprob": ("max", self.mean_abs_dlogprob * f),
               "mean_kl": ("max", self.mean_kl * f),
               "top1_agreement_tie_aware": ("min", 1.0 - (1.0 - self.min_top1_agreement) * f)}
        if self.min_topk_overlap is not None:
            out["topk_overlap_mean"] = ("min", 1.0 - (1.0 - self.min_topk_overlap) * f)
        return out

    def from_null(self, null: dict) -> dict[str, dict]:
        """metric -> {kind, null, limit, floor}: the limits a null comparison's metrics give.
        A 'min' metric (an agreement) is limited through its disagreement 1 - value."""
        out = {}
        scales = {**self.fixed(), "topk_overlap_mean": ("min", TOPK_OVERLAP_SCALE)}
        for key, (kind, bf16) in scales.items():
            value = null.get(key)
            if value is None:
                continue
            spread = value if kind == "max" else 1.0 - value  # how far the null is from identical
            floor = self.null_floor * (bf16 if kind == "max" else 1.0 - bf16)
            room = max(self.null_factor * spread, floor)
            out[key] = {"kind": kind, "null": value, "limit": room if kind == "max" else 1.0 - room,
                        "floor": floor, "from": "floor" if room == floor else "null"}
        return out

    def failures(self, metrics: dict, fp32: bool = False, null_limits: dict | None = None) -> list[str]:
        """The limits these metrics break, as readable lines; empty when they pass. With
        null_limits (from_null), those replace the bf16 estimates of the metrics they cover."""
        out = []
        limits = self.fixed(fp32)
        if null_limits and "topk_overlap_mean" in null_limits:
            limits.setdefault("topk_overlap_mean", ("min", 0.0))
        for key, (kind, limit) in limits.items():
            how = ""
            if null_limits and key in null_limits:
                n = null_limits[key]
                limit = n["limit"]
                spread = n["null"] if kind == "max" else 1.0 - n["null"]
                how = (" (the floor: the null is ~identical)" if n["from"] == "floor"
                       else f" ({self.null_factor:g} x the null's {spread:.3g})")
            value = metrics.get(key)
            if value is None:
                continue
            if kind == "max" and value > limit:
                out.append(f"{key} {value:.4g} > {limit:.4g}{how}")
            elif kind == "min" and value < limit:
                out.append(f"{key} {value:.4f} < {limit:.4g}{how}")
        prefix = metrics.get("greedy_prefix_mean")
        if self.min_greedy_prefix_mean is not None and prefix is not None and prefix < self.min_greedy_prefix_mean:
            out.append(f"greedy_prefix_mean {prefix:.2f} < {self.min_greedy_prefix_mean}")
        return out
