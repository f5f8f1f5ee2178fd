"""A comparison as a terminal table and as markdown for a CI job summary. By default only the rows
worth reading: every verdict other than ok/unjudged/n-a, plus each kind's headline metrics.

table(), markdown(), write_summary(), write_plots(): the presentation shape every area shares (a
comparison has only the first two: its markdown goes where --markdown and the CI job summary say)."""

from __future__ import annotations

from attnbench import textfmt
from attnbench.compare.judge import (BAD, FAILED, IMPROVEMENT, MISSING, NA, NEW, NOISE, OK, REGRESSION, UNJUDGED,
                                     Comparison, Row)
from attnbench.records import kinds

MARK = {OK: "ok", REGRESSION: "REGRESSION", IMPROVEMENT: "improvement", NOISE: "within noise",
        UNJUDGED: "unjudged", FAILED: "FAILED", MISSING: "missing", NEW: "new", NA: "n/a"}


def shown(cmp: Comparison, everything: bool = False) -> list[Row]:
    def keep(r: Row) -> bool:
        if everything or r.verdict not in (OK, UNJUDGED, NA):
            return True
        declared = kinds.get(r.kind)
        head = declared.headline if declared else None
        return head is None or r.metric in head
    return sorted((r for r in cmp.rows if keep(r)), key=lambda r: (r.verdict not in BAD, r.kind, r.label, r.backend, r.metric))


def _cells(r: Row) -> list[str]:
    return [r.kind, r.backend, r.label, r.metric, textfmt.grouped(r.baseline), textfmt.grouped(r.current),
            textfmt.signed_pct(r.change_pct), MARK.get(r.verdict, r.verdict), r.rule]


HEADER = ["kind", "backend", "settings", "metric", "baseline", "current", "change", "verdict", "rule"]


def summary(cmp: Comparison) -> str:
    bad = cmp.regressions
    counts = {v: sum(r.verdict == v for r in cmp.rows) for v in (IMPROVEMENT, NOISE, MISSING, NEW)}
    head = f"{len(bad)} regression(s)" if bad else "no regression"
    extra = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    return f"{head} over {cmp.matched} matched record group(s)" + (f"; {extra}" if extra else "")


def table(cmp: Comparison, everything: bool = False) -> str:
    rows = [HEADER] + [_cells(r) for r in shown(cmp, everything)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 4)
    return "\n".join([*lines, "", *[f"note: {n}" for n in cmp.notes], summary(cmp)])


def markdown(cmp: Comparison, everything: bool = False, title: str = "attnbench compare") -> str:
    icon = ":x:" if cmp.regressions else ":white_check_mark:"
    out = [f"## {title}", "", f"{icon} **{summary(cmp)}**", ""]
    out += [f"> note: {n}" for n in cmp.notes] + ([""] if cmp.notes else [])
    rows = shown(cmp, everything)
    out += _md_table(rows)
    if len(rows) < len(cmp.rows):  # the rest, folded: a CI summary stays readable
        out += ["", f"<details><summary>all {len(cmp.rows)} rows</summary>", "", *_md_table(shown(cmp, True)),
                "", "</details>"]
    return "\n".join(out) + "\n"


def _md_table(rows: list[Row]) -> list[str]:
    """The rows as markdown, a bad verdict in bold."""
    def cells(r: Row) -> list[str]:
        out = _cells(r)
        if r.verdict in BAD:
            out[7] = f"**{out[7]}**"
        return out
    return textfmt.md_table(HEADER, map(cells, rows))
