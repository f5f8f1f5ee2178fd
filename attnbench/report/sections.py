"""What the report shows per record kind, from its declaration in records.kinds; serve and microbench
have their own section builders, every other kind (gpqa, parity, explain, future ones) gets the
generic one: a table of the newest run per (backend, scenario) and its metrics with their CIs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from attnbench import textfmt
from attnbench.report import charts
from attnbench.report.page import Cell, Html, Section, esc, img, link, relative, table
from attnbench.report.sources import Entry, Raw
from attnbench.records import kinds
from attnbench.records.record import Record
from attnbench.serving import summary


@dataclass(frozen=True)
class KindView:
    title: str
    history: tuple[tuple[str, str], ...]  # (metric, label with unit) drawn over runs
    columns: tuple[str, ...] = ()  # metrics shown first in tables
    intervals: tuple[str, ...] = ()  # metrics charted with their confidence intervals

    @classmethod
    def of(cls, kind: kinds.Kind) -> "KindView":
        history = tuple((m, (kind.metric(m) and kind.metric(m).label) or m) for m in kind.history)
        return cls(kind.title, history, kind.columns, kind.intervals)


# The kinds the report has a view for: those that declare what to draw over runs.
VIEWS = {name: KindView.of(k) for name, k in kinds.KINDS.items() if k.history}
MAX_HISTORY_FIGURES = 12  # per kind; a microbench grid has dozens of scenarios
MAX_OTHER_COLUMNS = 8


@dataclass
class Context:
    """Where the report is written; figures go to plot_dir and are embedded with a link to the file."""

    out_dir: Path
    plot_dir: Path
    plt: object
    figures: list[Path] = field(default_factory=list)

    def figure(self, path: Path | None, alt: str) -> Html:
        if path is None:
            return Html("")
        self.figures.append(path)
        return img(path, alt, relative(path, self.out_dir))

    def json_link(self, path: Path) -> Html:
        href = relative(path, self.out_dir)
        return link(href, href)


def flat(scenario: dict, prefix: str = "") -> dict[str, object]:
    """Scenario settings as one level of scalars: nested objects dotted (shape.batch), short lists joined."""
    out: dict[str, object] = {}
    for k, v in scenario.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif isinstance(v, list) and 0 < len(v) <= 8 and all(isinstance(x, (str, int, float)) for x in v):
            out[prefix + k] = ",".join(map(str, v))
        elif isinstance(v, (str, int, float, bool)):
            out[prefix + k] = v
    return out


def identity(rec: Record) -> str:
    """What was measured, as compare matches it: the scenario without where/when it ran (seed, port...)."""
    return kinds.key(rec)[2]


def scenario_label(rec: Record) -> str:
    """A short name for tables and titles (identity() tells scenarios apart)."""
    if rec.kind == "serve":
        return summary.Shape.of(rec).label
    if isinstance(rec.scenario.get("label"), str):
        return rec.scenario["label"]
    settings = flat(kinds.settings(rec))
    declared = kinds.get(rec.kind)
    named = declared.label_keys if declared else ()
    shown = {k: v for k, v in settings.items() if k in named} or settings
    return " ".join(f"{k}={v}" for k, v in shown.items()) or "-"


def slug(text: str, unique: str | None = None) -> str:
    """A file-name form of a label; a hash of `unique` (default the label) keeps similar ones apart."""
    keep = "".join(c if c.isalnum() else "-" for c in text.lower())
    short = "-".join(p for p in keep.split("-") if p)[:60] or "x"
    return f"{short}-{hashlib.sha1((unique or text).encode()).hexdigest()[:8]}"


def latest(entries: list[Entry]) -> list[Entry]:
    """Newest entry per (backend, scenario identity) by provenance utc_time; first-seen order."""
    chosen: dict[tuple, tuple[int, Entry]] = {}
    for i, e in enumerate(entries):
        key = (e.record.backend, identity(e.record))
        stamp = str(e.record.provenance.get("utc_time") or "")
        if key not in chosen or stamp >= str(chosen[key][1].record.provenance.get("utc_time") or ""):
            chosen[key] = (chosen.get(key, (i,))[0], e)
    return [e for _, e in sorted(chosen.values(), key=lambda x: x[0])]


def fmt(v: object) -> str:
    """A table cell of any value: yes/no, a float by magnitude (significant digits below 1)."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return textfmt.by_magnitude(v) if abs(v) >= 1 or v == 0 else textfmt.significant(v, 4)
    return textfmt.MISSING if v is None else str(v)


def history(ctx: Context, kind: str, entries: list[Entry]) -> list[Html]:
    """Per scenario with two or more runs: each history metric over time, one line per backend."""
    view = VIEWS.get(kind)
    metrics = view.history if view else ()
    by_scenario: dict[str, list[Record]] = {}
    for e in entries:
        if e.record.status == "ok" and charts.parse_time(e.record.provenance.get("utc_time")):
            by_scenario.setdefault(identity(e.record), []).append(e.record)
    out: list[Html] = []
    drawn = skipped = 0
    for ident, recs in by_scenario.items():
        label = scenario_label(recs[0])
        runs = {}
        for r in recs:
            runs.setdefault(r.backend, set()).add(r.provenance.get("utc_time"))
        if not metrics or max(len(times) for times in runs.values()) < 2:
            continue  # no backend ran this scenario twice: nothing to draw over time
        if drawn >= MAX_HISTORY_FIGURES:
            skipped += 1
            continue
        series: dict[str, dict[str, list[charts.Point]]] = {}
        several_gpus = len({_gpu(r) for r in recs}) > 1  # then one line per backend and GPU
        for key, name in metrics:
            for r in recs:
                v = r.metrics.get(key)
                if v is not None:
                    point = charts.Point(charts.parse_time(r.provenance["utc_time"]),
                                         str(r.provenance.get("git_sha") or "?"), float(v))
                    line = f"{r.backend} · {_gpu(r)}" if several_gpus else r.backend
                    series.setdefault(name, {}).setdefault(line, []).append(point)
        if not series:
            continue
        path = charts.history(ctx.plt, f"History · {kind} · {label}", series,
                              ctx.plot_dir / f"history-{kind}-{slug(label, ident)}.png")
        out.append(ctx.figure(path, f"History of {kind} {label} over runs"))
        out.append(_change_table(label, series))
        drawn += 1
    if not out:
        out.append(Html(f'<p class="note">No history yet: every {kind} scenario here has a single run '
                        "(pass several result directories, e.g. results/h100 and a new run).</p>"))
    if skipped:
        out.append(Html(f'<p class="note">{skipped} more {kind} scenarios have a history; not drawn.</p>'))
    return out


def _change_table(label: str, series: dict[str, dict[str, list[charts.Point]]]) -> Html:
    """Per backend and metric: the latest run against the one before it."""
    rows = []
    for metric, per_line in series.items():
        for line, points in sorted(per_line.items()):
            points = sorted(points, key=lambda p: p.time)
            if len(points) < 2:
                continue
            prev, last = points[-2], points[-1]
            change = textfmt.signed_pct((last.value / prev.value - 1) * 100) if prev.value else textfmt.MISSING
            rows.append([line, metric, len(points), f"{fmt(prev.value)} ({prev.sha[:7]})",
                         f"{fmt(last.value)} ({last.sha[:7]})", change])
    return table(["backend", "metric", "runs", "previous (git sha)", "latest (git sha)", "change"], rows,
                 f"{label}: latest run against the previous one")


def serve_section(ctx: Context, entries: list[Entry]) -> Section:
    """Per GPU: the newest comparison tables and distributions; then the history of every shape."""
    sec = Section("serve", VIEWS["serve"].title)
    gpus = list(dict.fromkeys(_gpu(e.record) for e in entries))
    for gpu in gpus:
        records = [e.record for e in entries if _gpu(e.record) == gpu]  # comparison() keeps each group's newest run
        where = f" · {gpu}" if len(gpus) > 1 else ""
        sec.add(Html(f"<h3>Latest comparison{esc(where)}</h3>"),
                Html(f'<p class="note">{esc(summary.provenance_line(records))}</p>'))
        for t in summary.comparison(records):
            sec.add(_comparison_table(t))
        sec.add(Html(f"<h3>Distributions{esc(where)}</h3>"))
        from attnbench.serving import plots

        folder = ctx.plot_dir / "serve" / (slug(gpu) if len(gpus) > 1 else "")
        for path in plots.write_plots(folder, records):
            sec.add(ctx.figure(path, f"{path.stem.replace('-', ' ')}{where}"))
    sec.add(Html("<h3>History</h3>"), *history(ctx, "serve", entries))
    return sec


def _comparison_table(t: summary.Table) -> Html:
    head = ["backend", *(c.label for c in summary.COLUMNS), "completed/failed"]
    rows, classes = [], []
    for row in t.rows:
        if row.failure:
            rows.append([row.backend, Cell(f"FAILED: {row.failure}", len(summary.COLUMNS)), row.counts])
            classes.append("failed")
        else:
            rows.append([row.backend, *(summary.md_cell(c) for c in row.cells), row.counts])
            classes.append(None)
    caption = f"{t.shape.label} — {summary.legend(t.reference, [t])}"
    return table(head, rows, caption, classes)


def _gpu(rec: Record) -> str:
    return str(rec.provenance.get("gpu_name") or "GPU unknown")


def _scenario_columns(records: list[Record]) -> list[str]:
    return list(dict.fromkeys(k for r in records for k in flat(r.scenario)))


def _metric_columns(kind: str, records: list[Record]) -> list[str]:
    view = VIEWS.get(kind)
    first = [c for c in (view.columns if view else ()) if any(c in r.metrics for r in records)]
    rest = sorted({k for r in records for k in r.metrics} - set(first))
    return first + rest[:MAX_OTHER_COLUMNS]


def _verdict(rec: Record) -> str | None:
    """parity's `passed` metric (1/0, null when nothing was compared)."""
    value = rec.metrics.get("passed")
    return None if value is None else ("PASS" if value else "FAIL")


def _records_table(ctx: Context, kind: str, newest: list[Entry], scenario_cols: list[str] | None) -> Html:
    records = [e.record for e in newest]
    metric_cols = _metric_columns(kind, records)
    verdicts = [_verdict(r) for r in records]
    head = ["backend", *(scenario_cols if scenario_cols is not None else ["scenario"]), *metric_cols]
    head += ["verdict"] if any(verdicts) else []
    head += ["status", "raw JSON"]
    rows, classes = [], []
    for e, verdict in zip(newest, verdicts):
        r = e.record
        scen = [fmt(flat(r.scenario).get(k)) for k in scenario_cols] if scenario_cols is not None else [scenario_label(r)]
        row = [r.backend, *scen, *(fmt(r.metrics.get(k)) for k in metric_cols)]
        failures = r.samples.get("threshold_failures") if verdict == "FAIL" else None
        row += [f"FAIL: {failures[0]}" if failures else verdict or "-"] if any(verdicts) else []
        row += ["ok" if r.status == "ok" else f"FAILED: {summary.one_line(r.error)}", ctx.json_link(e.path)]
        rows.append(row)
        classes.append("failed" if r.status != "ok" or verdict == "FAIL" else None)
    return table(head, rows, f"Newest run per backend and scenario ({len(rows)})", classes)


def roof(records: list[Record], gpu: str) -> tuple[float | None, float | None, str]:
    """The GPU's ceilings (GB/s, TFLOP/s): as microbench measured them at the start of the run
    (provenance "roofline"), else NVIDIA's datasheet, else the bandwidth implied by pct_measured_bw."""
    for r in records:
        measured = r.provenance.get("roofline") or {}
        if measured.get("measured_gbps") or measured.get("measured_tflops"):
            return measured.get("measured_gbps"), measured.get("measured_tflops"), "measured"
    from attnbench.microbench import roofline

    sheet = roofline.datasheet(gpu)
    if sheet:
        return sheet["datasheet_gbps"], sheet["datasheet_tflops"], "datasheet"
    for r in records:
        m = r.metrics
        if m.get("gbps") and m.get("pct_measured_bw"):
            return m["gbps"] / (m["pct_measured_bw"] / 100.0), None, "measured"  # pct = achieved / ceiling
    return None, None, ""


def microbench_section(ctx: Context, entries: list[Entry]) -> Section:
    sec = Section("microbench", VIEWS["microbench"].title)
    newest = latest(entries)
    records = [e.record for e in newest]
    sec.add(_records_table(ctx, "microbench", newest, _scenario_columns(records)))
    sec.add(Html("<h3>Roofline</h3>"))
    for gpu in dict.fromkeys(_gpu(r) for r in records):
        ok = [r for r in records if _gpu(r) == gpu and r.status == "ok"]
        points = []
        for r in ok:
            settings = flat(r.scenario)
            group = str(next((v for k, v in settings.items() if k.rsplit(".", 1)[-1] in ("op", "mode", "phase")), ""))
            points.append(charts.RoofPoint(r.backend, group, r.metrics.get("gbps") or 0, r.metrics.get("tflops") or 0))
        bw, peak, source = roof(ok, gpu)
        path = charts.roofline(ctx.plt, f"Attention kernels roofline · {gpu}", points, bw, peak, source,
                               ctx.plot_dir / f"roofline-{slug(gpu)}.png")
        if path is None:
            sec.add(Html(f'<p class="note">{esc(gpu)}: no run with both GB/s and TFLOP/s to place on a roofline.</p>'))
        sec.add(ctx.figure(path, f"Roofline of the attention kernels on {gpu}"))
    sec.add(Html("<h3>History</h3>"), *history(ctx, "microbench", entries))
    return sec


# A proportion's sample size, where a record gives the proportion but no interval of its own.
PROPORTION_N = {"top1_agreement": "prefill_positions", "greedy_identical_frac": "num_prompts"}


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion p over n trials: the p' for which
    |p - p'| = z * sqrt(p'(1 - p') / n), solved as a quadratic in p'."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return centre - half, centre + half


def _ci(rec: Record, metric: str, primary: bool) -> tuple[float | None, float | None]:
    m = rec.metrics
    low, high = m.get(f"{metric}_ci_low"), m.get(f"{metric}_ci_high")
    if low is None and high is None and primary:
        low, high = m.get("ci_low"), m.get("ci_high")
    n = m.get(PROPORTION_N.get(metric, "")) or rec.scenario.get(PROPORTION_N.get(metric, ""))
    if low is None and high is None and m.get(metric) is not None and isinstance(n, int) and n > 0:
        low, high = wilson(m[metric], n)
    return low, high


def metrics_section(ctx: Context, kind: str, entries: list[Entry]) -> Section:
    """Any kind: newest runs with their metrics, confidence-interval charts, history."""
    view = VIEWS.get(kind)
    declared = kinds.get(kind)
    sec = Section(kind, view.title if view else declared.title if declared else f"Records of kind {kind!r}")
    newest = latest(entries)
    sec.add(_records_table(ctx, kind, newest, None))
    for i, metric in enumerate(view.intervals if view else ()):
        rows = []
        for e in newest:
            r = e.record
            if r.metrics.get(metric) is None:
                continue
            low, high = _ci(r, metric, primary=i == 0)
            rows.append(charts.Interval(f"{r.backend} · {scenario_label(r)}"[:90], r.metrics[metric], low, high,
                                        r.status != "ok" or _verdict(r) == "FAIL"))
        has_ci = any(r.low is not None for r in rows)
        if i > 0 and not has_ci:
            continue  # the table already shows it; a chart earns its place with intervals
        title = f"{kind}: {metric}" + (" with confidence interval" if has_ci else "")
        if has_ci and metric in PROPORTION_N and not any(f"{metric}_ci_low" in e.record.metrics for e in newest):
            title += f" (95% Wilson over {PROPORTION_N[metric]}, taken as independent)"
        path = charts.intervals(ctx.plt, title, metric, rows, ctx.plot_dir / f"{kind}-{slug(metric)}.png")
        sec.add(ctx.figure(path, title))
    sec.add(Html("<h3>History</h3>"), *history(ctx, kind, entries))
    return sec


BUILDERS: dict[str, Callable[[Context, list[Entry]], Section]] = {
    "serve": serve_section,
    "microbench": microbench_section,
}
ORDER = kinds.NAMES  # sections in the order the kinds are declared; unknown kinds after them


def kind_sections(ctx: Context, entries: list[Entry]) -> list[Section]:
    by_kind: dict[str, list[Entry]] = {}
    for e in entries:
        by_kind.setdefault(e.record.kind, []).append(e)
    order = [k for k in ORDER if k in by_kind] + [k for k in by_kind if k not in ORDER]
    return [BUILDERS[k](ctx, by_kind[k]) if k in BUILDERS else metrics_section(ctx, k, by_kind[k]) for k in order]


def _shrink(obj: object, depth: int = 0) -> object:
    """A raw object small enough to read: long lists elided, deep nesting cut."""
    if isinstance(obj, dict):
        return {k: _shrink(v, depth + 1) for k, v in obj.items()} if depth < 3 else "{...}"
    if isinstance(obj, list):
        return [_shrink(v, depth + 1) for v in obj[:8]] + ([f"... {len(obj) - 8} more"] if len(obj) > 8 else [])
    return obj


def raw_section(ctx: Context, raws: list[Raw]) -> Section:
    sec = Section("raw", "Other records (listed raw)")
    sec.add("Records this attnbench has no view for (unknown kind) or that did not validate, as stored.")
    for r in raws:
        sec.add(Html(f"<h3>{esc(r.obj.get('kind'))} · {esc(r.obj.get('backend', '-'))} · {ctx.json_link(r.path)}</h3>"),
                Html(f'<p class="note">{esc(r.problem)}</p>'),
                Html(f"<pre>{esc(json.dumps(_shrink(r.obj), indent=1, default=str)[:6000])}</pre>"))
    return sec


def files_section(ctx: Context, entries: list[Entry], raws: list[Raw]) -> Section:
    rows = []
    for e in entries:
        p = e.record.provenance
        rows.append([ctx.json_link(e.path), e.record.kind, e.record.backend, scenario_label(e.record),
                     e.record.status, p.get("utc_time") or "-", str(p.get("git_sha") or "-")[:12], _gpu(e.record)])
    for r in raws:
        rows.append([ctx.json_link(r.path), r.obj.get("kind"), r.obj.get("backend", "-"), "-", "raw", "-", "-", "-"])
    sec = Section("files", "Raw JSON")
    sec.add(table(["file", "kind", "backend", "scenario", "status", "UTC time", "git sha", "GPU"], rows,
                  f"Every record read ({len(rows)}), linked relative to this page"))
    return sec
