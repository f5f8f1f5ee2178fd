"""Assemble the report: read records, draw every section's figures into <out>_plots/, write one HTML file."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from attnbench import atomic, provenance
from attnbench.errors import UserError
from attnbench.report import charts, page, sections, sources


def write_report(results: list[str | os.PathLike], out: str | os.PathLike = "report.html",
                 title: str = "attnbench report") -> Path:
    """RESULTS (files or directories of records) -> OUT (self-contained HTML) and OUT's PNGs beside it."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise UserError(f"--out {out}: the report is an HTML file; name it like report.html")
    paths = [Path(p) for p in results]
    if not paths:
        raise UserError("no results given; pass result files or directories, e.g. attnbench report results/h100")
    entries, raws = sources.read(paths)
    if not entries and not raws:
        raise UserError(f"no attnbench records in {', '.join(map(str, paths))}; pass directories written by attnbench")
    ctx = sections.Context(out_dir=out.parent, plot_dir=out.parent / f"{out.stem}_plots", plt=charts.pyplot())
    kinds = Counter(e.record.kind for e in entries) + Counter(str(r.obj.get("kind")) for r in raws)
    overview = page.Section("overview", "Overview").add(
        f"Inputs: {', '.join(map(str, paths))}.",
        "Records: " + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ".",
        f"GPUs: {', '.join(sorted({str(e.record.provenance.get('gpu_name') or 'unknown') for e in entries})) or '-'}.",
        "Tables show the newest run per backend and scenario; history plots show every run.")
    body = [overview, *sections.kind_sections(ctx, entries)]
    if raws:
        body.append(sections.raw_section(ctx, raws))
    body.append(sections.files_section(ctx, entries, raws))
    html = page.render(title, body, subtitle=f"Generated {provenance.utc_now()} by attnbench")
    return atomic.write_text(out, html)
