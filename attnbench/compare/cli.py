"""`attnbench compare BASELINE CURRENT`: the CI regression gate. Exit 0 no regression, 1 regression,
2 unusable input (missing files, schema mismatch, nothing matched)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from attnbench.errors import UserError


def parse_metric_thresholds(items: list[str]) -> dict[str, float]:
    """['p99_*=10', 'output_throughput=3'] -> {glob: percent}."""
    out = {}
    for item in items:
        name, sep, pct = item.partition("=")
        try:
            value = float(pct)
        except ValueError:
            value = -1.0
        if not sep or not name or value < 0:
            raise UserError(f"--metric-threshold takes NAME=PERCENT, e.g. p99_ttft_ms=10 (got {item!r})")
        out[name] = value
    return out


def compare(
    baseline: Path = typer.Argument(..., help="Baseline record file or result directory (e.g. results/h100-seed)."),
    current: Path = typer.Argument(..., help="Current record file or result directory."),
    threshold: float = typer.Option(5.0, help="Percent change a metric may move in the bad direction before it can be a regression."),
    metric_threshold: List[str] = typer.Option([], help="Per-metric threshold, repeatable: NAME=PCT (NAME may be a glob: 'p99_*=10')."),
    metrics: Optional[str] = typer.Option(None, help="Comma-separated metric names or globs to compare (default: all)."),
    markdown: Optional[Path] = typer.Option(None, help="Also write the table as markdown here (a CI job summary)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write every row as JSON here."),
    all_rows: bool = typer.Option(False, "--all", help="Show every metric, not only changes and headline metrics."),
) -> None:
    """Compare current results with a baseline; fail (exit 1) on a regression beyond threshold and noise."""
    from dataclasses import asdict

    from attnbench import atomic
    from attnbench.compare import judge, render
    from attnbench.records import record

    try:
        if threshold < 0:
            raise UserError(f"--threshold must be >= 0 percent (got {threshold})")
        settings = judge.Settings(threshold, parse_metric_thresholds(metric_threshold),
                                  [m.strip() for m in (metrics or "").split(",") if m.strip()])
        base, cur = record.load(baseline), record.load(current)
        if not base:
            raise UserError(f"{baseline}: no attnbench records found")
        if not cur:
            raise UserError(f"{current}: no attnbench records found")
        cmp = judge.compare(base, cur, settings)
        if cmp.matched == 0:
            raise UserError(f"nothing matched: no (kind, backend, settings) of {current} is in {baseline}; "
                            "compare results of the same scenario")
    except UserError as e:
        print(f"attnbench: error: {e}", file=sys.stderr)
        _step_summary(f"## attnbench compare\n\n:warning: **unusable input**: {e}\n")
        raise typer.Exit(2) from None
    print(render.table(cmp, all_rows))
    md = render.markdown(cmp, all_rows)
    if markdown:
        atomic.write_text(markdown, md)
    if json_out:
        atomic.write_json(json_out, {"summary": render.summary(cmp), "matched": cmp.matched, "notes": cmp.notes,
                                     "exit_code": cmp.exit_code, "rows": [asdict(r) for r in cmp.rows]})
    _step_summary(md)
    raise typer.Exit(cmp.exit_code)


def _step_summary(md: str) -> None:
    """Append to the GitHub Actions job summary when running there (other steps write to it too)."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a") as f:
            f.write(md + "\n")
