"""`attnbench explain RUN_DIR`: flags -> run.explain -> table, records, summary.md, plot."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from attnbench.errors import UserError


def microbench_timer(device: str, repeats: int):
    """The real timer: attnbench.microbench's decode kernel time of one layer, in microseconds."""
    from attnbench.microbench.api import decode_time_us

    def timer(kernel, shape):
        return decode_time_us(kernel, shape, device=device, repeats=repeats)

    return timer


def explain(
    run_dir: Path = typer.Argument(..., help="Result directory of `attnbench serve-bench` (or one serve record file)."),
    backends: Optional[str] = typer.Option(None, help="Comma-separated serve backends to explain (default: all in RUN_DIR)."),
    shape: Optional[str] = typer.Option(None, help="Only this load shape, INPUTxOUTPUT tokens, e.g. 1000x1000."),
    device: str = typer.Option("cuda", help="Where microbench times the kernels: cuda, or cpu (reference backend only)."),
    kernel_backend: List[str] = typer.Option([], help="SERVE=KERNEL: time serve backend SERVE with microbench backend KERNEL, repeatable (default: same name)."),
    coverage: float = typer.Option(0.9, help="Time the most frequent batch compositions covering this share of decode token-steps."),
    same_load: bool = typer.Option(False, help="Also time each pair's slower kernel on the faster run's batches: splits the attention gap into kernel speed and load."),
    repeats: int = typer.Option(20, help="Timed repetitions per kernel shape."),
    result_dir: Optional[Path] = typer.Option(None, help="Where records, summary.md and the plot go (default RUN_DIR/explain)."),
) -> None:
    """Attribute the TPOT gap between backends to attention kernel time, from serve-bench's in-flight samples."""
    from attnbench.console import StatusLine
    from attnbench.explain import render, run
    from attnbench.records import record

    if device not in ("cuda", "cpu"):
        raise UserError(f"--device {device!r}: use cuda or cpu")
    if not 0 < coverage <= 1:
        raise UserError(f"--coverage {coverage}: must lie in (0, 1], e.g. 0.9")
    if repeats < 1:
        raise UserError(f"--repeats {repeats}: time each shape at least once, e.g. --repeats 20")
    names = [n.strip() for n in (backends or "").split(",") if n.strip()] or None
    kernels = run.parse_kernels(kernel_backend)
    out_dir = result_dir or (run_dir if run_dir.is_dir() else run_dir.parent) / "explain"
    records = [r for r in record.load(run_dir) if r.kind == "serve"]
    line = StatusLine(every_s=10.0, stream=sys.stderr)  # the stream of now, not of import time
    results: list = []
    try:
        run.explain(records, str(run_dir), microbench_timer(device, repeats), out_dir, device=device,
                       backends=names, shape=run.parse_shape(shape), kernels=kernels, coverage=coverage,
                       same_load=same_load, status=line, into=results)
    except KeyboardInterrupt:
        line.done()
        if any(r.estimates for r in results):  # the summary of what was measured
            from attnbench.explain import estimate

            for r in results:
                r.gaps = r.gaps or estimate.gaps(r.estimates)
            render.write_summary(results, out_dir, render.write_plots(results, out_dir, _device_name(device)))
        raise
    line.done()
    plots = render.write_plots(results, out_dir, _device_name(device))
    written = {**plots, "summary.md": render.write_summary(results, out_dir, plots)}
    print(render.table(results), end="")
    print(f"results: {out_dir} ({', '.join(sorted(written))}, {sum(len(r.paths) for r in results)} records)")


def _device_name(device: str) -> str:
    if device == "cpu":
        return "CPU (reference kernels)"
    from attnbench import provenance

    gpus = provenance.gpus()
    return gpus[0]["name"] if gpus else ""
