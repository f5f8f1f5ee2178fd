"""Repeated measured passes of one (backend, load) -> their spread and one aggregate record.

Passes are grouped by what they measured (the record identity of records.kinds: kind, backend, every
scenario setting except run-specific ones like the seed and repeat index). A pass flagged as
contaminated (observe.flags) stays out of the statistics unless keep_flagged."""

from __future__ import annotations

from dataclasses import dataclass

from attnbench import stats
from attnbench.records import kinds
from attnbench.records.record import Record
from attnbench.serving import observe

# The metrics a spread is kept for: the table's columns and what explain and compare read.
SPREAD_METRICS = ("output_throughput", "total_token_throughput", "request_throughput", "duration",
                  "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms",
                  "p99_tpot_ms", "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_e2el_ms",
                  "max_output_tokens_per_s", "server_mean_ttft_ms", "server_mean_tpot_ms", "server_mean_itl_ms")


def value(record: Record, metric: str) -> float | None:
    """A metric of a pass: the client's (vLLM's key names) or, for server_* keys, what the server's
    /metrics said about the same window (server_gc_*: its log). A TPOT of one-token requests is no number."""
    if metric.startswith("server_"):
        obs = record.samples.get("observation") or {}
        from_metrics = not metric.startswith("server_gc_")
        if (from_metrics and obs.get("server_metrics") != "ok") or (
                "tpot" in metric and (record.scenario.get("output_len") or 0) <= 1):
            return None
        v = obs.get(metric)
    else:
        v = record.metrics.get(metric)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class Group:
    """The passes of one backend and load, in repeat order."""
    key: kinds.Key
    passes: list[Record]
    keep_flagged: bool = False

    @property
    def backend(self) -> str:
        return self.passes[0].backend

    @property
    def used(self) -> list[Record]:
        return [r for r in self.passes if r.status == "ok" and (self.keep_flagged or not observe.flags(r))]

    @property
    def flagged(self) -> list[Record]:
        return [r for r in self.passes if r.status == "ok" and observe.flags(r)]

    @property
    def failed(self) -> list[Record]:
        return [r for r in self.passes if r.status != "ok"]

    @property
    def interleaved(self) -> bool:
        return all(r.scenario.get("interleaved") for r in self.passes)

    @property
    def wave(self) -> int | None:
        """The wave of servers its passes ran in, when they ran in one (older records have none)."""
        waves = {r.scenario.get("wave") for r in self.passes}
        return waves.pop() if len(waves) == 1 else None

    def values(self, metric: str) -> dict[int, float]:
        """repeat index -> value over the passes used (a single-pass record counts as repeat 0)."""
        out = {}
        for r in self.used:
            v = value(r, metric)
            if v is not None:
                out[int(r.scenario.get("repeat") or 0)] = float(v)
        return out

    def spread(self, metric: str) -> stats.Spread:
        return stats.spread(self.values(metric).values())


def groups(records: list[Record], keep_flagged: bool = False) -> list[Group]:
    """Serve passes grouped by identity, in first-seen order; within a group only the newest
    run's passes (records of older runs of the same settings in the same tree are history)."""
    by: dict[kinds.Key, list[Record]] = {}
    for r in records:
        if r.kind == "serve":
            by.setdefault(kinds.key(r), []).append(r)
    out = []
    for k, recs in by.items():
        newest = max(map(run_of, recs))
        recs = sorted((r for r in recs if run_of(r) == newest), key=lambda r: int(r.scenario.get("repeat") or 0))
        out.append(Group(k, recs, keep_flagged))
    return out


def run_of(r: Record) -> str:
    """Which invocation wrote a record: serve-bench's run_id (it starts with the run's UTC time),
    else the record's own time (a record of a single pass is its own run)."""
    return str(r.provenance.get("run_id") or r.provenance.get("utc_time") or "")


def ratio(a: Group, b: Group, metric: str) -> stats.RatioCI:
    """a / b of one metric. Paired by repeat index when every pass of each has its partner, run
    next to it (interleaved, same wave of servers); otherwise unpaired over all the passes, so that
    neither the extra passes of the noisier backend nor a flagged pass's partner are thrown away
    to make pairs, and backends of different waves (minutes apart) are never paired."""
    va, vb = a.values(metric), b.values(metric)
    paired = (a.interleaved and b.interleaved and a.wave is not None and a.wave == b.wave
              and set(va) == set(vb) and len(va) > 1)
    if paired:
        common = sorted(va)
        return stats.ratio_ci([va[i] for i in common], [vb[i] for i in common], paired=True)
    return stats.ratio_ci(list(va.values()), list(vb.values()), paired=False)


def aggregate_record(g: Group) -> Record:
    """Means under vLLM's key names (so a reader of --save-result files reads them), and per
    metric the spread: n, mean, median, min, max, std and the 95% t-interval."""
    first = g.passes[0]
    scenario = {k: v for k, v in first.scenario.items() if k not in ("repeat", "seed")}
    used = g.used
    spreads = {m: sp for m in SPREAD_METRICS if (sp := g.spread(m)).n}
    metrics = {m: spreads[m].mean if m in spreads else None for m in SPREAD_METRICS}
    metrics["completed"] = sum(int(r.metrics.get("completed") or 0) for r in used)
    metrics["failed"] = sum(int(r.metrics.get("failed") or 0) for r in used)
    rec = Record(kind="serve-aggregate", backend=g.backend, scenario=scenario, provenance=first.provenance,
                 metrics=metrics,
                 samples={"spread": {m: sp.__dict__ for m, sp in spreads.items()}, "repeats_used": [int(r.scenario.get("repeat") or 0) for r in used],
                          "repeats_flagged": [int(r.scenario.get("repeat") or 0) for r in g.flagged],
                          "repeats_failed": [int(r.scenario.get("repeat") or 0) for r in g.failed],
                          "keep_flagged": g.keep_flagged, "ci": "95% Student-t interval of the mean over repeats"})
    if not used:
        rec.status = "failed"
        rec.error = "no usable measured pass" + (f" ({len(g.flagged)} flagged)" if g.flagged else "")
    return rec


def aggregates(records: list[Record], keep_flagged: bool = False) -> list[Record]:
    return [aggregate_record(g) for g in groups(records, keep_flagged)
            if any(r.scenario.get("repeat") is not None for r in g.passes)]
