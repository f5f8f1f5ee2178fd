"""`attnbench run SCENARIO`: a thin layer over spec.load, Scenario.expand and Runner."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

from attnbench.errors import UserError

INCOMPLETE = 3  # exit code: a time limit stopped a run or the budget skipped one (1: every run ran to its end, some failed)


@contextlib.contextmanager
def _first_signal_only():
    """The first Ctrl-C or SIGTERM stops the study; later ones are ignored, so they cannot cut the
    servers' stop short. The handlers from before are back afterwards."""
    from attnbench import procs

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs.sigterm_raises_interrupt(once=True)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def run(
    scenario: Path = typer.Argument(..., help="Scenario file, e.g. scenarios/seed-serve.toml."),
    backends: Optional[str] = typer.Option(None, help="Comma-separated backends replacing the scenario's lists."),
    result_dir: Optional[Path] = typer.Option(None, help="Result tree (default results/<UTC time>-<scenario name>)."),
    repeats: Optional[int] = typer.Option(None, help="Repeats of every run (default: the scenario's `repeats`)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands and exit."),
    ray: bool = typer.Option(False, "--ray", help="Run in parallel as Ray tasks, one per run, each asking for its GPUs "
                                                   "(a local Ray instance, or $RAY_ADDRESS, or --ray-address)."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to run on (implies --ray), e.g. ray://head:10001."),
    resume: bool = typer.Option(False, "--resume", help="Continue the study in --result-dir: keep the runs its manifest.json "
                                                         "lists as ok with the same command line, run the others."),
    run_timeout: Optional[float] = typer.Option(None, help="Seconds before one run is stopped and counted as failed "
                                                           "(replaces the scenario's timeout_s)."),
    budget_s: Optional[float] = typer.Option(None, "--budget-s", help="Seconds for the whole study (replaces the scenario's "
                                                                       "budget_s): then the run in flight is stopped and the rest skipped."),
) -> None:
    """Run a scenario: every run one after another here, or spread over GPUs with --ray; writes manifest.json.
    Exit code 0: every run ok; 1: some failed; 3: a time limit stopped a run (partial) or the budget skipped one."""
    from attnbench import provenance
    from attnbench.backends import registry
    from attnbench.scenarios import runner, spec

    names = [b.name for b in registry.parse_names(backends)] if backends else None
    study = spec.load(scenario, names)
    runs = study.expand(repeats)
    for flag, value in (("--run-timeout", run_timeout), ("--budget-s", budget_s)):
        if value is not None and value <= 0:
            raise UserError(f"{flag} must be > 0 seconds (got {value:g})")
    if study.servers is not None and (ray or ray_address):
        raise UserError(f"{scenario}: a scenario with [servers] runs here, one run after another "
                        "(its servers listen on this machine's loopback); drop --ray")
    out = result_dir or Path("results") / f"{provenance.utc_now().replace(':', '')}-{study.name}"
    if dry_run:
        r = runner.Runner(study, runs, out, timeout_s=run_timeout, budget_s=budget_s)
        for server in study.servers.servers if study.servers else []:
            print(f"[server {study.servers.describe(server)}]")
        for run_ in runs:
            limit = r.run_timeout(run_)
            print(f"[{run_.gpus} GPU{f', {limit:g} s' if limit else ''}] {shlex.join(r.command(run_))}")
        budget = f" within a budget of {r.budget_s:g} s" if r.budget_s else ""
        print(f"{len(runs)} run{'s' * (len(runs) != 1)}{budget}; results would go to {out}", file=sys.stderr)
        return

    def done(o: runner.Outcome) -> None:
        if o.status == "skipped":
            print(f"{o.result_dir}: skipped: {o.error}", file=sys.stderr, flush=True)
            return
        word = {"ok": "ok", "partial": f"PARTIAL ({o.error}; what it saved is kept)"}.get(o.status, f"FAILED ({o.error})")
        print(f"{o.result_dir}: {word} in {o.duration_s:.1f} s", file=sys.stderr, flush=True)

    def start(o: runner.Outcome) -> None:
        print(f"{o.result_dir}: running ({out / o.result_dir / runner.LOG_NAME})", file=sys.stderr, flush=True)

    if resume and result_dir is None:
        raise UserError("--resume continues an earlier run: pass its --result-dir")
    if not resume and (out / "manifest.json").exists():
        raise UserError(f"{out} holds a study already (manifest.json): pass --resume to continue it, "
                        "or choose another --result-dir")
    r = runner.Runner(study, runs, out, timeout_s=run_timeout, on_done=done, on_start=start, resume=resume,
                      budget_s=budget_s, say=lambda line: print(f"servers: {line}", file=sys.stderr, flush=True))
    if resume:
        print(f"resuming: {len(r.done)} of {len(runs)} runs ok in an earlier run, kept (\"reused\" in the manifest)",
              file=sys.stderr)
    for i, what in r.changed.items():
        print(f"{r.outcomes[i].result_dir}: command changed since its earlier ok run ({what}); running it again",
              file=sys.stderr)
    print(f"{study.name}: {len(runs)} runs -> {out}", file=sys.stderr, flush=True)
    if not (ray or ray_address):
        with _first_signal_only() if study.servers else contextlib.nullcontext():
            outcomes = r.run_local()
    else:
        try:
            import ray as _ray  # noqa: F401
        except ImportError:
            raise UserError("--ray needs Ray: pip install 'attnbench[scale]' (or pip install 'ray>=2.9')") from None
        outcomes = r.run_ray(ray_address)
    ok = sum(o.status == "ok" for o in outcomes)
    partial, skipped = (sum(o.status == s for o in outcomes) for s in ("partial", "skipped"))
    cut = []
    if partial:
        cut.append(f"{partial} stopped by a time limit (partial)")
    if skipped:
        cut.append(f"{skipped} skipped, the budget ({r.budget_s:g} s) was spent")
    note = f"; INCOMPLETE: {', '.join(cut)}" if not r.complete else ""
    print(f"{ok}/{len(outcomes)} runs ok{note}; manifest: {out / 'manifest.json'}", file=sys.stderr)
    if not r.complete:
        raise typer.Exit(INCOMPLETE)
    if ok < len(outcomes):
        raise typer.Exit(1)
