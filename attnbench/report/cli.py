"""`attnbench report RESULTS... [--out report.html]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer


def report(
    results: List[Path] = typer.Argument(..., help="Result files or directories (e.g. results/h100 out)."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file; its PNGs go to <name>_plots/ beside it."),
    title: str = typer.Option("attnbench report", help="Page title."),
) -> None:
    """Build a static HTML dashboard (plots embedded) from result records: history, comparisons, rooflines, CIs."""
    from attnbench.report.build import write_report

    path = write_report(results, out, title)
    print(f"attnbench: report written to {path}", file=sys.stderr)
