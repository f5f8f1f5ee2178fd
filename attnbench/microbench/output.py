"""What a microbench run leaves behind: JSON records (one file per backend holding a list,
rewritten atomically after every result so a cut-short run keeps its numbers), summary.md
(rewritten after every result too), a terminal table and plots (refreshed now and then during a
run, at its end, and by `attnbench microbench summarize DIR`).

table(), markdown(), write_summary(), write_plots(): the presentation shape every area shares."""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from pathlib import Path

from attnbench import atomic, textfmt
from attnbench.records.record import Record

RATE = {"decode": ("gbps", "GB/s"), "prefill": ("tflops", "TFLOP/s")}

# Reference figures summary.md sets each run beside, with their provenance; data, so it lives
# with the results (a checkout has it; an installed package without it simply shows no section).
REFERENCE_FILE = Path(__file__).resolve().parents[2] / "results" / "h100" / "microbench" / "reference.json"


def load_reference(path: str | Path | None = None) -> dict:
    """{(op, label): (metric, {backend: value})} and the provenance, from a reference file;
    empty when the file is absent or unreadable (a summary without a reference section)."""
    path = path or REFERENCE_FILE
    try:
        doc = json.loads(Path(path).read_text())
        figures = {(f["op"], f["label"]): (f["metric"], dict(f["values"])) for f in doc["figures"]}
        return {"figures": figures, "provenance": doc.get("provenance", {}), "path": str(path)}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class ResultWriter:
    """Records in one directory, one JSON file per op and backend ("decode-fa3.json"). Records
    already there (an earlier invocation into the same directory, e.g. the fa4-splits1 run) are
    kept; a new result replaces an old one for the same backend, shape and L2 setting (except that
    an "interrupted" record never replaces a measured one). Thread-safe: a signal watchdog may
    write the summary while the run adds records."""

    def __init__(self, result_dir: str | Path, op: str = "decode"):
        from attnbench.records.record import load

        self.dir, self.op = Path(result_dir), op
        self.lock = threading.RLock()
        self.records: dict[tuple[str, str], list[Record]] = defaultdict(list)
        if self.dir.is_dir():
            for r in load(self.dir, on_bad="raise"):  # a record we cannot read would be overwritten
                if r.kind == "microbench":
                    self.records[(r.scenario.get("op", op), r.backend)].append(r)

    def add(self, rec: Record) -> None:
        key = (rec.scenario.get("op", self.op), rec.backend)
        with self.lock:
            old = [r for r in self.records[key] if _key(r) == _key(rec)]
            if rec.samples.get("verdict") == "interrupted" and any(measured(r) for r in old):
                return  # a step cut short on a shape an earlier step measured keeps that measurement
            self.records[key] = [r for r in self.records[key] if _key(r) != _key(rec)] + [rec]
            atomic.write_json(self.dir / f"{key[0]}-{_slug(rec.backend)}.json", [r.to_json() for r in self.records[key]])

    def all(self, op: str | None = None) -> list[Record]:
        with self.lock:
            return [r for (o, _), recs in self.records.items() if op in (None, o) for r in recs]

    def measured(self, backend: str, label: str, cold_l2: bool = False, op: str | None = None) -> bool:
        """Is there a measurement (a time, right or wrong) for this backend and shape already?"""
        with self.lock:
            return any(measured(r) and _key(r) == (label, cold_l2) for r in self.records.get((op or self.op, backend), ()))


def measured(r: Record) -> bool:
    return r.metrics.get("us") is not None and r.samples.get("verdict") in ("ok", "FAIL")


def _key(r: Record) -> tuple:
    return r.scenario.get("label"), r.scenario.get("cold_l2")


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)


def _backends(records: list[Record]) -> list[str]:
    return list(dict.fromkeys(r.backend for r in records))


def _row(r: Record) -> str:
    return r.scenario.get("label", "?") + (" cold-L2" if r.scenario.get("cold_l2") else "")


def _shapes(records: list[Record]) -> list[str]:
    return list(dict.fromkeys(map(_row, records)))


def cell(rec: Record | None, op: str) -> str:
    """'12.3 µs 2394' (µs and the op's headline rate), with FAIL / skip / error instead of hiding it."""
    if rec is None:
        return "-"
    verdict = rec.samples.get("verdict")
    if verdict in ("skipped", "error", "interrupted") or rec.metrics.get("us") is None:
        return {"skipped": "skip", "interrupted": "cut"}.get(verdict, "error")
    key = RATE[op][0]
    text = f"{textfmt.compact(rec.metrics['us'])} µs {textfmt.compact(rec.metrics.get(key) or 0)}"
    return text + (" FAIL" if verdict == "FAIL" else "")


def table(records: list[Record], op: str) -> str:
    """Rows: shapes; columns: backends; cells: µs and GB/s (decode) or TFLOP/s (prefill)."""
    backends, shapes = _backends(records), _shapes(records)
    by = {(_row(r), r.backend): r for r in records}
    header = ["shape", *backends]
    rows = [[s, *(cell(by.get((s, b)), op) for b in backends)] for s in shapes]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda row: "  ".join(str(x).ljust(w) for x, w in zip(row, widths))  # noqa: E731
    lines = [f"{op}: µs per call and {RATE[op][1]} ({'K+V+q+out bytes' if op == 'decode' else 'unmasked FLOPs'}); FAIL = wrong output",
             fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)]
    return "\n".join(lines)


def _num(x, digits=None) -> str:
    """A summary.md value: blank when missing (an empty cell; the roofline line shows '?' instead),
    a float in `digits` decimals or compact, anything else as it is."""
    if x is None:
        return ""
    if isinstance(x, float):
        return textfmt.number(x, f".{digits}f") if digits is not None else textfmt.compact(x)
    return str(x)


RESULTS_HEADER = ["shape", "backend", "µs", "TFLOP/s", "GB/s", "% meas. BW", "% peak BW", "% meas. FLOP/s",
                  "% peak FLOP/s", "rel_err", "verdict"]


def markdown(records: list[Record], op: str, roof: dict | None, skipped: list[str] = ()) -> str:
    lines = [f"# attnbench microbench {op}", ""]
    if roof:
        lines += ["## Roofline", "",
                  f"{roof.get('gpu_name')}: measured copy {_num(roof.get('measured_gbps'), 0)} GB/s, "
                  f"bf16 matmul {_num(roof.get('measured_tflops'), 0)} TFLOP/s; datasheet "
                  f"{_num(roof.get('datasheet_gbps'), 0) or '?'} GB/s, {_num(roof.get('datasheet_tflops'), 0) or '?'} TFLOP/s.", ""]
    rows = []
    for r in records:
        m = r.metrics
        rows.append([
            _row(r), r.backend, _num(m.get("us")), _num(m.get("tflops")), _num(m.get("gbps"), 0),
            _num(m.get("pct_measured_bw")), _num(m.get("pct_peak_bw")), _num(m.get("pct_measured_flops")),
            _num(m.get("pct_peak_flops")), "" if m.get("rel_err") is None else textfmt.number(m["rel_err"], ".2e"),
            r.samples.get("verdict", "?")])
    lines += ["## Results", "", "```", table(records, op), "```", "",
              *textfmt.md_table(RESULTS_HEADER, rows, align="llrrrrrrrrl")]
    lines += _vs_reference(records, op, roof)
    lines += _ours_against_the_best_other(records, op)
    bad = [r for r in records if r.status != "ok"]
    if bad:
        lines += ["", "## Not ok", ""] + [f"- {r.backend} {r.scenario.get('label')}: {r.error}" for r in bad]
    if skipped:
        lines += ["", "## Skipped shapes (would not fit)", ""] + [f"- {s}" for s in skipped]
    notes = {r.samples["note"] for r in records if r.samples.get("note")}
    if notes:
        lines += ["", "## Timing notes", ""] + [f"- {n}" for n in sorted(notes)]
    return "\n".join(lines) + "\n"


def _vs_reference(records: list[Record], op: str, roof: dict | None, reference: dict | None = None) -> list[str]:
    """The reference figures next to ours for the shapes they cover (differences over 5% need a note)."""
    reference = load_reference() if reference is None else reference
    figures = reference.get("figures", {})
    rows = []
    for r in records:
        ref = figures.get((op, r.scenario.get("label")))
        if not ref or r.backend not in ref[1] or r.scenario.get("cold_l2") or r.metrics.get(ref[0]) is None:
            continue
        key, expect = ref[0], ref[1][r.backend]
        diff = 100.0 * (r.metrics[key] / expect - 1)
        flag = " **>5%**" if abs(diff) > 5 else ""
        rows.append([r.scenario["label"], r.backend, key, expect, textfmt.number(r.metrics[key], ".0f"),
                     textfmt.signed_pct(diff) + flag])
    if not rows:
        return []
    gpu = (roof or {}).get("gpu_name") or "this GPU"
    prov = reference.get("provenance", {})
    where = f"{prov.get('gpu', '?')}; {prov.get('setting', '')}".strip("; ")
    return ["", f"## Against the reference figures (measured here on {gpu})", "",
            f"Reference: {where} ({reference.get('path', '?')}).", "",
            *textfmt.md_table(["shape", "backend", "metric", "reference", "here", "difference"], rows, align="lllrrr")]


def plots(records: list[Record], op: str, out_dir: str | Path) -> list[Path]:
    """decode: GB/s vs context per backend, one panel per batch; prefill: TFLOP/s vs seqlen.
    One figure per head layout (and, for prefill, per cached-context length)."""
    from attnbench import figures

    plt = figures.pyplot()

    key, unit = RATE[op]
    xkey = "context" if op == "decode" else "seqlen"
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        if r.metrics.get(key) is None or r.scenario.get("ragged") or r.scenario.get("q_len", 1) != 1:
            continue
        s = r.scenario
        extra = f"-ctx{max(s.get('context_lens') or [0])}" if op == "prefill" and s.get("paged") else ""
        groups[(f"H{s['q_heads']}-{s['kv_heads']}-{s['head_dim']}-{s['dtype']}{extra}",)].append(r)
    paths = []
    for (name,), recs in groups.items():
        batches = sorted({r.scenario["batch"] for r in recs})
        fig, axes = plt.subplots(1, len(batches), figsize=(4 * len(batches), 3.4), squeeze=False, sharey=True)
        for ax, b in zip(axes[0], batches):
            for backend in _backends(recs):
                pts = sorted((r.scenario[xkey], r.metrics[key], r.samples.get("verdict") == "FAIL")
                             for r in recs if r.backend == backend and r.scenario["batch"] == b)
                if not pts:
                    continue
                line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=backend)
                fails = [p for p in pts if p[2]]
                if fails:
                    ax.plot([p[0] for p in fails], [p[1] for p in fails], "x", color="red", markersize=10)
            ax.set_xscale("log", base=2)
            ax.set_title(f"batch {b}")
            ax.set_xlabel(xkey)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel(unit)
        axes[0][-1].legend(fontsize=7)
        fig.suptitle(f"{op} {name} (red x = FAIL)")
        fig.tight_layout()
        paths.append(figures.save(fig, Path(out_dir) / f"{op}-{_slug(name)}.png", dpi=110))
    return paths


def write_summary(writer: ResultWriter, roof: dict | None, skipped: list[str] = ()) -> Path | None:
    """summary.md (a part per op found in the directory) for everything the writer holds; cheap
    enough to call after every record."""
    parts = []
    for op in ("decode", "prefill"):
        records = writer.all(op)
        if records:
            parts.append(markdown(records, op, roof or roof_of(records), skipped if op == writer.op else ()))
    return atomic.write_text(writer.dir / "summary.md", "\n".join(parts)) if parts else None


def write_plots(writer: ResultWriter) -> list[Path]:
    paths = []
    for op in ("decode", "prefill"):
        records = writer.all(op)
        if records:
            paths += plots(records, op, writer.dir / "plots")
    return paths


def roof_of(records: list[Record]) -> dict | None:
    """The roofline the newest record was measured against (summarize rebuilds from files alone)."""
    for r in reversed(records):
        roof = (r.provenance or {}).get("roofline")
        if roof:
            return roof
    return None


def _ours_against_the_best_other(records: list[Record], op: str) -> list[str]:
    """Per shape, our kernel's rate beside the best other backend's in the same run: the question
    its work answers. Only correct results count (a FAIL is no speed)."""
    from attnbench.backends import registry

    key, unit = RATE[op]
    ok = [r for r in records if r.samples.get("verdict") == "ok" and r.metrics.get(key) and not r.scenario.get("cold_l2")]
    ours = {r.backend for r in ok if r.backend in registry.BACKENDS and registry.BACKENDS[r.backend].ours}
    rows, ahead = [], 0
    for name in sorted(ours):
        for shape in _shapes(ok):
            here = [r for r in ok if _row(r) == shape]
            mine = next((r for r in here if r.backend == name), None)
            others = [r for r in here if r.backend not in ours]
            if mine is None or not others:
                continue
            best = max(others, key=lambda r: r.metrics[key])
            ratio = mine.metrics[key] / best.metrics[key]
            ahead += ratio >= 1
            rows.append([shape, name, textfmt.number(mine.metrics[key], ".0f"), best.backend,
                         textfmt.number(best.metrics[key], ".0f"), textfmt.number(ratio, ".3f")])
    if not rows:
        return []
    return ["", "## Ours against the best other backend", "",
            f"{unit} of each shape; at or above the best other backend on {ahead} of {len(rows)} shapes "
            "(one median each, so a ratio within ~1% of 1 is a tie).", "",
            *textfmt.md_table(["shape", "ours", unit, "best other", unit, "ours / best"], rows, align="llrlrr")]

