"""Numbers and markdown tables for the text presentations (terminal tables, summary.md, CI job
summaries): one home per number style, so two tables that show a value alike show it alike, and
one markdown-table builder. A bottom layer: imports nothing of attnbench.

Missing values: None is MISSING ('-') in every style. NaN is missing where the style says so (a
mean over no pass); elsewhere it prints as Python writes it ('nan'), as those tables always did.
"""

from __future__ import annotations

import math
from typing import Iterable

MISSING = "-"


def missing(v: object) -> bool:
    """None, or a float NaN (stats' mean or spread over nothing)."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def number(v: float | None, spec: str) -> str:
    """`v` in a format spec ('.4f', '.2e', '+.2f', 'd' for a count stored as a float); MISSING for
    None. Columns of one known scale: parity's metrics (each its own precision), explain's ms and
    gaps, serve-bench's client-server differences, gpqa's tokens and paired differences."""
    if v is None:
        return MISSING
    return format(int(v), spec) if spec == "d" else format(v, spec)


def points(v: float | None) -> str:
    """Percentage points with 1 decimal ('61.3'); MISSING for None and NaN (the spread over repeats
    of a single repeat). gpqa's scores and their standard errors."""
    return MISSING if missing(v) else f"{v:.1f}"


def by_magnitude(v: float | None) -> str:
    """0, 1 or 2 decimals as |v| is >= 100, >= 10 or below ('14732', '12.3', '0.42'); an int
    whole; MISSING for None and NaN. serve-bench's cells (tok/s and ms, where a fraction of a
    token or ms above 100 is noise) and the report's values of 1 and above."""
    if missing(v):
        return MISSING
    if isinstance(v, int) or abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def compact(v: float | None) -> str:
    """0 or 1 decimals as |v| is >= 100 or >= 1, 3 significant digits below ('2394', '12.3',
    '0.00412'); MISSING for None. microbench's µs and GB/s or TFLOP/s, which span 0.001 to 10^4."""
    if v is None:
        return MISSING
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.3g}"


def significant(v: float | None, digits: int = 4) -> str:
    """`digits` significant digits ('0.01235', '1.235e+04'); MISSING for None. gpqa's metrics page,
    parity's null limits and the report's values below 1, whose scale is not known in advance."""
    return MISSING if v is None else f"{v:.{digits}g}"


def grouped(v: float | None) -> str:
    """4 significant digits, whole numbers with thousands separators from 1000 ('0.4123',
    '123.5', '14,732'), 3 significant digits in exponent form outside [0.01, 10^6); MISSING for
    None. compare's baseline and current, one column mixing every metric of every kind."""
    if v is None:
        return MISSING
    if v == 0 or 0.01 <= abs(v) < 1e6:
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:.3g}"


def signed_pct(v: float | None) -> str:
    """A change in percent with its sign and 1 decimal ('+3.2%', '-0.5%', '+inf%' for a change
    from 0); MISSING for None. compare's change column, the report's latest-vs-previous and
    microbench's difference from the reference figures."""
    return MISSING if v is None else f"{v:+.1f}%"


def share(v: float | None) -> str:
    """A fraction as a whole percentage ('37%'); MISSING for None. explain's attention share and
    coverage."""
    return MISSING if v is None else f"{100 * v:.0f}%"


def plus_minus_pct(v: float) -> str:
    """A 95% CI half-width in percent of the mean ('±1.2%'): serve-bench's cells and repeats
    section, explain's TPOT."""
    return f"±{v:.1f}%"


def md_escape(text: object) -> str:
    """Markdown text with each '|' escaped, so it cannot end a table cell."""
    return str(text).replace("|", "\\|")


def md_table(header: Iterable[object], rows: Iterable[Iterable[object]], align: str | None = None) -> list[str]:
    """A markdown table as lines: '| a | b |', the separator '|---|---:|', a line per row. `align`
    has a letter per column, 'l' (markdown's default) or 'r' (numbers); default all 'l'. A '|'
    inside a cell is escaped, so a name holding one cannot split its row."""
    header = [str(h) for h in header]
    align = align or "l" * len(header)
    if len(align) != len(header) or set(align) - {"l", "r"}:
        raise ValueError(f"align {align!r} must have one 'l' or 'r' per column ({len(header)})")
    row = lambda cells: "| " + " | ".join(map(md_escape, cells)) + " |"  # noqa: E731
    return [row(header), "|" + "".join("---:|" if a == "r" else "---|" for a in align), *map(row, rows)]
