"""Accuracy statistics for evals whose samples are clustered: each question is asked several
times, and repeats of one question are not independent (an easy question is right every time),
so every uncertainty here treats the question, not the sample, as the unit.

Notation: question q has n_q scored samples with sum s_q (scores in [0, 1]); G questions;
N = sum n_q; the accuracy is p = sum s_q / N.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
ALPHA = 0.05


@dataclass
class Estimate:
    mean: float  # fraction
    stderr: float
    ci_low: float
    ci_high: float
    n_samples: int
    n_questions: int
    # the spread of the mean over fresh answers to these same questions (repeat-to-repeat
    # variation only): what a reproduction of a published figure on the same set is held to
    stderr_repeat: float = math.nan


@dataclass
class PairedDiff:
    """B minus A over the (question, repeat) cells both scored. The interval, the p-value and the
    verdict all come from one bootstrap over questions, so they cannot disagree."""
    name_a: str
    name_b: str
    diff: float  # fraction; positive: B scores higher
    stderr: float
    ci_low: float
    ci_high: float
    p_value: float
    n_cells: int
    n_questions: int

    @property
    def significant(self) -> bool:
        """The printed 95% interval excludes 0."""
        return self.ci_low > 0 or self.ci_high < 0

    def verdict(self) -> str:
        """'fa4 vs fa3: -0.8 pts, 95% CI [-2.9, +1.3]: no evidence of a difference'."""
        head = (f"{self.name_b} vs {self.name_a}: {100 * self.diff:+.1f} pts, "
                f"95% CI [{100 * self.ci_low:+.1f}, {100 * self.ci_high:+.1f}]")
        if not self.significant:
            return f"{head}: no evidence of a difference"
        word = "higher" if self.diff > 0 else "lower"
        return f"{head}: {self.name_b} scores {word} (p = {self.p_value:.3g})"


def _clusters(scores: Mapping[tuple[Hashable, int], float]) -> tuple[np.ndarray, np.ndarray]:
    """{(question, repeat): score} -> per-question sums s_q and counts n_q, questions sorted (by
    str), so that resampling with a seed gives the same interval whatever the order of the rows."""
    sums: dict[Hashable, float] = defaultdict(float)
    counts: dict[Hashable, int] = defaultdict(int)
    for (q, _), x in scores.items():
        sums[q] += float(x)
        counts[q] += 1
    keys = sorted(sums, key=str)
    return np.array([sums[k] for k in keys]), np.array([counts[k] for k in keys], dtype=float)


def clustered_stderr(s: np.ndarray, n: np.ndarray) -> float:
    """Cluster-robust (CR1) standard error of p = sum s / sum n:
    p - p0 = sum_q (s_q - n_q p0) / N, the G cluster terms are independent, so
    Var(p) ~ G/(G-1) * sum_q (s_q - n_q p)^2 / N^2. With equal n_q this is sd(question means)/sqrt(G)."""
    g = len(s)
    if g < 2:
        return math.nan
    p = s.sum() / n.sum()
    return math.sqrt(g / (g - 1) * float(((s - n * p) ** 2).sum())) / float(n.sum())


def bootstrap_ci(s: np.ndarray, n: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES,
                 with_p: bool = False):
    """Percentile 95% CI of sum s / sum n when the G questions are resampled with replacement.
    with_p: also the two-sided bootstrap p of "the true value is 0" from the same resamples,
    2 (1 + #{resample on the far side of 0}) / (1 + resamples), capped at 1."""
    g = len(s)
    if g == 0:
        return (math.nan, math.nan, math.nan) if with_p else (math.nan, math.nan)
    idx = np.random.default_rng(seed).integers(0, g, size=(resamples, g))
    stats = s[idx].sum(axis=1) / n[idx].sum(axis=1)
    lo, hi = np.quantile(stats, [ALPHA / 2, 1 - ALPHA / 2])
    if not with_p:
        return float(lo), float(hi)
    if np.all(stats == 0):
        return float(lo), float(hi), 1.0
    far = min(int(np.sum(stats <= 0)), int(np.sum(stats >= 0)))
    return float(lo), float(hi), min(1.0, 2 * (1 + far) / (1 + resamples))


def estimate(scores: Mapping[tuple[Hashable, int], float], seed: int = 0) -> Estimate:
    """Accuracy with clustered stderr and bootstrap CI from {(question, repeat): score}, and the
    repeat-only stderr: with the questions fixed, p's variance is sum_q n_q v_q / N^2, v_q the
    within-question variance of one answer (sample variance over its repeats; questions asked
    once add nothing and are not counted, so with one repeat it is nan)."""
    s, n = _clusters(scores)
    if len(s) == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, 0)
    lo, hi = bootstrap_ci(s, n, seed)
    by: dict[Hashable, list[float]] = defaultdict(list)
    for (q, _), x in scores.items():
        by[q].append(float(x))
    within = [len(v) * float(np.var(v, ddof=1)) for v in by.values() if len(v) > 1]
    repeat = math.sqrt(sum(within)) / float(n.sum()) if within else math.nan
    return Estimate(float(s.sum() / n.sum()), clustered_stderr(s, n), lo, hi, int(n.sum()), len(s), repeat)


def paired_difference(a: Mapping[tuple[Hashable, int], float], b: Mapping[tuple[Hashable, int], float],
                      name_a: str = "A", name_b: str = "B", seed: int = 0) -> PairedDiff:
    """B - A over the cells scored by both: d = sum_q t_q / N with t_q = sum_r (b_qr - a_qr);
    stderr and CI as for a mean with t_q in place of s_q (clustered, questions resampled
    together for both backends, which keeps the pairing), p from the same bootstrap resamples."""
    common = sorted(set(a) & set(b), key=str)
    diffs = {k: float(b[k]) - float(a[k]) for k in common}
    t, n = _clusters(diffs)
    if len(t) == 0:
        nan = math.nan
        return PairedDiff(name_a, name_b, nan, nan, nan, nan, nan, 0, 0)
    lo, hi, p = bootstrap_ci(t, n, seed, with_p=True)
    return PairedDiff(name_a, name_b, float(t.sum() / n.sum()), clustered_stderr(t, n), lo, hi, p,
                      int(n.sum()), len(t))


def per_repeat_means(scores: Mapping[tuple[Hashable, int], float]) -> dict[int, float]:
    """Accuracy of each repeat (the reference's runs are one repeat each)."""
    by: dict[int, list[float]] = defaultdict(list)
    for (_, r), x in scores.items():
        by[r].append(float(x))
    return {r: sum(v) / len(v) for r, v in sorted(by.items())}


def per_question_means(scores: Mapping[tuple[Hashable, int], float]) -> dict[Hashable, float]:
    by: dict[Hashable, list[float]] = defaultdict(list)
    for (q, _), x in scores.items():
        by[q].append(float(x))
    return {q: sum(v) / len(v) for q, v in by.items()}


# Repeated benchmark runs (serve-bench --repeats): a handful of runs per backend, so intervals are
# Student-t, and ratios between backends are taken on the log scale, where a ratio is a difference.

_T975 = ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365), (8, 2.306),
         (9, 2.262), (10, 2.228), (12, 2.179), (15, 2.131), (20, 2.086), (30, 2.042), (60, 2.000), (120, 1.980))


def t975(df: float) -> float:
    """The 0.975 quantile of Student's t with `df` degrees of freedom (table, linear in 1/df between
    entries, 1.96 beyond 120); nan for df < 1."""
    if not df >= 1:
        return math.nan
    for (d0, t0), (d1, t1) in zip(_T975, _T975[1:]):
        if df <= d1:
            w = (1 / df - 1 / d0) / (1 / d1 - 1 / d0)
            return t0 + w * (t1 - t0)
    w = min(1.0, (1 / df) / (1 / 120))
    return 1.96 + w * (1.980 - 1.96)


@dataclass
class Spread:
    """Mean of n repeated runs with its 95% t-interval: mean +- t(n-1) * sd / sqrt(n)."""
    n: int
    mean: float
    median: float
    min: float
    max: float
    std: float  # sample standard deviation (n - 1)
    ci_low: float
    ci_high: float

    @property
    def half_width_pct(self) -> float:
        return 100.0 * (self.ci_high - self.ci_low) / 2 / abs(self.mean) if self.mean else math.nan

    def within(self, fraction: float) -> bool:
        """Whether the 95% CI half-width is at most `fraction` of the mean (two runs at least)."""
        return self.n >= 2 and self.half_width_pct <= 100 * fraction


def spread(values: Iterable[float]) -> Spread:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if v.size == 0:
        nan = math.nan
        return Spread(0, nan, nan, nan, nan, nan, nan, nan)
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if v.size > 1 else math.nan
    half = t975(v.size - 1) * std / math.sqrt(v.size) if v.size > 1 else math.nan
    return Spread(int(v.size), mean, float(np.median(v)), float(v.min()), float(v.max()), std,
                  mean - half, mean + half)


@dataclass
class RatioCI:
    """a / b as the geometric mean of the ratios, with a 95% interval from a t-interval on logs."""
    ratio: float
    ci_low: float
    ci_high: float
    method: str  # "paired t on log ratios (n=3)", "Welch t on log means (3 vs 3)", or "single runs"

    @property
    def contains_one(self) -> bool | None:
        """Whether the interval holds 1 (no evidence of a difference); None without an interval."""
        if math.isnan(self.ci_low):
            return None
        return self.ci_low <= 1.0 <= self.ci_high


def ratio_ci(a: list[float], b: list[float], paired: bool) -> RatioCI:
    """Paired (repeat i of a ran next to repeat i of b): d_i = ln a_i - ln b_i, ratio exp(mean d),
    interval exp(mean d +- t(n-1) sd(d) / sqrt(n)). Unpaired: difference of the mean logs with
    Welch's standard error sqrt(s_a^2/n_a + s_b^2/n_b) and Welch-Satterthwaite degrees of freedom."""
    la = np.log(np.asarray([x for x in a if x and x > 0], dtype=float))
    lb = np.log(np.asarray([x for x in b if x and x > 0], dtype=float))
    nan = math.nan
    if la.size == 0 or lb.size == 0:
        return RatioCI(nan, nan, nan, "no data")
    if paired and la.size == lb.size and la.size > 1:
        d = la - lb
        half = t975(d.size - 1) * float(d.std(ddof=1)) / math.sqrt(d.size)
        m = float(d.mean())
        return RatioCI(math.exp(m), math.exp(m - half), math.exp(m + half), f"paired t on log ratios (n={d.size})")
    m = float(la.mean() - lb.mean())
    if la.size < 2 or lb.size < 2:
        return RatioCI(math.exp(m), nan, nan, "single runs")
    va, vb = float(la.var(ddof=1)) / la.size, float(lb.var(ddof=1)) / lb.size
    se = math.sqrt(va + vb)
    if se == 0:
        return RatioCI(math.exp(m), math.exp(m), math.exp(m), f"Welch t on log means ({la.size} vs {lb.size})")
    df = (va + vb) ** 2 / (va ** 2 / (la.size - 1) + vb ** 2 / (lb.size - 1))
    half = t975(df) * se
    return RatioCI(math.exp(m), math.exp(m - half), math.exp(m + half), f"Welch t on log means ({la.size} vs {lb.size})")
