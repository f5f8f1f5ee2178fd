"""`attnbench gpqa`: flags -> GPQARun -> run.run. The options a scenario sets are declared on
GPQARun's fields (default, help, bound, choices); the others here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from attnbench.errors import UserError
from attnbench.evals.run import GPQARun
from attnbench.flags import typer_option


def gpqa(
    effort: str = typer_option(GPQARun, "effort"),
    endpoint: Optional[str] = typer.Option(None, help="Evaluate this running OpenAI-compatible server (base URL, with or without /v1; NAME=URL names it) instead of starting vLLM."),
    model: Optional[str] = typer_option(GPQARun, "model"),
    name: str = typer.Option("endpoint", help="With --endpoint: the backend name its record carries."),
    backends: Optional[str] = typer.Option(None, help="Comma-separated backends to start vLLM with, side by side when the GPU has room, else one after another (see `attnbench backends`)."),
    parallel_start: Optional[bool] = typer.Option(None, "--parallel-start/--no-parallel-start", help="Run the backends' servers side by side when the GPU has room for each one's KV cache (default: when it has)."),
    serve_arg: List[str] = typer_option(GPQARun, "serve_args"),
    dataset: str = typer_option(GPQARun, "dataset"),
    repeats: int = typer_option(GPQARun, "repeats"),
    concurrency: int = typer_option(GPQARun, "concurrency"),
    api: str = typer_option(GPQARun, "api"),
    max_tokens: int = typer_option(GPQARun, "max_tokens"),
    temperature: float = typer_option(GPQARun, "temperature"),
    limit: Optional[int] = typer_option(GPQARun, "limit"),
    seed: int = typer_option(GPQARun, "seed"),
    result_dir: Optional[Path] = typer.Option(None, help="Where records, reports, summary.md and the cache go (default results/<UTC time>-gpqa); re-run with the same directory to resume."),
    grader: str = typer_option(GPQARun, "grader"),
    request_timeout: float = typer_option(GPQARun, "request_timeout_s"),
    retry_time: float = typer_option(GPQARun, "retry_time_s"),
    empty_resamples: int = typer_option(GPQARun, "empty_resamples"),
    ready_timeout: float = typer_option(GPQARun, "ready_timeout_s"),
) -> None:
    """GPQA accuracy through the OpenAI API, per backend, with clustered statistics and paired comparisons."""
    from attnbench.evals import run
    from attnbench.serving.cli import default_result_dir, with_name

    if endpoint:
        name, endpoint = with_name(endpoint, name)

    if endpoint and backends:
        raise UserError("--endpoint evaluates one running server; drop --backends (or drop --endpoint to start vLLM per backend)")
    if endpoint and serve_arg:
        raise UserError("--serve-arg configures servers attnbench starts; with --endpoint the server is already running")
    if not endpoint and not backends:
        raise UserError("say what to evaluate: --endpoint URL (a running server) or --backends fa3,fa4 (start vLLM per backend)")
    chosen = []
    if backends:
        from attnbench.backends import registry

        chosen = registry.parse_names(backends)
    cfg = GPQARun(
        result_dir=result_dir or default_result_dir("gpqa"), dataset=dataset, effort=effort, api=api, repeats=repeats,
        concurrency=concurrency, max_tokens=max_tokens, temperature=temperature, limit=limit, seed=seed,
        model=model if endpoint else (model or run.DEFAULT_MODEL), endpoint=endpoint, name=name, backends=chosen,
        serve_args=list(serve_arg), request_timeout_s=request_timeout, retry_time_s=retry_time,
        empty_resamples=empty_resamples, grader=grader, ready_timeout_s=ready_timeout, parallel_start=parallel_start)
    records = run.run(cfg)
    for r in records:
        m = r.metrics
        if r.status == "ok":
            spread = m["stderr_repeat_pct"]
            repeats = f"; ± {spread:.1f} over repeats" if spread == spread else ""
            print(f"{r.backend}: {m['score_pct']:.1f}% ± {m['stderr_pct']:.1f} (95% CI {100 * m['ci_low']:.1f}-"
                  f"{100 * m['ci_high']:.1f}{repeats}), answered-only {m['score_answered_pct']:.1f}%, "
                  f"{m['n_answered']}/{m['n_expected']} answered, {m['rejected_requests']} HTTP 400, "
                  f"{m['failed_requests']} failed, {m['extraction_failures']} unextracted")
        else:
            print(f"{r.backend}: failed: {r.error}")
    comparison = cfg.result_dir / "comparison.json"
    if comparison.exists():
        for pair in json.loads(comparison.read_text()):
            print(pair["verdict"])
    print(f"attnbench: results in {cfg.result_dir}", file=sys.stderr)
    if records and all(r.status == "failed" for r in records):
        raise typer.Exit(1)
