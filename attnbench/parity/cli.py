"""`attnbench parity`: flags -> run.Parity -> run.run. The options a scenario sets are declared on
the fields of Parity, Settings, PromptSet and Thresholds (default, help, bound, choices); the
others here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from attnbench.errors import UserError
from attnbench.flags import typer_option
from attnbench.parity.run import Parity


def parse_endpoint(item: str) -> tuple[str, str]:
    """'fa3=http://127.0.0.1:8001' -> ('fa3', 'http://127.0.0.1:8001')."""
    from attnbench.serving.endpoint import named

    name, url = named(item)
    if name is None:
        raise UserError(f"--endpoint {item!r} is not NAME=URL; pass e.g. --endpoint fa3=http://127.0.0.1:8001")
    return name, url


def parse_endpoints(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, url = parse_endpoint(item)
        if name in out:
            raise UserError(f"--endpoint names {name!r} twice; give each server its own name")
        out[name] = url
    return out


def parity(
    endpoint: List[str] = typer.Option([], help="A running vLLM server to compare, repeatable: --endpoint fa3=http://127.0.0.1:8001."),
    backends: Optional[str] = typer.Option(None, help="Start vLLM per backend (side by side when the GPU has room, else one after another): fa2,fa3,fa4,flashinfer (see `attnbench backends`)."),
    parallel_start: Optional[bool] = typer.Option(None, "--parallel-start/--no-parallel-start", help="Run the backends' servers (and the null pass's) side by side when the GPU has room for each one's KV cache (default: when it has)."),
    model: Optional[str] = typer_option(Parity, "model"),
    random_weights: bool = typer.Option(False, help="With an embedded model: serve real random weights (transformers init, seeded by --seed) instead of vLLM's near-zero dummy ones, so differences show and the fp32 reference runs too."),
    serve_arg: List[str] = typer_option(Parity, "serve_args"),
    reference: Optional[str] = typer_option(Parity, "reference"),
    hf_reference: str = typer_option(Parity, "hf_reference"),
    num_prompts: int = typer_option(Parity, "num_prompts"),
    concurrency: int = typer_option(Parity, "concurrency"),
    short_len: int = typer_option(Parity, "short_len"),
    long_len: int = typer_option(Parity, "long_len"),
    top_k: int = typer_option(Parity, "top_k"),
    max_tokens: int = typer_option(Parity, "max_tokens"),
    seed: int = typer_option(Parity, "seed"),
    prompts: str = typer_option(Parity, "prompts"),
    tokenizer: Optional[str] = typer_option(Parity, "tokenizer"),
    null_pass: bool = typer.Option(True, help="Collect the reference again (a second server, prompts in another order) for limits from its spread, and rescore every greedy continuation with it."),
    null_factor: float = typer_option(Parity, "null_factor"),
    null_floor: float = typer_option(Parity, "null_floor"),
    min_topk_overlap: Optional[float] = typer_option(Parity, "min_topk_overlap"),
    vocab_size: Optional[int] = typer_option(Parity, "vocab_size", unset=True),
    max_dlogprob: float = typer_option(Parity, "max_dlogprob"),
    mean_dlogprob: float = typer_option(Parity, "mean_dlogprob"),
    max_mean_kl: float = typer_option(Parity, "max_mean_kl"),
    min_top1: float = typer_option(Parity, "min_top1"),
    min_greedy_prefix: Optional[float] = typer_option(Parity, "min_greedy_prefix"),
    fp32_factor: float = typer_option(Parity, "fp32_factor"),
    result_dir: Optional[Path] = typer.Option(None, help="Where records, collected logprobs, summary.md and the plot go (default results/<UTC time>-parity)."),
    from_collected: Optional[Path] = typer.Option(None, help="Compare the collected/ folder of an earlier run again (other thresholds or reference), without servers."),
    ready_timeout: float = typer_option(Parity, "ready_timeout_s"),
    request_timeout: float = typer_option(Parity, "request_timeout_s"),
) -> None:
    """Do the backends compute the same model? Compare teacher-forced logprobs and greedy
    continuations of each backend with a reference backend (and an fp32 transformers run)."""
    from attnbench.backends import registry
    from attnbench.parity import run
    from attnbench.parity.collect import Settings
    from attnbench.parity.prompts import PromptSet
    from attnbench.parity.thresholds import Thresholds
    from attnbench.serving import run as serve_bench
    from attnbench.serving.cli import default_result_dir

    thresholds = Thresholds(max_abs_dlogprob=max_dlogprob, mean_abs_dlogprob=mean_dlogprob, mean_kl=max_mean_kl,
                            min_top1_agreement=min_top1, min_greedy_prefix_mean=min_greedy_prefix,
                            fp32_factor=fp32_factor, min_topk_overlap=min_topk_overlap, null_factor=null_factor,
                            null_floor=null_floor)
    if from_collected:
        if endpoint or backends:
            raise UserError("--from-collected compares saved collections; drop --endpoint / --backends")
        records = run.rejudge(from_collected, result_dir or default_result_dir("parity"), reference, thresholds,
                              null_pass)
        _exit(records)
        return
    endpoints = parse_endpoints(endpoint)
    if endpoints and backends:
        raise UserError("pass either --endpoint (running servers) or --backends (servers attnbench starts), not both")
    chosen = [] if endpoints else registry.parse_names(backends)
    if not endpoints and not chosen:
        raise UserError("no attention backend is available here (see `attnbench backends`); "
                        "run on a GPU machine with the gpu extra, or pass --endpoint NAME=URL")
    if not endpoints:
        from attnbench.models import embedded
        from attnbench.parity import weights

        weights.refuse_dummy(model, list(serve_arg), random_weights)
        model = model or (embedded.DEFAULT_MODEL if random_weights else weights.default_model())
    vocab = serve_bench.vocab_size(model, vocab_size, notice=lambda s: print(s, file=sys.stderr))
    if prompts == "text" and tokenizer is None:
        tokenizer = text_tokenizer(model)
    settings = Settings(PromptSet(num_prompts=num_prompts, short_len=short_len, long_len=long_len, seed=seed,
                                  vocab_size=vocab, source=prompts, tokenizer=tokenizer),
                        top_k=top_k, max_tokens=max_tokens, request_timeout_s=request_timeout, concurrency=concurrency)
    config = Parity(settings=settings, result_dir=result_dir or default_result_dir("parity"), model=model,
                    endpoints=endpoints, backends=chosen, serve_args=list(serve_arg), reference=reference,
                    hf_reference=hf_reference, thresholds=thresholds, ready_timeout_s=ready_timeout,
                    random_weights=random_weights, null_pass=null_pass, parallel_start=parallel_start)
    records = run.run(config)
    print(f"attnbench: results in {config.result_dir}", file=sys.stderr)
    _exit(records)


def text_tokenizer(model: str | None) -> str | None:
    """The folder whose tokenizer.json text prompts use: the model's, when it is a local folder
    that has one (an embedded shape's generated tokenizer knows no words)."""
    return model if model and (Path(model) / "tokenizer.json").is_file() else None


def _exit(records) -> None:
    """Exit 1 when a backend failed to run or failed a threshold (so CI can gate on it)."""
    if any(r.status != "ok" or r.metrics.get("passed") == 0 for r in records):
        raise typer.Exit(1)
