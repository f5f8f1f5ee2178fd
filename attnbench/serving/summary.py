"""serve-bench's side-by-side comparison: the terminal table and summary.md.

Pure functions over serve Records. Records are compared only within one load shape (same
input/output lengths, prompt count, arrival rate and concurrency cap); every metric cell carries
its ratio to the reference of that shape: the best backend per metric, or --baseline BACKEND.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from attnbench import atomic
from attnbench.results.record import Record


@dataclass(frozen=True)
class Column:
    key: str  # vLLM --save-result name
    label: str
    higher_is_better: bool


# Throughputs in tok/s, latencies in ms.
COLUMNS = (
    Column("output_throughput", "out tok/s", True),
    Column("total_token_throughput", "total tok/s", True),
    Column("mean_ttft_ms", "TTFT mean", False),
    Column("median_ttft_ms", "TTFT med", False),
    Column("p99_ttft_ms", "TTFT p99", False),
    Column("mean_tpot_ms", "TPOT mean", False),
    Column("median_tpot_ms", "TPOT med", False),
    Column("p99_tpot_ms", "TPOT p99", False),
    Column("mean_itl_ms", "ITL mean", False),
    Column("max_output_tokens_per_s", "peak out tok/s", True),
)


@dataclass(frozen=True, order=True)
class Shape:
    """The load a serve record ran (and on which model); only records of one shape are comparable."""

    input_len: int
    output_len: int
    num_prompts: int
    request_rate: float | None = None  # None: all at once
    max_concurrency: int | None = None
    model: str = ""

    @classmethod
    def of(cls, rec: Record) -> "Shape":
        s = rec.scenario
        return cls(int(s.get("input_len") or 0), int(s.get("output_len") or 0), int(s.get("num_prompts") or 0),
                   s.get("request_rate"), s.get("max_concurrency"), str(s.get("model") or s.get("served_model") or ""))

    @property
    def label(self) -> str:
        text = f"{self.input_len}:{self.output_len} x {self.num_prompts}"
        if self.request_rate is not None:
            text += f" @ {self.request_rate:g} req/s"
        if self.max_concurrency is not None:
            text += f" (concurrency <= {self.max_concurrency})"
        return text + (f" · {self.model}" if self.model else "")

    @property
    def slug(self) -> str:
        """File-name form: 1000x1000-n256[-r4][-c64]."""
        text = f"{self.input_len}x{self.output_len}-n{self.num_prompts}"
        if self.request_rate is not None:
            text += f"-r{self.request_rate:g}"
        if self.max_concurrency is not None:
            text += f"-c{self.max_concurrency}"
        return text


@dataclass
class Row:
    backend: str
    record: Record
    cells: list[tuple[float | None, float | None]]  # (value, ratio to the reference) per COLUMNS
    failure: str | None  # one-line reason when the run failed

    @property
    def counts(self) -> str:
        m = self.record.metrics
        if m.get("completed") is None:
            return "-"
        return f"{m['completed']}/{m.get('failed') or 0}"


@dataclass
class Table:
    shape: Shape
    reference: str  # "best" or the baseline backend's name
    rows: list[Row]
    note: str | None = None  # e.g. the baseline has no result for this shape


def one_line(text: str | None, width: int = 120) -> str:
    line = next((s.strip() for s in (text or "").splitlines() if s.strip()), "unknown reason")
    return line if len(line) <= width else line[: width - 3] + "..."


def latest(records: list[Record]) -> list[Record]:
    """One serve record per (backend, shape): the newest by provenance utc_time (ties: the later one)."""
    chosen: dict[tuple, tuple[int, Record]] = {}
    for i, rec in enumerate(records):
        if rec.kind != "serve":
            continue
        key = (rec.backend, Shape.of(rec))
        stamp = str(rec.provenance.get("utc_time") or "")
        if key not in chosen or stamp >= str(chosen[key][1].provenance.get("utc_time") or ""):
            chosen[key] = (i, rec)
    return [rec for _, rec in sorted(chosen.values(), key=lambda x: x[0])]


def comparison(records: list[Record], baseline: str | None = None) -> list[Table]:
    """Tables of the newest serve record per (backend, shape), one per shape in first-seen order."""
    by_shape: dict[Shape, list[Record]] = {}
    for rec in latest(records):
        by_shape.setdefault(Shape.of(rec), []).append(rec)
    tables = []
    for shape, recs in by_shape.items():
        ok = [r for r in recs if r.status == "ok"]
        ref_rec = next((r for r in ok if r.backend == baseline), None) if baseline else None
        note = None
        if baseline and ref_rec is None:
            note = f"baseline {baseline!r} has no successful run of this shape; ratios are to the best backend"
        refs = []
        for col in COLUMNS:
            if ref_rec is not None:
                refs.append(ref_rec.metrics.get(col.key))
                continue
            values = [v for v in (r.metrics.get(col.key) for r in ok) if v is not None]
            refs.append((max if col.higher_is_better else min)(values) if values else None)
        rows = []
        for rec in recs:
            if rec.status != "ok":
                rows.append(Row(rec.backend, rec, [(None, None)] * len(COLUMNS), one_line(rec.error)))
                continue
            cells = []
            for col, ref in zip(COLUMNS, refs):
                v = rec.metrics.get(col.key)
                cells.append((v, v / ref if v is not None and ref else None))
            rows.append(Row(rec.backend, rec, cells, None))
        tables.append(Table(shape, baseline if ref_rec is not None else "best", rows, note))
    return tables


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if isinstance(v, int) or abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def fmt_ratio(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}x"


def _legend(reference: str) -> str:
    to = "the best backend of the shape (max throughput, min latency)" if reference == "best" else reference
    return f"throughput in tok/s, latency in ms; each cell: value and its ratio to {to}"


def comparison_table(records: list[Record], baseline: str | None = None) -> str:
    """The terminal table serve-bench prints after all backends ran."""
    tables = comparison(records, baseline)
    if not tables:
        return "(no serve results to compare)"
    header = ["backend", "shape", *(c.label for c in COLUMNS), "ok/failed"]
    out = []
    for t in tables:
        lines = [header]
        for row in t.rows:
            cells = [f"{fmt(v)} {fmt_ratio(r)}".rstrip() for v, r in row.cells]
            if row.failure:
                lines.append([row.backend, t.shape.label, f"FAILED: {row.failure}"])
            else:
                lines.append([row.backend, t.shape.label, *cells, row.counts])
        full = [line for line in lines if len(line) == len(header)]  # a failed row's reason must not widen a column
        widths = [max(len(line[i]) for line in full) for i in range(len(header))]
        title = f"== {t.shape.label}: {_legend(t.reference)} =="
        out.append(title)
        if t.note:
            out.append(f"   note: {t.note}")
        for line in lines:
            parts = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(line)]
            if len(line) < len(header):  # a failed row: its reason runs on from the shape column
                parts = [line[0].ljust(widths[0]), line[1].ljust(widths[1]), line[2]]
            out.append("  ".join(parts).rstrip())
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def comparison_markdown(records: list[Record], baseline: str | None = None) -> str:
    """The same tables as markdown (summary.md, CI job summaries)."""
    parts = []
    for t in comparison(records, baseline):
        parts.append(f"### {t.shape.label}\n\n{_legend(t.reference).capitalize()}.\n")
        if t.note:
            parts.append(f"> Note: {t.note}\n")
        head = ["backend", *(c.label for c in COLUMNS), "completed/failed"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in t.rows:
            if row.failure:
                cells = [f"**FAILED**: {_md_escape(row.failure)}", *[""] * (len(COLUMNS) - 1), row.counts]
            else:
                cells = [f"{fmt(v)} ({fmt_ratio(r)})" if r is not None else fmt(v) for v, r in row.cells] + [row.counts]
            lines.append("| " + " | ".join([_md_escape(row.backend), *cells]) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts) if parts else "(no serve results to compare)\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def provenance_line(records: list[Record]) -> str:
    """GPU, driver, vLLM version, attnbench git sha and time; several distinct values are all listed."""
    def values(get) -> str:
        seen = []
        for rec in records:
            v = get(rec.provenance)
            if v not in seen:
                seen.append(v)
        return ", ".join(str(v) for v in seen if v is not None) or "unknown"

    return (f"GPU: {values(lambda p: p.get('gpu_name'))} (driver {values(lambda p: p.get('gpu_driver'))})"
            f" · vLLM {values(lambda p: (p.get('packages') or {}).get('vllm'))}"
            f" · torch {values(lambda p: (p.get('packages') or {}).get('torch'))}"
            f" · attnbench git {values(lambda p: p.get('git_sha'))}"
            f" · {values(lambda p: p.get('utc_time'))}")


def write_summary(result_dir: str | os.PathLike, records: list[Record], baseline: str | None = None,
                  command: str | None = None) -> Path:
    """RESULT_DIR/summary.md: the comparison tables, the exact command and where the numbers came from."""
    serve = [r for r in records if r.kind == "serve"]
    command = command or next((r.provenance.get("command") for r in serve if r.provenance.get("command")), None)
    models = sorted({str(r.scenario.get("served_model") or r.scenario.get("model")) for r in serve
                     if r.scenario.get("served_model") or r.scenario.get("model")})
    lines = ["# attnbench serve-bench comparison", ""]
    if models:
        lines += [f"Model: {', '.join(models)}", ""]
    lines += [provenance_line(serve), "", "Command:", "", "```", command or "(unknown)", "```", ""]
    lines.append(comparison_markdown(serve, baseline))
    failed = [r for r in latest(serve) if r.status != "ok"]
    if failed:
        lines += ["## Failed runs", ""]
        lines += [f"- {r.backend} {Shape.of(r).label}: {_md_escape(one_line(r.error, 400))}" for r in failed]
        lines.append("")
    from attnbench.serving import plots  # plots imports this module

    figures = plots.figure_names(serve)
    if figures:  # drawn right after this file is written, into the same folder
        lines += ["## Plots", ""] + [f"![{caption}]({name})\n" for name, caption in figures]
    return atomic.write_text(Path(result_dir) / "summary.md", "\n".join(lines).rstrip() + "\n")
