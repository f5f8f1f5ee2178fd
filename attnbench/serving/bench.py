"""serve-bench: per backend, one vLLM server (or the given endpoint), every load shape against
it one after another, one record per (backend, shape), then the side-by-side comparison."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from attnbench import provenance
from attnbench.backends.registry import Backend
from attnbench.console import Progress, StatusLine
from attnbench.errors import UserError
from attnbench.results.record import Record
from attnbench.serving import client, metrics, workload
from attnbench.serving.workload import Workload


@dataclass
class ServeBench:
    shapes: list[tuple[int, int]]  # (input, output) pairs, run in order against each server
    load: Workload  # everything but the lengths (those come from `shapes`)
    model: str | None = "qwen3-0.6b"  # None with --endpoint: whatever the server serves
    backends: list[Backend] = field(default_factory=list)
    endpoint: str | None = None  # benchmark this server instead of starting vLLM
    endpoint_name: str = "endpoint"
    serve_args: list[str] = field(default_factory=list)
    percentiles: list[float] = field(default_factory=lambda: [50, 90, 99])
    slos_ms: dict[str, float] | None = None
    result_dir: Path = Path("results")
    ready_timeout_s: float = 900.0
    request_timeout_s: float = 3600.0
    workers: int = 0
    baseline: str | None = None


def model_shape(cfg: dict | None, serve_args: list[str]) -> dict | None:
    """The attention layout `attnbench explain` needs, from the model's config.json."""
    if not cfg:
        return None
    cfg = cfg.get("text_config", cfg)
    heads = cfg.get("num_attention_heads")
    block = 16
    if "--block-size" in serve_args:
        i = serve_args.index("--block-size")
        if i + 1 < len(serve_args) and serve_args[i + 1].isdigit():
            block = int(serve_args[i + 1])
    return {
        "num_hidden_layers": cfg.get("num_hidden_layers"),
        "num_attention_heads": heads,
        "num_key_value_heads": cfg.get("num_key_value_heads", heads),
        "head_dim": cfg.get("head_dim") or (cfg["hidden_size"] // heads if heads and cfg.get("hidden_size") else None),
        "dtype": str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"),
        "block_size": block,
    }


def run_shape(base_url: str, served_model: str, load: Workload, bench: ServeBench, label: str) -> tuple[dict, dict]:
    """One load shape against a running server: warm-up, timed run -> (metrics, samples)."""
    cfg = client.ClientConfig(base_url=base_url, model=served_model, workers=bench.workers,
                              max_concurrency=load.max_concurrency, request_timeout_s=bench.request_timeout_s)
    if load.warmup:
        warm = workload.prompts(load.warmup, load.input_len, load.vocab_size, load.seed + 10_000)
        client.run(cfg, [client.Request(p, load.output_len, 0.0) for p in warm])
    prompts = workload.prompts(load.num_prompts, load.input_len, load.vocab_size, load.seed)
    offsets = workload.arrival_offsets(load.num_prompts, load.request_rate, load.burstiness, load.seed)
    requests = [client.Request(p, load.output_len, t) for p, t in zip(prompts, offsets)]
    bar = Progress(len(requests), f"[{label}] {load.input_len}:{load.output_len}")
    done = [0]

    def progress(n: int) -> None:
        if n != done[0]:
            bar.update(n - done[0])
            done[0] = n

    try:
        results = client.run(cfg, requests, progress=progress)
    finally:
        bar.close()
    return metrics.compute(results, bench.percentiles, bench.slos_ms), samples(results)


def _s(x: float | None) -> float | None:
    """Seconds kept to 10 us: plenty for ms-scale latencies, and records stay a few MB."""
    return None if x is None or math.isnan(x) else round(x, 5)


def samples(results: list[client.RequestResult]) -> dict:
    return {
        "input_lens": [r.prompt_len for r in results],
        "output_lens": [r.output_len for r in results],
        "ttfts": [_s(r.ttft) for r in results],
        "itls": [[_s(x) for x in r.itls] for r in results],
        "e2els": [_s(r.latency) for r in results],
        "tpots": [_s(metrics.tpot(r)) for r in results],
        "start_times": [_s(r.start) for r in results],
        "errors": [r.error for r in results],
        "timeline": metrics.timeline(results),
        "inflight": metrics.inflight(results),
    }


def _scenario(bench: ServeBench, load: Workload, served_model: str | None, shape: dict | None) -> dict:
    return {
        "input_len": load.input_len, "output_len": load.output_len, "num_prompts": load.num_prompts,
        "request_rate": None if math.isinf(load.request_rate) else load.request_rate,
        "burstiness": load.burstiness, "max_concurrency": load.max_concurrency, "seed": load.seed,
        "warmup": load.warmup, "vocab_size": load.vocab_size, "model": bench.model, "served_model": served_model,
        "endpoint": bench.endpoint, "serve_args": bench.serve_args, "percentiles": bench.percentiles,
        "slos_ms": bench.slos_ms, "model_shape": shape,
    }


def record_path(result_dir: Path, backend: str, load: Workload) -> Path:
    return result_dir / backend / f"serve-{load.input_len}x{load.output_len}.json"


def _run_server(bench: ServeBench, name: str, base_url: str, served_model: str, shape: dict | None,
                prov: dict, records: list[Record]) -> None:
    for input_len, output_len in bench.shapes:
        load = replace(bench.load, input_len=input_len, output_len=output_len)
        rec = Record(kind="serve", backend=name, scenario=_scenario(bench, load, served_model, shape),
                     provenance=prov)
        try:
            rec.metrics, rec.samples = run_shape(base_url, served_model, load, bench, name)
        except client.Interrupted as e:
            rec.metrics = metrics.compute(e.results, bench.percentiles, bench.slos_ms)
            rec.samples = samples(e.results)
            rec.status, rec.error = "failed", "interrupted by the user (Ctrl-C); completed requests kept"
            rec.save(record_path(bench.result_dir, name, load))
            records.append(rec)
            raise KeyboardInterrupt from None
        if rec.metrics["completed"] == 0:
            rec.status = "failed"
            errors = [e for e in rec.samples["errors"] if e]
            rec.error = f"every request failed; first error: {errors[0] if errors else '?'}"
        rec.save(record_path(bench.result_dir, name, load))
        records.append(rec)
        print(metrics.format_block(rec.metrics, load.max_concurrency, bench.percentiles,
                                   title=f" {name} {input_len}:{output_len} "), flush=True)
        if rec.metrics["failed"]:
            first = next(e for e in rec.samples["errors"] if e)
            print(f"attnbench: {name}: {rec.metrics['failed']} of {load.num_prompts} requests failed; "
                  f"first: {first}", file=sys.stderr)


def run(bench: ServeBench) -> list[Record]:
    """Everything `attnbench serve-bench` does after parsing flags; returns the records written."""
    from attnbench.models import embedded
    from attnbench.serving import endpoint as ep
    from attnbench.serving.server import ServerFailed, ServerSpec, running

    records: list[Record] = []
    bench.result_dir.mkdir(parents=True, exist_ok=True)
    try:
        if bench.endpoint:
            base_url = ep.normalize(bench.endpoint)
            served = ep.pick_model(base_url, bench.model)
            cfg = model_config(bench.model) if bench.model else None
            prov = provenance.collect({"server": base_url, "started_by_attnbench": False})
            _run_server(bench, bench.endpoint_name, base_url, served, model_shape(cfg, bench.serve_args), prov, records)
        else:
            served_path, cfg = embedded.resolve(bench.model)
            extra = list(bench.serve_args)
            name = bench.model
            if bench.model in embedded.EMBEDDED:
                extra = ["--load-format", "dummy", *extra]
            shape = model_shape(cfg, bench.serve_args)
            for backend in bench.backends:
                spec = ServerSpec(model=served_path, backend=backend, served_model_name=name,
                                  log_path=bench.result_dir / backend.name / "server.log", extra_args=extra,
                                  ready_timeout_s=bench.ready_timeout_s)
                status = StatusLine(every_s=30.0)
                prov = provenance.collect({"started_by_attnbench": True})
                try:
                    with running(spec, status) as server:
                        status.done(f"[{backend.name}] server ready at {server.base_url}")
                        prov["server_command"] = " ".join(server.command())
                        _run_server(bench, backend.name, server.base_url, server.model_name, shape, prov, records)
                except ServerFailed as e:
                    status.done()
                    print(f"attnbench: {e.reason}; log: {spec.log_path}", file=sys.stderr)
                    for line in e.log_tail[-8:]:
                        print(f"    {line}", file=sys.stderr)
                    for input_len, output_len in bench.shapes:
                        load = replace(bench.load, input_len=input_len, output_len=output_len)
                        rec = Record(kind="serve", backend=backend.name, status="failed", error=e.reason,
                                     scenario=_scenario(bench, load, None, shape), provenance=prov,
                                     samples={"server_log_tail": e.log_tail})
                        rec.save(record_path(bench.result_dir, backend.name, load))
                        records.append(rec)
    finally:
        if records:
            write_comparison(bench, records)
    return records


def model_config(model: str) -> dict | None:
    """config.json of an embedded model, a local folder, or an HF id already in the local cache."""
    from attnbench.models import embedded

    return embedded.resolve(model)[1] or _hf_cached_config(model)


def write_comparison(bench: ServeBench, records: list[Record]) -> None:
    """Terminal table, summary.md and plots; the presentation lives in summary.py / plots.py."""
    try:
        from attnbench.serving import plots, summary
    except ImportError:
        return
    print(summary.comparison_table(records, bench.baseline), flush=True)
    summary.write_summary(bench.result_dir, records, bench.baseline, command=provenance.collect()["command"])
    try:
        plots.write_plots(bench.result_dir, records)
    except Exception as e:  # noqa: BLE001 - a plot must never cost the numbers
        print(f"attnbench: warning: plots not written ({type(e).__name__}: {e})", file=sys.stderr)


def vocab_size(model: str | None, given: int | None, notice=print) -> int:
    """The vocabulary random prompts draw from: --vocab-size, else the model's config, else 10000."""
    if given:
        return given
    cfg = model_config(model) if model else None
    if cfg:
        cfg = cfg.get("text_config", cfg)
        if cfg.get("vocab_size"):
            return int(cfg["vocab_size"])
    notice(f"attnbench: notice: vocabulary size of {model!r} unknown (no readable config.json); "
           "drawing prompt token ids from [0, 10000) — pass --vocab-size to change it")
    return 10_000


def _hf_cached_config(model: str) -> dict | None:
    """config.json from the local Hugging Face cache, never from the network."""
    import json

    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        path = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001 - not a repo id
        return None
    if isinstance(path, str) and Path(path).is_file():
        return json.loads(Path(path).read_text())
    return None


def parse_ints(flag: str, spec: str) -> list[int]:
    try:
        values = [int(x) for x in str(spec).split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, e.g. {flag} 1000,8000 (got {spec!r})") from None
    if not values:
        raise UserError(f"{flag} is empty")
    return values


def parse_shapes(inputs: str, outputs: str) -> list[tuple[int, int]]:
    """--input 1000,8000 --output 1000,1 -> [(1000, 1000), (8000, 1)]; a single value pairs with all."""
    ins, outs = parse_ints("--input", inputs), parse_ints("--output", outputs)
    if len(ins) == 1:
        ins = ins * len(outs)
    if len(outs) == 1:
        outs = outs * len(ins)
    if len(ins) != len(outs):
        raise UserError(f"--input has {len(ins)} values and --output {len(outs)}; give pairs of equal length")
    for i, o in zip(ins, outs):
        Workload(input_len=i, output_len=o)  # validates
    return list(zip(ins, outs))
