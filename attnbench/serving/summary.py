"""serve-bench's side-by-side comparison: the terminal table and summary.md.

Pure functions over serve Records. Records are compared only within one load shape (same
input/output lengths, prompt count, arrival rate and concurrency cap); every metric cell carries
its ratio to the reference of that shape: the best backend per metric, or --baseline BACKEND.

table(), markdown(), write_summary(), write_plots() (in plots.py): the presentation shape every area shares.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from attnbench import atomic, stats, textfmt
from attnbench.records import kinds
from attnbench.records.record import Record
from attnbench.serving import aggregate, observe, plots
from attnbench.serving.shape import Shape


@dataclass(frozen=True)
class Column:
    key: str  # vLLM --save-result name
    label: str
    higher_is_better: bool


# Throughputs in tok/s, latencies in ms; the serve kind declares them (records.kinds).
COLUMNS = tuple(Column(m.name, m.short, m.direction == kinds.HIGHER)
                for m in map(kinds.KINDS["serve"].metric, kinds.SERVE_COLUMNS))


@dataclass
class Cell:
    value: float | None  # the mean over the passes used (the value itself for a single run)
    ratio: float | None  # to the reference of the shape
    spread: stats.Spread | None = None
    ratio_ci: stats.RatioCI | None = None
    is_reference: bool = False

    def text(self) -> str:
        """'14732 ±1.2% 1.00x', '14028 ±2.0% ≈0.95x' (the ratio's CI holds 1), '800 0.80x' (one run)."""
        out = textfmt.by_magnitude(self.value)
        if self.spread is not None and self.spread.n > 1 and not math.isnan(self.spread.half_width_pct):
            out += " " + textfmt.plus_minus_pct(self.spread.half_width_pct)
        if self.ratio is not None:
            same = self.ratio_ci is not None and not self.is_reference and self.ratio_ci.contains_one
            out += f" {'≈' if same else ''}{self.ratio:.2f}x"
        return out


@dataclass
class Row:
    backend: str
    group: aggregate.Group
    cells: list[Cell]  # per COLUMNS
    failure: str | None  # one-line reason when no pass of it succeeded

    @property
    def record(self) -> Record:
        return self.group.passes[-1]

    @property
    def counts(self) -> str:
        """completed/failed requests over the passes used; 'n runs (k flagged)' when repeated."""
        used = self.group.used
        if not used:
            m = self.record.metrics
            return "-" if m.get("completed") is None else f"{m['completed']}/{m.get('failed') or 0}"
        ok = sum(int(r.metrics.get("completed") or 0) for r in used) // len(used)
        bad = sum(int(r.metrics.get("failed") or 0) for r in used) // len(used)
        text = f"{ok}/{bad}"
        if len(self.group.passes) > 1 or self.group.flagged:
            text += f" x{len(used)}"
            extra = [f"{len(self.group.flagged)} flagged"] if self.group.flagged else []
            extra += [f"{len(self.group.failed)} failed"] if self.group.failed else []
            if extra:
                text += f" ({', '.join(extra)})"
        return text


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


def _row_names(groups: list[aggregate.Group]) -> list[str]:
    """The backend name, plus the settings that tell two groups of one backend apart."""
    names = []
    for g in groups:
        twins = [h for h in groups if h.backend == g.backend and h is not g]
        if not twins:
            names.append(g.backend)
            continue
        mine = kinds.settings(g.passes[0])
        diff = sorted({k for h in twins for k, v in kinds.settings(h.passes[0]).items() if mine.get(k) != v}
                      | {k for h in twins for k in mine if k not in kinds.settings(h.passes[0])})
        names.append(g.backend + " (" + ", ".join(f"{k}={mine.get(k)}" for k in diff) + ")")
    return names


def comparison(records: list[Record], baseline: str | None = None, keep_flagged: bool = False) -> list[Table]:
    """One table per shape in first-seen order; one row per group of passes (backend and settings)."""
    by_shape: dict[Shape, list[aggregate.Group]] = {}
    for g in aggregate.groups(records, keep_flagged):
        by_shape.setdefault(Shape.of(g.passes[0]), []).append(g)
    tables = []
    for shape, groups in by_shape.items():
        ok = [g for g in groups if g.used]
        ref_group = next((g for g in ok if g.backend == baseline), None) if baseline else None
        note = None
        if baseline and ref_group is None:
            note = f"baseline {baseline!r} has no successful run of this shape; ratios are to the best backend"
        refs: list[aggregate.Group | None] = []
        for col in COLUMNS:
            if ref_group is not None:
                refs.append(ref_group)
                continue
            have = [(g.spread(col.key).mean, g) for g in ok if g.values(col.key)]
            pick = (max if col.higher_is_better else min)(have, key=lambda x: x[0]) if have else None
            refs.append(pick[1] if pick else None)
        rows = []
        for g, name in zip(groups, _row_names(groups)):
            if not g.used:
                why = g.failed[-1].error if g.failed else f"every pass flagged ({len(g.flagged)}); see Flags"
                rows.append(Row(name, g, [Cell(None, None)] * len(COLUMNS), one_line(why)))
                continue
            cells = []
            for col, ref in zip(COLUMNS, refs):
                sp = g.spread(col.key) if g.values(col.key) else None
                if sp is None or ref is None or not ref.values(col.key):
                    cells.append(Cell(sp.mean if sp else None, None, sp))
                    continue
                rc = aggregate.ratio(g, ref, col.key) if ref is not g else None
                r = 1.0 if ref is g else (sp.mean / ref.spread(col.key).mean if ref.spread(col.key).mean else None)
                cells.append(Cell(sp.mean, r, sp, rc, ref is g))
            rows.append(Row(name, g, cells, None))
        if len(ok) == 1 and not baseline:  # one backend: a ratio to itself says nothing
            for row in rows:
                row.cells = [Cell(c.value, None, c.spread) for c in row.cells]
        tables.append(Table(shape, baseline if ref_group is not None else "best", rows, note))
    return tables


def legend(reference: str, tables: list[Table] | None = None) -> str:
    to = "the best backend of the shape (max throughput, min latency)" if reference == "best" else reference
    text = f"throughput in tok/s, latency in ms; each cell: value and its ratio to {to}"
    if tables and any(len(row.group.used) > 1 for t in tables for row in t.rows):
        text += ("; with repeats: the mean over the passes, ± the 95% CI half-width (Student t), "
                 "≈ where the ratio's 95% CI holds 1 (a paired t on log ratios where every pass ran next to "
                 "its partner, else Welch's t on log means)")
    return text


def table(records: list[Record], baseline: str | None = None, keep_flagged: bool = False) -> str:
    """The terminal table serve-bench prints after all backends ran."""
    tables = comparison(records, baseline, keep_flagged)
    if not tables:
        return "(no serve results to compare)"
    header = ["backend", "shape", *(c.label for c in COLUMNS), "ok/failed"]
    out = []
    for t in tables:
        lines = [header]
        for row in t.rows:
            if row.failure:
                lines.append([row.backend, t.shape.label, f"FAILED: {row.failure}"])
            else:
                lines.append([row.backend, t.shape.label, *(c.text() for c in row.cells), row.counts])
        full = [line for line in lines if len(line) == len(header)]  # a failed row's reason must not widen a column
        widths = [max(len(line[i]) for line in full) for i in range(len(header))]
        out.append(f"== {t.shape.label}: {legend(t.reference, [t])} ==")
        if t.note:
            out.append(f"   note: {t.note}")
        for line in lines:
            parts = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(line)]
            if len(line) < len(header):  # a failed row: its reason runs on from the shape column
                parts = [line[0].ljust(widths[0]), line[1].ljust(widths[1]), line[2]]
            out.append("  ".join(parts).rstrip())
        for flag in flag_lines(t):
            out.append(f"   flagged: {flag}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def flag_lines(t: Table) -> list[str]:
    """'fa3 run 2: jit: CuTeDSL JIT compilation during inference (21:40:03)' per flag of the table's passes."""
    out = []
    for row in t.rows:
        for r in row.group.flagged:
            for f in observe.flags(r):
                out.append(f"{row.backend} run {int(r.scenario.get('repeat') or 0) + 1}: {f.get('kind')}: "
                           f"{one_line(f.get('evidence'), 200)}")
    return out


def markdown(records: list[Record], baseline: str | None = None, keep_flagged: bool = False) -> str:
    """The same tables as markdown (summary.md, CI job summaries)."""
    parts = []
    tables = comparison(records, baseline, keep_flagged)
    for t in tables:
        text = legend(t.reference, [t])
        parts.append(f"### {t.shape.label}\n\n{text[0].upper()}{text[1:]}.\n")
        if t.note:
            parts.append(f"> Note: {t.note}\n")
        head = ["backend", *(c.label for c in COLUMNS), "completed/failed"]
        rows = []
        for row in t.rows:
            if row.failure:
                cells = [f"**FAILED**: {row.failure}", *[""] * (len(COLUMNS) - 1), row.counts]
            else:
                cells = [md_cell(c) for c in row.cells] + [row.counts]
            rows.append([row.backend, *cells])
        parts.append("\n".join(textfmt.md_table(head, rows)) + "\n")
        flags = flag_lines(t)
        if flags:
            kept = "kept in the statistics (--keep-flagged)" if keep_flagged else "left out of means, CIs and ratios"
            parts.append(f"Flagged passes ({len(flags)}, {kept}):\n\n" + "\n".join(f"- {textfmt.md_escape(f)}" for f in flags) + "\n")
        cross = server_cross_check(t)
        if cross:
            parts.append(cross)
        gc = engine_gc(t)
        if gc:
            parts.append(gc)
    return "\n".join(parts) if parts else "(no serve results to compare)\n"


def md_cell(c: Cell) -> str:
    """'14028 ±2.0% (≈0.95x)' or '800 (0.80x)'."""
    text = c.text()
    if c.ratio is None:
        return text
    value, _, ratio = text.rpartition(" ")
    return f"{value} ({ratio})"


SERVER_PAIRS = (("mean_ttft_ms", "server_mean_ttft_ms", "TTFT"), ("mean_tpot_ms", "server_mean_tpot_ms", "TPOT"),
                ("mean_e2el_ms", "server_mean_e2el_ms", "E2EL"))


def server_cross_check(t: Table) -> str:
    """Client-side beside server-side (/metrics) means, per backend; '' when no server reported."""
    rows = []
    for row in t.rows:
        if not any(row.group.values(skey) for _, skey, _ in SERVER_PAIRS):
            continue
        cells = []
        for ckey, skey, _ in SERVER_PAIRS:
            c, sv = row.group.spread(ckey).mean, row.group.spread(skey).mean
            cells += [textfmt.by_magnitude(c), textfmt.by_magnitude(sv),
                      textfmt.MISSING if math.isnan(c) or math.isnan(sv) else textfmt.number(c - sv, "+.1f")]
        rows.append([row.backend, *cells])
    if not rows:
        return ""
    head = ["backend"] + [f"{name} {side}" for _, _, name in SERVER_PAIRS for side in ("client", "server", "diff")]
    return ("Client vs server (vLLM /metrics, mean over the passes used, ms):\n\n"
            + "\n".join(textfmt.md_table(head, rows)) + "\n")


def engine_gc(t: Table) -> str:
    """Per pass, the engine core's garbage collections beside its output tok/s, so a slow pass
    shows whether collections came with it; '' unless the servers logged them (VLLM_GC_DEBUG=1).
    Share = collection time / the pass's benchmark duration."""
    rows = []
    for row in t.rows:
        g = row.group
        count, ms, longest = g.values("server_gc_count"), g.values("server_gc_ms"), g.values("server_gc_max_ms")
        tok_s, duration = g.values("output_throughput"), g.values("duration")
        for rep in sorted(count):
            share = ms.get(rep, math.nan) / (duration.get(rep, math.nan) * 1e3) * 100
            rows.append([row.backend, str(rep), textfmt.by_magnitude(tok_s.get(rep, math.nan)),
                         textfmt.number(count[rep], ".0f"), textfmt.by_magnitude(ms.get(rep, math.nan)),
                         textfmt.by_magnitude(longest.get(rep, math.nan)),
                         textfmt.MISSING if math.isnan(share) else textfmt.number(share, ".2f")])
    if not rows:
        return ""
    head = ["backend", "pass", "out tok/s", "collections", "ms", "longest ms", "% of the pass"]
    return ("Engine core's Python garbage collections per pass (VLLM_GC_DEBUG=1 in the server's log):\n\n"
            + "\n".join(textfmt.md_table(head, rows)) + "\n")


def warmup_lines(records: list[Record]) -> list[str]:
    """How many unmeasured passes each (backend, shape) took to agree, and whether the cap was hit."""
    seen, out = set(), []
    for r in records:
        w = r.samples.get("warmup_passes")
        key = (r.backend, Shape.of(r))
        if not w or key in seen:
            continue
        seen.add(key)
        tps = ", ".join(f"{x:.0f}" for x in w.get("output_throughputs") or [])
        if w.get("steady"):
            how = f"steady after {w['passes']} warm-up passes"
        else:
            how = f"**not steady**: the cap of {w.get('max_passes')} warm-up passes was hit"
        out.append(f"- {r.backend} {key[1].label}: {how} (output tok/s {tps}; agreement within "
                   f"{100 * float(w.get('tolerance') or 0):.0f}%)")
    return ["## Warm-up", "", *out, ""] if out else []


def precision_lines(records: list[Record], keep_flagged: bool = False) -> list[str]:
    """With --target-ci: per (backend, shape), how many passes it took and whether the 95% CI of
    output tok/s came within the target."""
    out = []
    for g in aggregate.groups(records, keep_flagged):
        target = next((r.scenario.get("target_ci") for r in g.passes if r.scenario.get("target_ci")), None)
        if target is None:
            continue
        s = g.spread("output_throughput")
        cap = g.passes[-1].scenario.get("max_repeats")
        if s.within(float(target)):
            verdict = "met"
        elif cap and len(g.passes) < int(cap):  # stopped early (a time limit, Ctrl-C), not by the cap
            verdict = f"**not met** (stopped after {len(g.passes)} of at most {cap} passes)"
        else:
            verdict = f"**not met** (cap {cap} passes)"
        ci = (f"{textfmt.plus_minus_pct(s.half_width_pct)} (95% CI over {s.n})" if s.n > 1
              else f"no CI ({s.n} pass{'' if s.n == 1 else 'es'} counted; a CI needs 2)")
        out.append(f"- {g.backend} {Shape.of(g.passes[0]).label}: {len(g.passes)} measured passes, output tok/s "
                   f"{ci}; target ±{100 * float(target):g}%: {verdict}")
    return ["## Repeats", "", *out, ""] if out else []


PROFILE_KERNELS = 12  # kernels shown by name per shape; the rest are summed in one row


def profile_lines(records: list[Record]) -> list[str]:
    """Per shape, GPU time per engine step of each kernel under each backend, from the profiled
    pass (serve-bench --profile-steps): where a TPOT gap is, kernel by kernel."""
    newest: dict[tuple, Record] = {}
    for r in records:
        if r.kind == "profile":
            newest[(Shape.of(r), r.backend)] = r  # records come in run order: the last one is the newest
    if not newest:
        return []
    out = ["## Kernel time per engine step (vLLM's torch profiler)", "",
           "One more pass per backend after the measured ones; vLLM recorded engine steps from the "
           f"{next(iter(newest.values())).scenario.get('profile_delay_steps')}th after the pass began. "
           "GPU time per step in µs, summed per kernel name over the recorded steps (CUDA-graph kernels included).", ""]
    def us(v):
        return textfmt.MISSING if v is None else f"{v:.1f}"

    def counted(r):
        decode = r.metrics.get("decode_steps")
        return f"{r.metrics.get('steps')} ({'?' if decode is None or decode < 0 else decode})"

    for shape in dict.fromkeys(k[0] for k in newest):
        profs = [r for (sh, _), r in newest.items() if sh == shape]
        per = [{k["name"]: k["us_per_step"] for k in r.samples.get("kernels") or []} for r in profs]
        names = sorted({n for p in per for n in p}, key=lambda n: -max(p.get(n, 0.0) for p in per))
        shown = names[:PROFILE_KERNELS]
        rows = [["steps recorded (decode only)", *(counted(r) for r in profs)],
                ["all GPU kernels", *(us(r.metrics.get("kernel_us_per_step")) for r in profs)],
                ["a step's span on the GPU", *(us(r.metrics.get("gpu_step_us")) for r in profs)],
                *([textfmt.md_escape(one_line(n, 90)), *(us(p.get(n)) for p in per)] for n in shown)]
        if len(names) > len(shown):
            rows.append([f"{len(names) - len(shown)} other kernels",
                         *(us(sum(v for n, v in p.items() if n not in shown)) for p in per)])
        out += [f"### {shape.label}", "", *textfmt.md_table(["", *(r.backend for r in profs)], rows), ""]
    return out


def layout_lines(records: list[Record]) -> list[str]:
    """How the servers ran: one line, or one per wave of servers started together where the
    waves were laid out differently (a fresh machine's first wave starts its first server alone)."""
    waves: dict = {}  # wave -> (layout, backends in order)
    for r in records:
        if r.scenario.get("layout"):
            layout, names = waves.setdefault(r.scenario.get("wave"), (str(r.scenario["layout"]), []))
            if r.backend not in names:
                names.append(r.backend)
    if len({layout for layout, _ in waves.values()}) <= 1:
        return [f"Layout: {layout}", ""] if waves else []
    order = sorted(waves, key=lambda w: (w is None, w if w is not None else 0))
    return [*(f"Layout, {'wave ' + str(w + 1) if w is not None else 'no wave'} ({', '.join(waves[w][1])}): "
              f"{waves[w][0]}" for w in order), ""]


def provenance_line(records: list[Record]) -> str:
    """GPU, driver, vLLM version, attnbench git sha and time; several distinct values are all listed."""
    def values(get) -> str:
        seen = []
        for rec in records:
            v = get(rec.provenance)
            if v not in seen:
                seen.append(v)
        return ", ".join(str(v) for v in seen if v is not None) or "unknown"

    if records and all(r.provenance.get("server_description") for r in records):
        # an endpoint run: this machine ran only the client, so describe the server as it described itself
        d = lambda key: values(lambda p: p["server_description"].get(key))  # noqa: E731
        return (f"Endpoint: {d('endpoint')} · server {d('server')} (version {d('version')}) · model {d('model')}"
                f" (max length {d('max_model_len')}) · /metrics {d('metrics')} · GPU {d('gpu')}"
                f" · client: attnbench git {values(lambda p: p.get('git_sha'))} · {values(lambda p: p.get('utc_time'))}")
    return (f"GPU: {values(lambda p: p.get('gpu_name'))} (driver {values(lambda p: p.get('gpu_driver'))})"
            f" · vLLM {values(lambda p: (p.get('packages') or {}).get('vllm'))}"
            f" · torch {values(lambda p: (p.get('packages') or {}).get('torch'))}"
            f" · attnbench git {values(lambda p: p.get('git_sha'))}"
            f" · {values(lambda p: p.get('utc_time'))}")


def write_summary(result_dir: str | os.PathLike, records: list[Record], baseline: str | None = None,
                  command: str | None = None, keep_flagged: bool = False) -> Path:
    """RESULT_DIR/summary.md: the comparison tables, the exact command and where the numbers came from."""
    serve = [r for r in records if r.kind == "serve"]
    command = command or next((r.provenance.get("command") for r in serve if r.provenance.get("command")), None)
    models = sorted({str(r.scenario.get("served_model") or r.scenario.get("model")) for r in serve
                     if r.scenario.get("served_model") or r.scenario.get("model")})
    lines = ["# attnbench serve-bench comparison", ""]
    if models:
        lines += [f"Model: {', '.join(models)}", ""]
    lines += [provenance_line(serve), "", "Command:", "", "```", command or "(unknown)", "```", ""]
    lines += layout_lines(serve)
    lines.append(markdown(serve, baseline, keep_flagged))
    lines += warmup_lines(serve)
    lines += precision_lines(serve, keep_flagged)
    lines += profile_lines(records)
    failed = [r for r in serve if r.status != "ok" or r.error]  # failed, or lost some requests
    if failed:
        lines += ["## Failed runs", ""]
        lines += [f"- {r.backend} {Shape.of(r).label}: {textfmt.md_escape(one_line(r.error, 400))}" for r in failed]
        lines.append("")
    figures = plots.figure_names(serve)
    if figures:  # drawn right after this file is written, into the same folder
        lines += ["## Plots", ""] + [f"![{caption}]({name})\n" for name, caption in figures]
    return atomic.write_text(Path(result_dir) / "summary.md", "\n".join(lines).rstrip() + "\n")
