"""Is a change bigger than the noise we can see? Three tests, by the data available:
  - repeats (several records per side): one-sided Mann-Whitney U on the per-record values;
  - per-request samples (serve latencies) or per-timing samples (microbench): bootstrap CI of
    the ratio current/baseline of the statistic the metric reports (mean, median, pN);
  - a standard error recorded beside the metric (gpqa accuracy): z-test of the difference.
Each returns a Test saying whether the worsening (or improvement) is significant, and why."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
EXACT_MAX_SPLITS = 50_000  # enumerate rank splits up to this many; above, normal approximation
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_MAX_SAMPLES = 4000  # per side; more are subsampled (widens the CI a little: conservative)

# serve metric '<stat>_<m>_ms' -> per-request samples (seconds) of m; itls are per request, flattened
SAMPLES = {"ttft": "ttfts", "tpot": "tpots", "itl": "itls", "e2el": "e2els"}
_SERVE_METRIC = re.compile(r"^(mean|median|p\d+(?:\.\d+)?)_(ttft|tpot|itl|e2el)_ms$")
STDERR_OF = {"accuracy": ("stderr", 1.0), "score_pct": ("stderr", 100.0)}  # metric -> (stderr metric, scale)


@dataclass
class Test:
    significant: bool
    rule: str  # what decided: 'mann-whitney p=0.03 (3 vs 3 repeats)'


def _midranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney_less(a: list[float], b: list[float]) -> tuple[float, float]:
    """One-sided p that b tends to be smaller than a, and the smallest p these sample sizes allow.
    Rank sum of b over the pooled midranks; exact over every split of the ranks (ties handled)
    when there are few splits, else the normal approximation with tie correction."""
    n_a, n_b = len(a), len(b)
    pooled = np.array([*a, *b], dtype=float)
    ranks = _midranks(pooled)
    observed = ranks[n_a:].sum()
    n = n_a + n_b
    splits = math.comb(n, n_b)
    if splits <= EXACT_MAX_SPLITS:
        sums = np.array([ranks[list(c)].sum() for c in itertools.combinations(range(n), n_b)])
        p = float(np.mean(sums <= observed + 1e-9))
        p_min = float(np.mean(sums <= sums.min() + 1e-9))
        return p, p_min
    _, counts = np.unique(pooled, return_counts=True)
    mean = n_b * (n + 1) / 2
    var = n_a * n_b / 12 * ((n + 1) - float((counts ** 3 - counts).sum()) / (n * (n - 1)))
    if var <= 0:
        return 1.0, 0.0
    z = (observed - mean + 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(-z / math.sqrt(2)), 0.0


def repeats_test(base: list[float], cur: list[float], direction: int) -> Test:
    """Is current worse (or better) than baseline beyond the spread of the repeats? Values are
    oriented so that smaller is worse; with too few repeats for p <= alpha to be possible, only a
    complete separation (every current repeat beyond every baseline repeat) counts."""
    worse = float(np.median(cur)) * direction < float(np.median(base)) * direction
    a, b = [direction * v for v in base], [direction * v for v in cur]
    p, p_min = mann_whitney_less(a, b) if worse else mann_whitney_less(b, a)
    sizes = f"{len(base)} vs {len(cur)} repeats"
    if p_min > ALPHA:
        low, high = (b, a) if worse else (a, b)
        separated = max(low) < min(high)
        return Test(separated, f"{'complete separation' if separated else 'overlapping repeats'} ({sizes}; "
                               f"too few for a Mann-Whitney p <= {ALPHA})")
    return Test(p <= ALPHA, f"mann-whitney p={p:.3g} ({sizes})")


MICROBENCH_RATES = re.compile(r"^(tflops|gbps|kv_gbps|pct_(measured|peak)_(bw|flops))$")


def samples_of(metric: str, samples: dict) -> np.ndarray | None:
    """The per-request (serve latencies, ms) or per-timing (microbench, us; rates as 1/us) values
    behind a metric, or None."""
    if "times_us" in samples and (metric == "us" or MICROBENCH_RATES.match(metric)):
        t = np.array([x for x in samples["times_us"] if isinstance(x, (int, float)) and x > 0], dtype=float)
        return (t if metric == "us" else 1 / t) if len(t) else None  # a rate is work / time: its noise is 1/t's
    m = _SERVE_METRIC.match(metric)
    if not m or SAMPLES[m.group(2)] not in samples:
        return None
    raw = samples[SAMPLES[m.group(2)]]
    if m.group(2) == "itl":
        raw = [x for per_request in raw if isinstance(per_request, list) for x in per_request]
    values = np.array([x for x in raw if isinstance(x, (int, float)) and math.isfinite(x)], dtype=float) * 1000
    return values if len(values) else None


def statistic(metric: str):
    """The function of the samples a metric reports (vectorised over rows); microbench: median."""
    m = _SERVE_METRIC.match(metric)
    stat = m.group(1) if m else "median"
    if stat == "mean":
        return lambda x: x.mean(axis=-1)
    q = 50.0 if stat == "median" else float(stat[1:])
    return lambda x: np.percentile(x, q, axis=-1)


def bootstrap_test(metric: str, base: np.ndarray, cur: np.ndarray, seed: int = 0) -> Test:
    """Percentile 95% CI of stat(current)/stat(baseline), each side resampled independently;
    significant when the whole CI lies on one side of 1."""
    rng = np.random.default_rng(seed)
    base = rng.choice(base, BOOTSTRAP_MAX_SAMPLES, replace=False) if len(base) > BOOTSTRAP_MAX_SAMPLES else base
    cur = rng.choice(cur, BOOTSTRAP_MAX_SAMPLES, replace=False) if len(cur) > BOOTSTRAP_MAX_SAMPLES else cur
    stat = statistic(metric)
    sb = stat(base[rng.integers(0, len(base), (BOOTSTRAP_RESAMPLES, len(base)))])
    sc = stat(cur[rng.integers(0, len(cur), (BOOTSTRAP_RESAMPLES, len(cur)))])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = sc / sb
    ratio = ratio[np.isfinite(ratio)]
    if not len(ratio):
        return Test(True, "bootstrap impossible (zero baseline): threshold only")
    lo, hi = np.quantile(ratio, [ALPHA / 2, 1 - ALPHA / 2])
    return Test(bool(lo > 1 or hi < 1), f"bootstrap 95% CI of ratio [{lo:.3f}, {hi:.3f}] ({len(base)} vs {len(cur)} samples)")


def stderr_test(base: float, se_base: float, cur: float, se_cur: float) -> Test:
    """Two-sided z-test of cur - base with independent standard errors."""
    se = math.hypot(se_base, se_cur)
    if not se > 0:
        return Test(True, "zero standard error: threshold only")
    z = (cur - base) / se
    p = math.erfc(abs(z) / math.sqrt(2))
    return Test(p <= ALPHA, f"z-test on stderr p={p:.3g}")
