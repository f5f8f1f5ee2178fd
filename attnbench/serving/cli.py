"""`attnbench serve-bench`: flags -> ServeBench -> bench.run."""

from __future__ import annotations

import datetime as _dt
import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer

from attnbench.errors import UserError


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
    input: str = typer.Option("1000", "--input", help="Prompt tokens; a list runs each (input, output) pair: 1000,8000."),
    output: str = typer.Option("1000", "--output", help="Output tokens per request (exact: ignore_eos + min_tokens): 1000,1."),
    num_prompts: int = typer.Option(256, help="Requests per load shape."),
    request_rate: float = typer.Option(math.inf, help="Requests/s (Poisson/gamma arrivals); inf sends all at once."),
    burstiness: float = typer.Option(1.0, help="Gamma shape of the arrival gaps: 1 Poisson, <1 burstier."),
    max_concurrency: Optional[int] = typer.Option(None, help="At most this many requests in flight."),
    seed: int = typer.Option(0, help="Seed of the prompts and arrival times."),
    warmup: Optional[int] = typer.Option(None, help="Requests per unmeasured warm-up pass (default --num-prompts; 0: no warm-up)."),
    warmup_tolerance: float = typer.Option(0.03, help="Warm up until two passes in a row agree this closely on output tok/s."),
    max_warmup_passes: int = typer.Option(5, help="At most this many warm-up passes per backend and shape (then measure, flagged as not steady)."),
    repeats: int = typer.Option(3, help="Measured passes per backend and shape (fresh prompts each); means, 95% CIs and ratio CIs over them."),
    target_ci: Optional[float] = typer.Option(None, help="Then more passes, in rounds over the backends still short of it, until the 95% CI half-width of output tok/s is within this fraction of the mean (e.g. 0.03)."),
    max_repeats: Optional[int] = typer.Option(None, help="With --target-ci: at most this many measured passes per backend and shape (default 2 x --repeats)."),
    parallel_start: Optional[bool] = typer.Option(None, "--parallel-start/--no-parallel-start", help="Run the backends' servers side by side when the GPU has room for each one's KV cache (default: when it has)."),
    interleave: Optional[bool] = typer.Option(None, "--interleave/--no-interleave", help="Measured passes in rounds across the side-by-side backends (A B, A B, ...) so drift hits all alike (default: when side by side)."),
    keep_flagged: bool = typer.Option(False, "--keep-flagged", help="Count passes flagged as contaminated (JIT, preemption, clock dip, saturated client) in means, CIs and ratios."),
    percentiles: str = typer.Option("50,90,99", help="Latency percentiles to report."),
    goodput: List[str] = typer.Option([], help="SLO for goodput, repeatable: ttft:MS, tpot:MS, e2el:MS."),
    model: Optional[str] = typer.Option(None, help="Embedded model name (default qwen3-0.6b, dummy weights), HF id or local path; with --endpoint, the served model name."),
    endpoint: Optional[str] = typer.Option(None, help="Benchmark this running OpenAI-compatible server (base URL, with or without /v1; NAME=URL names it) instead of starting vLLM."),
    name: str = typer.Option("endpoint", help="With --endpoint: the backend name its records carry."),
    vocab_size: Optional[int] = typer.Option(None, help="Vocabulary for random token ids (default: from the model's config, else 10000)."),
    serve_arg: List[str] = typer.Option([], help="Argument passed to `vllm serve`, repeatable: --serve-arg=--max-num-seqs --serve-arg=512."),
    result_dir: Optional[Path] = typer.Option(None, help="Where records, logs, summary.md and plots go (default results/<UTC time>-serve)."),
    baseline: Optional[str] = typer.Option(None, help="Backend the comparison table divides by (default: the best per metric)."),
    ready_timeout: float = typer.Option(900.0, help="Seconds to wait for a server to become ready."),
    request_timeout: float = typer.Option(3600.0, help="Seconds before one request counts as failed."),
    client_workers: int = typer.Option(0, help="Client processes (0: automatic)."),
    prompt_format: Optional[str] = typer.Option(None, help="token-ids (default when attnbench starts vLLM) or text: random ids decoded with the model's tokenizer, as vLLM's random dataset. With --endpoint the default is token-ids if the server takes them, else text."),
    tokenizer: Optional[str] = typer.Option(None, help="Tokenizer folder (tokenizer.json) for --prompt-format text (default: the model's folder)."),
    from_results: Optional[Path] = typer.Option(None, help="Run nothing: print the comparison and rewrite summary.md and the plots from the records under this folder (flags that follow from the records, such as clock dips, are evaluated again)."),
) -> None:
    """Start a vLLM server per backend, drive it with a streaming load, compare the backends."""
    from attnbench.backends import registry
    from attnbench.models import embedded
    from attnbench.serving import bench
    from attnbench.serving.workload import Workload

    if from_results is not None:
        bench.summarize(from_results, baseline, keep_flagged)
        return

    from attnbench.serving.endpoint import normalize

    if endpoint is not None:
        name, endpoint = with_name(endpoint, name)
        normalize(endpoint)  # an empty or malformed URL is refused as such
    shapes = bench.parse_shapes(input, output)
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
    load = replace(load, vocab_size=bench.vocab_size(model, vocab_size, notice=lambda s: print(s, file=sys.stderr),
                                                     base_url=normalize(endpoint) if endpoint else None))
    if repeats < 1:
        raise UserError(f"--repeats must be >= 1 (got {repeats})")
    if not 0 < warmup_tolerance < 1:
        raise UserError(f"--warmup-tolerance is a fraction between 0 and 1, e.g. 0.03 (got {warmup_tolerance})")
    if max_warmup_passes < 1:
        raise UserError(f"--max-warmup-passes must be >= 1 (got {max_warmup_passes}); --warmup 0 turns warm-up off")
    if client_workers < 0:
        raise UserError(f"--client-workers must be >= 0 (got {client_workers})")
    if baseline and not endpoint and baseline not in [b.name for b in chosen]:
        raise UserError(f"--baseline {baseline!r} is not among --backends ({', '.join(b.name for b in chosen)})")
    config = bench.ServeBench(
        shapes=shapes, load=load, model=model, backends=chosen, endpoint=endpoint, endpoint_name=name,
        serve_args=list(serve_arg), percentiles=pcts, slos_ms=slos,
        result_dir=result_dir or default_result_dir("serve"), ready_timeout_s=ready_timeout,
        request_timeout_s=request_timeout, workers=client_workers, baseline=baseline, repeats=repeats,
        target_ci=target_ci, max_repeats=max_repeats,
        parallel_start=parallel_start, interleave=interleave, warmup_tolerance=warmup_tolerance,
        max_warmup_passes=max_warmup_passes, keep_flagged=keep_flagged, prompt_format=prompt_format or "token-ids",
        tokenizer=tokenizer)
    try:
        records = bench.run(config)
    finally:  # also after Ctrl-C: say where the partial results are
        print(f"attnbench: results in {config.result_dir}", file=sys.stderr)
    lost = [r for r in records if r.status == "ok" and r.error]
    for r in lost:
        print(f"attnbench: {r.backend} {r.scenario['input_len']}:{r.scenario['output_len']} "
              f"run {int(r.scenario.get('repeat') or 0) + 1}: {r.error}", file=sys.stderr)
    if records and (all(r.status == "failed" for r in records) or lost):
        raise typer.Exit(1)
