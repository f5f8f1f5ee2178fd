"""`attnbench serve-bench`: flags -> ServeBench -> run.run. The options a scenario sets are
declared on the fields of ServeBench and Workload (default, help, bound, choices); the others here."""

from __future__ import annotations

import datetime as _dt
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer

from attnbench.errors import UserError
from attnbench.flags import typer_option
from attnbench.serving.run import ServeBench


def default_result_dir(kind: str) -> Path:
    return Path("results") / f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{kind}"


def with_name(endpoint: str, name: str) -> tuple[str, str]:
    """--endpoint NAME=URL is --endpoint URL --name NAME (parity's form); saying both is refused."""
    from attnbench.serving.endpoint import named

    given, url = named(endpoint)
    if given is None:
        return name, endpoint
    if name != "endpoint" and name != given:
        raise UserError(f"--endpoint {endpoint!r} names the server {given!r} and --name says {name!r}; keep one")
    return given, url


def parse_slos(items: list[str]) -> dict[str, float] | None:
    """['ttft:500', 'tpot:50'] -> {'ttft': 500.0, 'tpot': 50.0} (milliseconds, as vLLM's --goodput)."""
    out = {}
    for item in items:
        key, _, value = item.partition(":")
        if key not in ("ttft", "tpot", "e2el"):
            raise UserError(f"--goodput {item!r}: the metric must be ttft, tpot or e2el, e.g. --goodput tpot:50")
        try:
            out[key] = float(value)
        except ValueError:
            raise UserError(f"--goodput {item!r}: the limit must be milliseconds, e.g. --goodput tpot:50") from None
    return out or None


def serve_bench(
    backends: Optional[str] = typer.Option(None, help="Comma-separated backends (see `attnbench backends`); default: every available one."),
    input: str = typer_option(ServeBench, "input"),
    output: str = typer_option(ServeBench, "output"),
    num_prompts: int = typer_option(ServeBench, "num_prompts"),
    request_rate: float = typer_option(ServeBench, "request_rate"),
    burstiness: float = typer_option(ServeBench, "burstiness"),
    max_concurrency: Optional[int] = typer_option(ServeBench, "max_concurrency"),
    seed: int = typer_option(ServeBench, "seed"),
    warmup: Optional[int] = typer_option(ServeBench, "warmup", unset=True),
    warmup_tolerance: float = typer_option(ServeBench, "warmup_tolerance"),
    max_warmup_passes: int = typer_option(ServeBench, "max_warmup_passes"),
    repeats: int = typer_option(ServeBench, "repeats"),
    target_ci: Optional[float] = typer_option(ServeBench, "target_ci"),
    max_repeats: Optional[int] = typer_option(ServeBench, "max_repeats"),
    parallel_start: Optional[bool] = typer.Option(None, "--parallel-start/--no-parallel-start", help="Run the backends' servers side by side when the GPU has room for each one's KV cache (default: when it has)."),
    interleave: Optional[bool] = typer.Option(None, "--interleave/--no-interleave", help="Measured passes in rounds across the side-by-side backends (A B, A B, ...) so drift hits all alike (default: when side by side)."),
    keep_flagged: bool = typer.Option(False, "--keep-flagged", help="Count passes flagged as contaminated (JIT, preemption, clock dip, saturated client) in means, CIs and ratios."),
    percentiles: str = typer_option(ServeBench, "percentiles"),
    goodput: List[str] = typer_option(ServeBench, "goodput"),
    model: Optional[str] = typer_option(ServeBench, "model", unset=True),
    endpoint: Optional[str] = typer.Option(None, help="Benchmark this running OpenAI-compatible server (base URL, with or without /v1; NAME=URL names it) instead of starting vLLM."),
    name: str = typer.Option("endpoint", help="With --endpoint: the backend name its records carry."),
    vocab_size: Optional[int] = typer_option(ServeBench, "vocab_size", unset=True),
    serve_arg: List[str] = typer_option(ServeBench, "serve_args"),
    result_dir: Optional[Path] = typer.Option(None, help="Where records, logs, summary.md and plots go (default results/<UTC time>-serve)."),
    baseline: Optional[str] = typer.Option(None, help="Backend the comparison table divides by (default: the best per metric)."),
    ready_timeout: float = typer_option(ServeBench, "ready_timeout_s"),
    request_timeout: float = typer_option(ServeBench, "request_timeout_s"),
    client_workers: int = typer.Option(0, help="Client processes (0: automatic)."),
    prompt_format: Optional[str] = typer_option(ServeBench, "prompt_format", unset=True),
    tokenizer: Optional[str] = typer_option(ServeBench, "tokenizer"),
    profile_steps: int = typer_option(ServeBench, "profile_steps"),
    from_results: Optional[Path] = typer.Option(None, help="Run nothing: print the comparison and rewrite summary.md and the plots from the records under this folder (flags that follow from the records, such as clock dips, are evaluated again)."),
) -> None:
    """Start a vLLM server per backend, drive it with a streaming load, compare the backends."""
    from attnbench.backends import registry
    from attnbench.models import embedded
    from attnbench.serving import run
    from attnbench.serving.workload import Workload

    if from_results is not None:
        run.summarize(from_results, baseline, keep_flagged)
        return

    from attnbench.serving.endpoint import normalize

    if endpoint is not None:
        name, endpoint = with_name(endpoint, name)
        normalize(endpoint)  # an empty or malformed URL is refused as such
    shapes = run.parse_shapes(input, output)
    try:
        pcts = [float(p) for p in percentiles.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"--percentiles takes numbers like 50,90,99 (got {percentiles!r})") from None
    if any(not 0 < p < 100 for p in pcts):
        raise UserError(f"--percentiles must lie strictly between 0 and 100 (got {percentiles!r})")
    if target_ci is not None and not 0 < target_ci < 1:
        raise UserError(f"--target-ci is a fraction between 0 and 1, e.g. 0.03 for ±3% (got {target_ci})")
    if max_repeats is not None and max_repeats < repeats:
        raise UserError(f"--max-repeats {max_repeats} is below --repeats {repeats}; raise it or drop it (default 2 x --repeats)")
    if max_repeats is not None and target_ci is None:
        raise UserError("--max-repeats caps the passes --target-ci adds; give --target-ci too (e.g. --target-ci 0.03)")
    if endpoint and backends:
        raise UserError("--endpoint benchmarks one running server; drop --backends (or drop --endpoint to start vLLM per backend)")
    if endpoint and serve_arg:
        raise UserError("--serve-arg configures servers attnbench starts; with --endpoint the server is already running")
    if endpoint and profile_steps:
        raise UserError("--profile-steps profiles servers attnbench starts (it passes them --profiler-config); "
                        "for a running server, start it with --profiler-config and call its /start_profile")
    load = Workload(input_len=shapes[0][0], output_len=shapes[0][1], num_prompts=num_prompts,
                    request_rate=request_rate, burstiness=burstiness, max_concurrency=max_concurrency, seed=seed,
                    warmup=num_prompts if warmup is None else warmup, vocab_size=vocab_size or 10_000)  # validates the numbers first
    slos = parse_slos(goodput)
    chosen = [] if endpoint else registry.parse_names(backends)
    if not endpoint and not chosen:
        raise UserError("no attention backend is available here (see `attnbench backends`); "
                        "install the gpu extra on a GPU machine, or pass --endpoint URL")
    if backends and not os.environ.get("ATTNBENCH_VLLM_CMD"):  # a site's own server command decides itself
        for b in chosen:
            why = b.availability()
            if not why.ok:
                raise UserError(f"backend {b.name} is not available here: {why.reason} (see `attnbench backends`)")
    if prompt_format not in (None, "text", "token-ids"):
        raise UserError(f"--prompt-format is text or token-ids (got {prompt_format!r})")
    if endpoint is None:
        model = model or embedded.DEFAULT_MODEL
    if endpoint:
        from attnbench.serving.endpoint import pick_model

        from attnbench.serving.endpoint import accepts_token_ids

        model = pick_model(normalize(endpoint), model)  # unreachable or wrong model: fail before anything runs
        if prompt_format is None:
            took = accepts_token_ids(normalize(endpoint), model)
            prompt_format = "token-ids" if took is True else "text"
            if took is not True:
                print(f"attnbench: notice: the server does not take token-id prompts ({took}); "
                      "sending text prompts (--prompt-format text)", file=sys.stderr)
    load = replace(load, vocab_size=run.vocab_size(model, vocab_size, notice=lambda s: print(s, file=sys.stderr),
                                                     base_url=normalize(endpoint) if endpoint else None))
    if not 0 < warmup_tolerance < 1:
        raise UserError(f"--warmup-tolerance is a fraction between 0 and 1, e.g. 0.03 (got {warmup_tolerance})")
    if client_workers < 0:
        raise UserError(f"--client-workers must be >= 0 (got {client_workers})")
    if baseline and not endpoint and baseline not in [b.name for b in chosen]:
        raise UserError(f"--baseline {baseline!r} is not among --backends ({', '.join(b.name for b in chosen)})")
    config = ServeBench(
        shapes=shapes, load=load, model=model, backends=chosen, endpoint=endpoint, endpoint_name=name,
        serve_args=list(serve_arg), percentiles=pcts, slos_ms=slos,
        result_dir=result_dir or default_result_dir("serve"), ready_timeout_s=ready_timeout,
        request_timeout_s=request_timeout, workers=client_workers, baseline=baseline, repeats=repeats,
        target_ci=target_ci, max_repeats=max_repeats,
        parallel_start=parallel_start, interleave=interleave, warmup_tolerance=warmup_tolerance,
        max_warmup_passes=max_warmup_passes, keep_flagged=keep_flagged, prompt_format=prompt_format or "token-ids",
        tokenizer=tokenizer, profile_steps=profile_steps)
    try:
        records = run.run(config)
    finally:  # also after Ctrl-C: say where the partial results are
        print(f"attnbench: results in {config.result_dir}", file=sys.stderr)
    lost = [r for r in records if r.status == "ok" and r.error]
    for r in lost:
        print(f"attnbench: {r.backend} {r.scenario['input_len']}:{r.scenario['output_len']} "
              f"run {int(r.scenario.get('repeat') or 0) + 1}: {r.error}", file=sys.stderr)
    if records and (all(r.status == "failed" for r in records) or lost):
        raise typer.Exit(1)
