"""`attnbench gpqa`: flags -> GPQARun -> run.run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from attnbench.errors import UserError


def gpqa(
    effort: str = typer.Option("low", help="Reasoning effort: low, medium, high, or none (send no effort: for servers without reasoning). Never dropped: a request the server refuses (HTTP 400) scores 0, as in the reference, and is counted."),
    endpoint: Optional[str] = typer.Option(None, help="Evaluate this running OpenAI-compatible server (base URL, with or without /v1; NAME=URL names it) instead of starting vLLM."),
    model: Optional[str] = typer.Option(None, help="Model: with --endpoint the served name (default: the server's); with --backends what vLLM loads (default openai/gpt-oss-20b)."),
    name: str = typer.Option("endpoint", help="With --endpoint: the backend name its record carries."),
    backends: Optional[str] = typer.Option(None, help="Comma-separated backends to start vLLM with, one after another (see `attnbench backends`)."),
    serve_arg: List[str] = typer.Option([], help="Argument passed to `vllm serve`, repeatable: --serve-arg=--max-model-len --serve-arg=8192."),
    dataset: str = typer.Option("diamond", help="diamond|main|extended (OpenAI's public simple-evals CSV, as the reference reads it), hub:diamond|main|extended|experts (the Hugging Face copy, gated: needs HF_TOKEN), mini (20 made-up questions), or a local .csv/.jsonl with GPQA's columns."),
    repeats: int = typer.Option(8, help="Times each question is asked (with a fresh option order each time)."),
    concurrency: int = typer.Option(64, help="Requests in flight at most."),
    api: str = typer.Option("responses", help="responses (/v1/responses, as the reference) or chat (/v1/chat/completions)."),
    max_tokens: int = typer.Option(131072, help="Output token limit per answer (the reference's), capped by the server's max model length (with a notice)."),
    temperature: float = typer.Option(1.0, help="Sampling temperature (the reference's default)."),
    limit: Optional[int] = typer.Option(None, help="Ask only this many questions (drawn with the seed, as the reference does)."),
    seed: int = typer.Option(0, help="Seed of the question subset and the option shuffling (the reference uses 0)."),
    result_dir: Optional[Path] = typer.Option(None, help="Where records, reports, summary.md and the cache go (default results/<UTC time>-gpqa); re-run with the same directory to resume."),
    grader: str = typer.Option("reference", help="reference (awards exactly what gpt-oss's extract_abcd awards) or lenient (also bare lowercase letters such as 'c'; recorded)."),
    request_timeout: float = typer.Option(3600.0, help="Seconds before one request attempt counts as failed."),
    retry_time: float = typer.Option(7200.0, help="Seconds one sample may spend retrying 429/5xx/timeouts (exponential backoff) before it counts as failed (and wrong)."),
    empty_resamples: int = typer.Option(4, help="--api chat: times an answer with empty content is asked again (the reference asks until it is not empty)."),
    ready_timeout: float = typer.Option(900.0, help="Seconds to wait for a started server to become ready."),
) -> None:
    """GPQA accuracy through the OpenAI API, per backend, with clustered statistics and paired comparisons."""
    from attnbench.evals import run, sampler
    from attnbench.serving.cli import default_result_dir, with_name

    if endpoint:
        name, endpoint = with_name(endpoint, name)

    if effort not in sampler.EFFORTS:
        raise UserError(f"--effort {effort!r}: use one of {', '.join(sampler.EFFORTS)}")
    if api not in sampler.APIS:
        raise UserError(f"--api {api!r}: use responses or chat")
    if endpoint and backends:
        raise UserError("--endpoint evaluates one running server; drop --backends (or drop --endpoint to start vLLM per backend)")
    if endpoint and serve_arg:
        raise UserError("--serve-arg configures servers attnbench starts; with --endpoint the server is already running")
    if not endpoint and not backends:
        raise UserError("say what to evaluate: --endpoint URL (a running server) or --backends fa3,fa4 (start vLLM per backend)")
    for flag, value in (("--max-tokens", max_tokens), ("--concurrency", concurrency), ("--repeats", repeats)):
        if value < 1:
            raise UserError(f"{flag} must be >= 1 (got {value})")
    if retry_time < 0 or empty_resamples < 0:
        raise UserError(f"--retry-time and --empty-resamples must be >= 0 (got {retry_time:g}, {empty_resamples})")
    from attnbench.evals.grader import GRADERS

    if grader not in GRADERS:
        raise UserError(f"--grader {grader!r}: use reference (as gpt-oss scores) or lenient")
    chosen = []
    if backends:
        from attnbench.backends import registry

        chosen = registry.parse_names(backends)
    cfg = run.GPQARun(
        result_dir=result_dir or default_result_dir("gpqa"), dataset=dataset, effort=effort, api=api, repeats=repeats,
        concurrency=concurrency, max_tokens=max_tokens, temperature=temperature, limit=limit, seed=seed,
        model=model if endpoint else (model or run.DEFAULT_MODEL), endpoint=endpoint, name=name, backends=chosen,
        serve_args=list(serve_arg), request_timeout_s=request_timeout, retry_time_s=retry_time,
        empty_resamples=empty_resamples, grader=grader, ready_timeout_s=ready_timeout)
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
