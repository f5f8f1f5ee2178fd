"""Baseline vs current, metric by metric: the change, and a verdict decided by two rules that must
both fire for a regression: the change is beyond the threshold (percent, per-metric overrides),
and it is beyond the noise the data shows (repeats, per-request samples or a recorded stderr).
Without any noise estimate the threshold alone decides, and the row says so."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field

import numpy as np

from attnbench.compare import direction, match, noise
from attnbench.records import kinds
from attnbench.records.record import Record
from attnbench.serving import observe

# verdicts
OK, REGRESSION, IMPROVEMENT, NOISE, UNJUDGED = "ok", "regression", "improvement", "within noise", "unjudged"
FAILED, MISSING, NEW, NA = "failed", "missing", "new", "n/a"
BAD = (REGRESSION, FAILED)


@dataclass
class Settings:
    threshold_pct: float = 5.0
    metric_thresholds: dict[str, float] = field(default_factory=dict)  # glob -> percent
    metrics: list[str] = field(default_factory=list)  # globs; empty: every metric

    def threshold(self, metric: str) -> float:
        for pattern, pct in self.metric_thresholds.items():
            if fnmatch.fnmatchcase(metric, pattern):
                return pct
        return self.threshold_pct

    def wants(self, metric: str) -> bool:
        return not self.metrics or any(fnmatch.fnmatchcase(metric, p) for p in self.metrics)


@dataclass
class Row:
    kind: str
    backend: str
    label: str
    metric: str  # "(run)" for rows about a whole record: failed, missing, new
    baseline: float | None
    current: float | None
    change_pct: float | None
    verdict: str
    rule: str
    n_baseline: int = 0
    n_current: int = 0


@dataclass
class Comparison:
    rows: list[Row]
    matched: int  # identity keys present on both sides
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict in BAD]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def change_pct(base: float, cur: float) -> float:
    """(current - baseline) / |baseline| in percent; a change from 0 is infinite."""
    if base == 0:
        return 0.0 if cur == 0 else math.copysign(math.inf, cur)
    return (cur - base) / abs(base) * 100


def _values(records: list[Record], metric: str) -> list[float]:
    return [float(r.metrics[metric]) for r in records
            if isinstance(r.metrics.get(metric), (int, float)) and math.isfinite(r.metrics[metric])]


def _noise(metric: str, base: list[Record], cur: list[Record], bv: list[float], cv: list[float], d: int) -> noise.Test | None:
    """The best noise test the data allows, or None when there is none."""
    if len(bv) >= 2 and len(cv) >= 2:
        return noise.repeats_test(bv, cv, d)
    bs = [s for r in base if (s := noise.samples_of(metric, r.samples)) is not None]
    cs = [s for r in cur if (s := noise.samples_of(metric, r.samples)) is not None]
    if bs and cs and min(len(bs[0]), len(cs[0])) >= 2:
        return noise.bootstrap_test(metric, np.concatenate(bs), np.concatenate(cs))
    if metric in noise.STDERR_OF and len(bv) == 1 and len(cv) == 1:
        se_name, scale = noise.STDERR_OF[metric]
        se_b, se_c = base[0].metrics.get(se_name), cur[0].metrics.get(se_name)
        if isinstance(se_b, (int, float)) and isinstance(se_c, (int, float)):
            return noise.stderr_test(bv[0], se_b * scale, cv[0], se_c * scale)
    return None


def judge_metric(metric: str, base: list[Record], cur: list[Record], settings: Settings) -> tuple[float | None, float | None, float | None, str, str]:
    """(baseline, current, change %, verdict, rule) of one metric over the ok records of one key."""
    bv, cv = _values(base, metric), _values(cur, metric)
    b = float(np.median(bv)) if bv else None
    c = float(np.median(cv)) if cv else None
    if b is None or c is None:
        return b, c, None, NA, "no value on one side"
    pct = change_pct(b, c)
    d = direction.of(metric, base[0].kind if base else None)
    if d == direction.UNKNOWN:
        return b, c, pct, UNJUDGED, "direction unknown"
    limit = settings.threshold(metric)
    if abs(pct) <= limit:
        return b, c, pct, OK, f"within threshold {limit:g}%"
    worse = pct * d < 0
    test = _noise(metric, base, cur, bv, cv, d)
    if test is None:
        return b, c, pct, REGRESSION if worse else IMPROVEMENT, f"beyond threshold {limit:g}%; no noise estimate"
    if not test.significant:
        return b, c, pct, NOISE, f"beyond threshold {limit:g}% but {test.rule}"
    return b, c, pct, REGRESSION if worse else IMPROVEMENT, f"beyond threshold {limit:g}% and {test.rule}"


def compare(baseline: list[Record], current: list[Record], settings: Settings | None = None) -> Comparison:
    settings = settings or Settings()
    # serve-bench's aggregates summarise passes that are compared themselves, as repeats
    compared = lambda r: kinds.get(r.kind) is None or kinds.get(r.kind).compared  # noqa: E731
    baseline = [r for r in baseline if compared(r)]  # serve-aggregate: derived from the serve passes
    current = [r for r in current if compared(r)]
    rows: list[Row] = []
    notes: list[str] = []
    # a pass flagged as contaminated (a JIT stall, preemptions, a clock dip) measured something else
    for side, recs in (("baseline", baseline), ("current", current)):
        flagged = [r for r in recs if observe.flags(r)]
        if flagged:
            why = sorted({f["kind"] for r in flagged for f in observe.flags(r)})
            notes.append(f"{len(flagged)} flagged {side} pass(es) left out ({', '.join(why)})")
    baseline = [r for r in baseline if not observe.flags(r)]
    current = [r for r in current if not observe.flags(r)]
    bg, cg = match.group(baseline), match.group(current)
    gpus = lambda rs: {r.provenance.get("gpu_name") for r in rs if r.provenance.get("gpu_name")}  # noqa: E731
    if gpus(baseline) and gpus(current) and gpus(baseline) != gpus(current):
        notes.append(f"baseline ran on {', '.join(sorted(gpus(baseline)))}, current on {', '.join(sorted(gpus(current)))}")
    matched = 0
    for k in sorted(set(bg) | set(cg)):
        kind, backend, _ = k
        lab = match.label(k)
        if k not in cg:
            rows.append(Row(kind, backend, lab, "(run)", None, None, None, MISSING, "only in the baseline", len(bg[k]), 0))
            continue
        if k not in bg:
            rows.append(Row(kind, backend, lab, "(run)", None, None, None, NEW, "only in the current results", 0, len(cg[k])))
            continue
        matched += 1
        base = [r for r in bg[k] if r.status == "ok"]
        cur = [r for r in cg[k] if r.status == "ok"]
        if base and not cur:
            err = next((r.error for r in cg[k] if r.error), "") or ""
            rows.append(Row(kind, backend, lab, "(run)", None, None, None, FAILED,
                            f"every current run failed: {err[:200]}", len(base), 0))
            continue
        if not base:
            rows.append(Row(kind, backend, lab, "(run)", None, None, None, UNJUDGED,
                            "every baseline run failed: nothing to compare with", 0, len(cur)))
            continue
        metrics = sorted({m for r in base + cur for m in r.metrics if settings.wants(m)})
        for m in metrics:
            b, c, pct, verdict, rule = judge_metric(m, base, cur, settings)
            rows.append(Row(kind, backend, lab, m, b, c, pct, verdict, rule, len(base), len(cur)))
    return Comparison(rows, matched, notes)
