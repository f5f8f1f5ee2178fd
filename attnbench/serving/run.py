"""serve-bench: per backend a vLLM server (side by side when the GPU has room) or the given
endpoint; per load shape, unmeasured passes until the server is steady, then `repeats` measured
passes (interleaved across backends when their servers run side by side), each with fresh
prompts; one record per measured pass, one aggregate per (backend, shape), then the comparison."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from attnbench import provenance
from attnbench.backends.registry import Backend
from attnbench.console import Progress, StatusLine
from attnbench.errors import UserError
from attnbench.records.record import Record
from attnbench.serving import client, fleet, metrics, observe, workload
from attnbench.serving.server import ServerSpec
from attnbench.serving.workload import Workload
from attnbench.stats import Spread


@dataclass
class ServeBench:
    """What serve-bench runs. A field here or in Workload whose metadata has a "flag" (one taking a
    value) is also the [serve] scenario key of the field's name, checked when the scenario loads and
    passed as that flag: scenarios/spec.py reads this metadata, so a new flag needs no edit there.
    Besides "flag": "bound", (">=" or ">", n); "type", the scenario value's type where the field's
    differs; "key", the scenario name where the field's differs; "each": True for a repeatable
    flag, one `--flag=v` per item; "choices", the values the flag accepts; "help", the flag's
    --help text; "options", a list of such dicts where one field takes several (each with its
    "default"). The command's signature takes default, help, bound and choices from here
    (attnbench.flags.typer_option)."""
    # (input, output) pairs, run in order against each server
    shapes: list[tuple[int, int]] = field(metadata={"options": (
        {"key": "input", "flag": "--input", "type": int | list[int], "bound": (">=", 1), "default": 1000,
         "help": "Prompt tokens; a list runs each (input, output) pair: 1000,8000."},
        {"key": "output", "flag": "--output", "type": int | list[int], "bound": (">=", 1), "default": 1000,
         "help": "Output tokens per request (exact: ignore_eos + min_tokens): 1000,1."})})
    load: Workload  # everything but the lengths (those come from `shapes`)
    # None with --endpoint: whatever the server serves
    model: str | None = field(default="qwen3-0.6b", metadata={"flag": "--model", "help": (
        "Embedded model name (default qwen3-0.6b, dummy weights), HF id or local path; with --endpoint, the served "
        "model name.")})
    backends: list[Backend] = field(default_factory=list)
    endpoint: str | None = None  # benchmark this server instead of starting vLLM
    endpoint_name: str = "endpoint"
    percentiles: list[float] = field(default_factory=lambda: [50, 90, 99], metadata={
        "flag": "--percentiles", "bound": (">", 0), "help": "Latency percentiles to report."})
    slos_ms: dict[str, float] | None = field(default=None, metadata={
        "key": "goodput", "flag": "--goodput", "type": list[str], "each": True,
        "help": "SLO for goodput, repeatable: ttft:MS, tpot:MS, e2el:MS."})
    serve_args: list[str] = field(default_factory=list, metadata={
        "flag": "--serve-arg", "each": True,
        "help": "Argument passed to `vllm serve`, repeatable: --serve-arg=--max-num-seqs --serve-arg=512."})
    result_dir: Path = Path("results")
    ready_timeout_s: float = field(default=900.0, metadata={"flag": "--ready-timeout", "bound": (">", 0),
                                                            "help": "Seconds to wait for a server to become ready."})
    request_timeout_s: float = field(default=3600.0, metadata={"flag": "--request-timeout", "bound": (">", 0),
                                                               "help": "Seconds before one request counts as failed."})
    workers: int = 0
    baseline: str | None = None
    # measured passes per (backend, shape)
    repeats: int = field(default=3, metadata={"flag": "--repeats", "bound": (">=", 1), "help": (
        "Measured passes per backend and shape (fresh prompts each); means, 95% CIs and ratio CIs over them.")})
    # More passes, in rounds over the backends still short of it, until the 95% CI half-width of
    # output tok/s is at most this fraction of the mean (None: exactly `repeats`), up to max_repeats.
    target_ci: float | None = field(default=None, metadata={"flag": "--target-ci", "bound": (">", 0), "help": (
        "Then more passes, in rounds over the backends still short of it, until the 95% CI half-width of output "
        "tok/s is within this fraction of the mean (e.g. 0.03).")})
    # None: 2 x repeats
    max_repeats: int | None = field(default=None, metadata={"flag": "--max-repeats", "bound": (">=", 1), "help": (
        "With --target-ci: at most this many measured passes per backend and shape (default 2 x --repeats).")})
    parallel_start: bool | None = None  # None: side by side when the GPU has room
    interleave: bool | None = None  # None: whenever servers run side by side
    # steady: two unmeasured passes in a row this close in output tok/s
    warmup_tolerance: float = field(default=0.03, metadata={"flag": "--warmup-tolerance", "bound": (">", 0), "help": (
        "Warm up until two passes in a row agree this closely on output tok/s.")})
    # then measure anyway, and flag it
    max_warmup_passes: int = field(default=5, metadata={"flag": "--max-warmup-passes", "bound": (">=", 1), "help": (
        "At most this many warm-up passes per backend and shape (then measure, flagged as not steady).")})
    keep_flagged: bool = False  # contaminated passes count in means, CIs and ratios
    gpu_memory_gib: float | None = None  # None: nvidia-smi's
    # or "text": random ids decoded with the tokenizer, as vLLM's random dataset
    prompt_format: str = field(default="token-ids", metadata={
        "flag": "--prompt-format", "help": (
            "token-ids (default when attnbench starts vLLM) or text: random ids decoded with the model's tokenizer, "
            "as vLLM's random dataset. With --endpoint the default is token-ids if the server takes them, else text.")})
    # the tokenizer text prompts are made with (default: the model's folder)
    tokenizer: str | None = field(default=None, metadata={"flag": "--tokenizer", "help": (
        "Tokenizer folder (tokenizer.json) for --prompt-format text (default: the model's folder).")})
    # one more pass per backend and shape, part of it recorded by vLLM's torch profiler
    profile_steps: int = field(default=0, metadata={"flag": "--profile-steps", "bound": (">=", 0), "help": (
        "After the measured passes, one more per backend and shape with this many engine steps recorded by vLLM's "
        "torch profiler: GPU time per step of every kernel, beside the other backends' (summary.md). Servers "
        "attnbench starts only.")})
    client_cpus: tuple[int, ...] | None = None  # the load generator's cores (set by run when it starts servers)

    @property
    def repeat_cap(self) -> int:
        """The most measured passes per (backend, shape): max_repeats, else 2 x repeats when a CI
        target asks for more, else repeats."""
        if self.target_ci is None:
            return self.repeats
        return max(self.repeats, self.max_repeats or 2 * self.repeats)


def model_shape(cfg: dict | None, serve_args: list[str]) -> dict | None:
    """The attention layout `attnbench explain` needs, from the model's config.json."""
    if not cfg:
        return None
    cfg = cfg.get("text_config", cfg)
    heads = cfg.get("num_attention_heads")
    given = fleet.flag_value(serve_args, "--block-size")
    block = int(given) if given and given.isdigit() else 16
    return {
        "num_hidden_layers": cfg.get("num_hidden_layers"),
        "num_attention_heads": heads,
        "num_key_value_heads": cfg.get("num_key_value_heads", heads),
        "head_dim": cfg.get("head_dim") or (cfg["hidden_size"] // heads if heads and cfg.get("hidden_size") else None),
        "dtype": str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"),
        "block_size": block,
    }


@dataclass
class Target:
    """One server under test: started by attnbench (`server` set) or named by --endpoint."""
    name: str
    base_url: str
    model: str
    provenance: dict
    server: object | None = None  # the VllmServer, for its log and processes


@dataclass
class Pass:
    """One pass of a load against one target: the client's view and the observer's."""
    results: list[client.RequestResult]
    metrics: dict
    observation: dict  # Observer.close: server-side deltas, GPU and CPU samples, flags, window times
    interrupted: bool = False


def pass_seed(seed: int, load: Workload, kind: str, index: int) -> int:
    """A distinct prompt seed per (shape, warm-up or measured, pass): no prompt repeats across
    passes, so the prefix cache never serves a measured pass from an earlier one (with one seed
    for all shapes, a 1000-token prompt would be the prefix of the 8000-token one)."""
    import numpy as np

    words = [seed, load.input_len, load.output_len, {"warmup": 0, "measured": 1, "profile": 2}[kind], index]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def make_requests(load: Workload, bench: ServeBench, seed: int) -> list[client.Request]:
    """One pass's requests: random token ids, or text made from them with the model's tokenizer."""
    offsets = workload.arrival_offsets(load.num_prompts, load.request_rate, load.burstiness, seed)
    if bench.prompt_format == "text":
        texts = workload.text_prompts(load.num_prompts, load.input_len, _tokenizer(bench), seed)
        return [client.Request(p, load.output_len, t, prompt_len=load.input_len) for p, t in zip(texts, offsets)]
    prompts = workload.prompts(load.num_prompts, load.input_len, load.vocab_size, seed)
    return [client.Request(p, load.output_len, t) for p, t in zip(prompts, offsets)]


_TOKENIZERS: dict[str, object] = {}


def _tokenizer(bench: ServeBench):
    """The tokenizer of text prompts, loaded once: --tokenizer, else the model's local folder."""
    from attnbench.models import embedded

    path = bench.tokenizer
    if path is None and bench.model:
        if bench.model in embedded.EMBEDDED:
            path = str(embedded.materialize(bench.model))
        elif Path(bench.model).is_dir():
            path = bench.model
    if path is None:
        raise UserError("text prompts are made with the model's tokenizer: pass --tokenizer PATH "
                        "(a folder with tokenizer.json), or --prompt-format token-ids")
    if path not in _TOKENIZERS:
        _TOKENIZERS[path] = workload.load_tokenizer(path)
    return _TOKENIZERS[path]


def run_pass(target: Target, load: Workload, bench: ServeBench, seed: int, label: str,
             observer: "observe.Observer") -> Pass:
    """Send one pass (prompts from `seed`) and observe the window it ran in. Ctrl-C: the pass
    comes back with `interrupted` set and what had finished."""
    cfg = client.ClientConfig(base_url=target.base_url, model=target.model, workers=bench.workers,
                              max_concurrency=load.max_concurrency, request_timeout_s=bench.request_timeout_s,
                              cpus=bench.client_cpus)
    requests = make_requests(load, bench, seed)
    bar = Progress(len(requests), label)
    window = observer.open(target)
    interrupted = False
    try:
        results, stats = client.run_with_stats(cfg, requests, progress=bar.set)
    except client.Interrupted as e:
        results, stats, interrupted = e.results, e.stats, True
    finally:
        bar.close()
    m = metrics.compute(results, bench.percentiles, bench.slos_ms)
    client_stats = stats.to_dict() if stats is not None else {}
    if stats is not None:
        client_stats.setdefault("worker_cpu_pct", 100.0 * (stats.cpu_fraction or 0.0))
    obs = observer.close(window, m, client_stats)
    return Pass(results, m, obs, interrupted)


@dataclass
class Warmup:
    """Unmeasured passes of one (target, shape) until two in a row agree."""
    throughputs: list[float] = field(default_factory=list)
    steady: bool = False
    failed: str | None = None  # every request of a pass failed: the shape is not measurable here

    @property
    def done(self) -> bool:
        return self.steady or self.failed is not None

    def to_json(self, cap: int, tolerance: float) -> dict:
        return {"passes": len(self.throughputs), "output_throughputs": [round(x, 1) for x in self.throughputs],
                "steady": self.steady, "capped": not self.steady and self.failed is None and len(self.throughputs) >= cap,
                "tolerance": tolerance, "max_passes": cap}


def agree(a: float, b: float, tolerance: float) -> bool:
    return a > 0 and b > 0 and abs(a - b) <= tolerance * max(a, b)


def warm_up(targets: list[Target], load: Workload, bench: ServeBench, observer) -> dict[str, Warmup]:
    """Round-robin unmeasured passes over the targets not yet steady: a target is steady once two
    consecutive passes agree within `warmup_tolerance` on output throughput; at most
    `max_warmup_passes` (then it is measured anyway and its records say the cap was hit)."""
    state = {t.name: Warmup() for t in targets}
    if not load.warmup or bench.max_warmup_passes <= 0:
        for w in state.values():
            w.steady = True
        return state
    wload = replace(load, num_prompts=load.warmup)
    k = 0
    while any(not w.done and len(w.throughputs) < bench.max_warmup_passes for w in state.values()):
        for t in targets:
            w = state[t.name]
            if w.done or len(w.throughputs) >= bench.max_warmup_passes:
                continue
            label = f"[{t.name}] {load.input_len}:{load.output_len} warm-up {len(w.throughputs) + 1}"
            p = run_pass(t, wload, bench, pass_seed(load.seed, load, "warmup", k), label, observer)
            if p.interrupted:
                raise KeyboardInterrupt
            if p.metrics["completed"] == 0:
                first = next((r.error for r in p.results if r.error), "?")
                w.failed = f"every request of the warm-up pass failed; first error: {first}"
                continue
            w.throughputs.append(p.metrics["output_throughput"])
            if len(w.throughputs) >= 2 and agree(w.throughputs[-1], w.throughputs[-2], bench.warmup_tolerance):
                w.steady = True
        k += 1
    for t in targets:
        w = state[t.name]
        if w.throughputs:
            how = "steady" if w.steady else f"NOT steady after {len(w.throughputs)} (the cap)"
            print(f"attnbench: [{t.name}] {load.input_len}:{load.output_len} warm-up: {how}; output tok/s "
                  + ", ".join(f"{x:.0f}" for x in w.throughputs), file=sys.stderr, flush=True)
    return state


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
        "retries": [r.retries for r in results],
        "timeline": metrics.timeline(results),
        "inflight": metrics.inflight(results),
    }


def _scenario(bench: ServeBench, load: Workload, target: Target | None, shape: dict | None) -> dict:
    return {
        "input_len": load.input_len, "output_len": load.output_len, "num_prompts": load.num_prompts,
        "request_rate": None if math.isinf(load.request_rate) else load.request_rate,
        "burstiness": load.burstiness, "max_concurrency": load.max_concurrency, "seed": load.seed,
        "warmup": load.warmup, "vocab_size": load.vocab_size, "model": bench.model,
        "served_model": target.model if target else None,
        "endpoint": bench.endpoint, "serve_args": bench.serve_args, "percentiles": bench.percentiles,
        "slos_ms": bench.slos_ms, "model_shape": shape, "prompt_format": bench.prompt_format,
        # the frontend changes what the client measures (docs/serving-noise.md): part of what ran
        "api_server_count": None if bench.endpoint else fleet.api_server_count(bench.serve_args),
    }


def record_name(input_len: int, output_len: int, repeat: int | None = None) -> str:
    """serve-INxOUT-rR.json for a measured pass, serve-INxOUT.json for the aggregate (or a failure)."""
    return f"serve-{input_len}x{output_len}" + (f"-r{repeat}.json" if repeat is not None else ".json")


def record_path(result_dir: Path, backend: str, input_len: int, output_len: int, repeat: int | None = None) -> Path:
    return result_dir / backend / record_name(input_len, output_len, repeat)


def _pass_record(bench: ServeBench, target: Target, load: Workload, shape: dict | None, p: Pass,
                 repeat: int, seed: int, warm: Warmup, how: dict) -> Record:
    scenario = {**_scenario(bench, load, target, shape), "seed": seed, "repeat": repeat,
                "repeats": bench.repeats, **how}
    if bench.target_ci is not None:
        scenario.update(target_ci=bench.target_ci, max_repeats=bench.repeat_cap)
    rec = Record(kind="serve", backend=target.name, scenario=scenario, provenance=target.provenance,
                 metrics=p.metrics, samples=samples(p.results))
    rec.samples["observation"] = p.observation
    rec.samples["warmup_passes"] = warm.to_json(bench.max_warmup_passes, bench.warmup_tolerance)
    if p.interrupted:
        rec.status = "failed"
        rec.error = "interrupted (Ctrl-C, or a time limit that stops the run as Ctrl-C does); completed requests kept"
    elif p.metrics["completed"] == 0:
        first = next((r.error for r in p.results if r.error), "?")
        rec.status, rec.error = "failed", f"every request failed; first error: {first}"
    elif p.metrics["failed"]:
        rec.error = lost_requests(p.results)  # the figures cover only the requests that finished
    return rec


def lost_requests(results: list[client.RequestResult]) -> str:
    """'3 of 256 requests failed (ServerDisconnectedError x2, HTTP 500 x1); figures cover the 253 that finished'."""
    failed = [r.error for r in results if r.error]
    kinds = Counter(e.split(":")[0].strip() or "error" for e in failed)
    what = ", ".join(f"{k} x{n}" for k, n in kinds.most_common())
    return (f"{len(failed)} of {len(results)} requests failed ({what}); "
            f"figures cover the {len(results) - len(failed)} that finished")


def measure_shape(targets: list[Target], load: Workload, bench: ServeBench, shape: dict | None,
                  interleave: bool, how: dict, observer, records: list[Record]) -> list[Target]:
    """Warm every target up, then the measured passes: round r of every target before round r+1
    when interleaved (A B, A B, ...), else all of A's repeats, then B's. Returns the targets
    measured (those whose warm-up did not fail)."""
    warm = warm_up(targets, load, bench, observer)
    live = []
    for t in targets:
        if warm[t.name].failed:
            rec = Record(kind="serve", backend=t.name, status="failed", error=warm[t.name].failed,
                         scenario={**_scenario(bench, load, t, shape), **how}, provenance=t.provenance)
            rec.save(record_path(bench.result_dir, t.name, load.input_len, load.output_len))
            records.append(rec)
            print(f"attnbench: {t.name} {load.input_len}:{load.output_len}: {warm[t.name].failed}; "
                  "shape skipped", file=sys.stderr)
        else:
            live.append(t)
    order = ([(r, t) for r in range(bench.repeats) for t in live] if interleave
             else [(r, t) for t in live for r in range(bench.repeats)])
    mine: dict[str, list[Record]] = {t.name: [] for t in live}
    for r, t in order:
        mine[t.name].append(_measured_pass(t, r, load, bench, shape, warm[t.name], how, observer, records))
    if bench.target_ci is None:
        return live
    for r in range(bench.repeats, bench.repeat_cap):  # rounds over the backends still too noisy
        short = [t for t in live if not precise_enough(mine[t.name], bench.target_ci, bench.keep_flagged)]
        if not short:
            break
        for t in short:
            mine[t.name].append(_measured_pass(t, r, load, bench, shape, warm[t.name], how, observer, records))
    for t in live:
        s = throughput_spread(mine[t.name], bench.keep_flagged)
        print(f"attnbench: [{t.name}] {load.input_len}:{load.output_len}: {len(mine[t.name])} measured passes, "
              f"output tok/s ±{s.half_width_pct:.1f}% (95% CI); target ±{100 * bench.target_ci:g}% "
              + ("met" if s.within(bench.target_ci) else f"NOT met (the cap, --max-repeats {bench.repeat_cap})"),
              file=sys.stderr, flush=True)
    return live


def throughput_spread(passes: list[Record], keep_flagged: bool = False) -> Spread:
    """Output tok/s over the passes of one backend and shape that count, as their aggregate
    counts them (ok, and unflagged unless keep_flagged)."""
    from attnbench.records import kinds
    from attnbench.serving import aggregate

    return aggregate.Group(kinds.key(passes[0]), passes, keep_flagged).spread("output_throughput")


def precise_enough(passes: list[Record], target: float, keep_flagged: bool = False) -> bool:
    """Whether the 95% CI half-width of output tok/s over the passes that count is at most
    `target` of their mean; two passes are the least."""
    return bool(passes) and throughput_spread(passes, keep_flagged).within(target)


def _measured_pass(t: Target, r: int, load: Workload, bench: ServeBench, shape: dict | None, warm: Warmup,
                   how: dict, observer, records: list[Record]) -> Record:
    """Measured pass r of one target: run, save, print vLLM's block (Ctrl-C: saved, then raised)."""
    seed = pass_seed(load.seed, load, "measured", r)
    of = bench.repeats if bench.target_ci is None else f"{bench.repeats}-{bench.repeat_cap}"
    label = f"[{t.name}] {load.input_len}:{load.output_len} run {r + 1}/{of}"
    p = run_pass(t, load, bench, seed, label, observer)
    rec = _pass_record(bench, t, load, shape, p, r, seed, warm, how)
    rec.save(record_path(bench.result_dir, t.name, load.input_len, load.output_len, r))
    records.append(rec)
    if p.interrupted:
        raise KeyboardInterrupt
    print(metrics.format_block(rec.metrics, load.max_concurrency, bench.percentiles,
                               title=f" {t.name} {load.input_len}:{load.output_len} run {r + 1} "), flush=True)
    if rec.error:
        first = next(e for e in rec.samples["errors"] if e)
        print(f"attnbench: {t.name}: {rec.error}; first: {first}", file=sys.stderr)
    return rec


def measure(targets: list[Target], bench: ServeBench, shape: dict | None, interleave: bool, how: dict,
            observer, records: list[Record]) -> None:
    for input_len, output_len in bench.shapes:
        load = replace(bench.load, input_len=input_len, output_len=output_len)
        live = measure_shape(targets, load, bench, shape, interleave, how, observer, records)
        if bench.profile_steps:
            for t in live:
                profile_pass(t, load, bench, shape, how, observer, records)


def profile_dir(result_dir: Path, backend: str) -> Path:
    """Where a server attnbench starts writes its torch-profiler traces."""
    return result_dir / backend / "profile"


def profile_pass(t: Target, load: Workload, bench: ServeBench, shape: dict | None, how: dict, observer,
                 records: list[Record]) -> None:
    """One unmeasured pass between /start_profile and /stop_profile, then its trace read into a
    `profile` record (BACKEND/profile-INxOUT.json). A profile that fails is a notice, never a
    failed run."""
    from attnbench.serving import profile

    folder = profile_dir(bench.result_dir, t.name)
    before = set(profile.traces(folder))
    label = f"[{t.name}] {load.input_len}:{load.output_len} profile"
    if (why := profile.start(t.base_url)) is not None:
        print(f"attnbench: notice: {label}: /start_profile failed ({why}); no profile", file=sys.stderr)
        return
    p = run_pass(t, load, bench, pass_seed(load.seed, load, "profile", 0), label, observer)
    stopped = profile.stop(t.base_url)
    if p.interrupted:
        raise KeyboardInterrupt
    trace = profile.wait_for_trace(folder, before)
    if trace is None:
        print(f"attnbench: notice: {label}: no trace appeared in {folder}"
              + (f" (/stop_profile: {stopped})" if stopped else ""), file=sys.stderr)
        return
    try:
        prof = profile.read_trace(trace, bench.profile_steps)
    except (OSError, ValueError) as e:
        print(f"attnbench: notice: {label}: trace unreadable ({e})", file=sys.stderr)
        return
    scenario = {**_scenario(bench, load, t, shape), **how, "profile_steps": bench.profile_steps,
                "profile_delay_steps": profile.DELAY_STEPS}
    rec = Record(kind="profile", backend=t.name, scenario=scenario, provenance=t.provenance,
                 metrics={**prof.metrics(), "output_throughput": p.metrics.get("output_throughput")},
                 samples={**prof.samples(), "trace": str(trace.relative_to(bench.result_dir))})
    rec.save(bench.result_dir / t.name / f"profile-{load.input_len}x{load.output_len}.json")
    records.append(rec)
    print(f"attnbench: [{t.name}] {load.input_len}:{load.output_len}: {prof.steps} steps profiled, "
          f"{prof.kernel_us_per_step:.0f} us of GPU kernels per step", file=sys.stderr, flush=True)


def _failed_start(bench: ServeBench, backend: Backend, e, shape: dict | None, prov: dict,
                  log_path: Path, records: list[Record]) -> None:
    print(f"attnbench: {e.reason}; log: {log_path}", file=sys.stderr)
    for line in e.log_tail[-8:]:
        print(f"    {line}", file=sys.stderr)
    for input_len, output_len in bench.shapes:
        load = replace(bench.load, input_len=input_len, output_len=output_len)
        rec = Record(kind="serve", backend=backend.name, status="failed", error=e.reason,
                     scenario=_scenario(bench, load, None, shape), provenance=prov,
                     samples={"server_log_tail": e.log_tail})
        rec.save(record_path(bench.result_dir, backend.name, input_len, output_len))
        records.append(rec)


def tokens_in_flight(bench: ServeBench) -> int:
    """Most tokens (prompt + output) the load needs in the KV cache at once, over the shapes
    (fleet.tokens_in_flight says how a one-token shape counts)."""
    n = min(bench.load.num_prompts, bench.load.max_concurrency or bench.load.num_prompts)
    return fleet.tokens_in_flight(n, bench.shapes)


def server_spec(model: str, backend: Backend, serve_args: list[str], log_path: Path, memory_share: float | None,
                ready_timeout_s: float, cpus: tuple[int, ...] | None, label: str | None = None,
                kv_cache_gib: float | None = None, profile: tuple[Path, int] | None = None) -> ServerSpec:
    """The server serve-bench starts for one backend (also the one a scenario's [servers] starts):
    its share of the GPU's memory (and KV cache, side by side), dummy weights for an embedded model,
    vLLM's frontend spread over API-server processes unless `serve_args` say how many, vLLM's torch
    profiler where `profile` is (trace folder, steps), then `serve_args`."""
    from attnbench.models import embedded
    from attnbench.serving import profile as step_profile

    served_path, _ = embedded.resolve(model)
    extra = [*fleet.memory_args(memory_share, serve_args, kv_cache_gib=kv_cache_gib),
             *fleet.server_args(model, embedded.EMBEDDED),
             *fleet.frontend_args(serve_args), *(step_profile.server_args(*profile) if profile else ()), *serve_args]
    return ServerSpec(model=served_path, backend=backend, served_model_name=model, log_path=log_path,
                      extra_args=extra, ready_timeout_s=ready_timeout_s, cpus=cpus, label=label)


def run(bench: ServeBench) -> list[Record]:
    """Everything `attnbench serve-bench` does after parsing flags; returns the records written."""
    from attnbench.models import embedded
    from attnbench.serving import endpoint as ep

    records: list[Record] = []
    bench.result_dir.mkdir(parents=True, exist_ok=True)
    observer = observe.Observer()
    run_id = f"{provenance.utc_now()}-{os.getpid()}"  # ties the records of this invocation together
    try:
        if bench.endpoint:
            base_url = ep.normalize(bench.endpoint)
            served = ep.pick_model(base_url, bench.model)
            cfg = model_config(bench.model) if bench.model else None
            prov = provenance.collect({"server": base_url, "started_by_attnbench": False, "run_id": run_id,
                                       "server_description": ep.describe(base_url, served)})
            how = {"interleaved": False, "side_by_side": False, "layout": "one running server (--endpoint)"}
            measure([Target(bench.endpoint_name, base_url, served, prov)], bench,
                    model_shape(cfg, bench.serve_args), False, how, observer, records)
            return records
        _, cfg = embedded.resolve(bench.model)
        frontend = fleet.frontend_args(bench.serve_args)
        shape = model_shape(cfg, bench.serve_args)
        total = bench.gpu_memory_gib if bench.gpu_memory_gib is not None else fleet.gpu_memory_gib()
        layout = fleet.plan(bench.backends, fleet.need_gib(cfg, shape, tokens_in_flight(bench)), total,
                            bench.parallel_start, bench.serve_args, resident_gib=fleet.resident_gib(cfg))
        if why := fleet.unmet(layout, bench.parallel_start):
            print(f"attnbench: notice: {why}", file=sys.stderr)
        interleave = layout.side_by_side if bench.interleave is None else (bench.interleave and layout.side_by_side)
        if bench.interleave and not layout.side_by_side:
            print("attnbench: notice: --interleave needs servers side by side; measuring one server at a time",
                  file=sys.stderr)
        server_cpus, client_cpus = fleet.cpu_split()
        reason = layout.reason + (f"; {frontend[-1]} vLLM API-server processes each (--serve-arg=--api-server-count=N "
                                  "overrides)" if frontend else "")
        how = {"interleaved": interleave, "side_by_side": layout.side_by_side, "layout": reason,
               "client_cpus": list(client_cpus) if client_cpus else None}
        print(f"attnbench: {reason}; measured passes {'interleaved' if interleave else 'one server at a time'}",
              file=sys.stderr, flush=True)
        bench.client_cpus = client_cpus
        for w, wave in enumerate(layout.waves):
            specs = [server_spec(bench.model, b, bench.serve_args, bench.result_dir / b.name / "server.log",
                                 layout.memory_share, bench.ready_timeout_s, server_cpus,
                                 kv_cache_gib=layout.kv_cache_gib,
                                 profile=(profile_dir(bench.result_dir, b.name), bench.profile_steps)
                                 if bench.profile_steps else None) for b in wave]
            alone = fleet.first_alone(specs)
            wave_how = {**how, "wave": w}
            if alone:
                note = ("vLLM's compile cache is empty (a fresh machine): the first server starts alone until it "
                        "has taken its memory, so the others find the kernels its warm-up JIT-compiles")
                wave_how["layout"] = f"{reason}; {note}"
                print(f"attnbench: {note}", file=sys.stderr, flush=True)
            status = StatusLine(every_s=30.0)
            t_start = time.monotonic()
            with fleet.running(specs, status, lead_alone=alone) as servers:
                status.done(f"[{', '.join(b.name for b in wave)}] started in {time.monotonic() - t_start:.0f} s")
                targets = []
                for b, spec, s in zip(wave, specs, servers):
                    prov = provenance.collect({"started_by_attnbench": True, "run_id": run_id})
                    if isinstance(s, fleet.ServerFailed):
                        _failed_start(bench, b, s, shape, prov, spec.log_path, records)
                        continue
                    prov["server_command"] = " ".join(s.command())
                    targets.append(Target(b.name, s.base_url, s.model_name, prov, s))
                # the wave says which passes ran next to each other (paired ratios)
                measure(targets, bench, shape, interleave, wave_how, observer, records)
    finally:
        observer.stop()
        if records:
            finish(bench, records)
    return records


def finish(bench: ServeBench, records: list[Record]) -> None:
    """Flags that need the whole run, aggregates, then the comparison."""
    passes = [r for r in records if r.kind == "serve" and r.scenario.get("repeat") is not None]
    settle([(r, record_path(bench.result_dir, r.backend, r.scenario["input_len"], r.scenario["output_len"],
                            r.scenario["repeat"])) for r in passes], bench.keep_flagged)
    write_comparison(bench.result_dir, records, bench.baseline, bench.keep_flagged, provenance.collect()["command"])


def settle(passes: list[tuple[Record, Path]], keep_flagged: bool) -> None:
    """What follows from a run's passes as a whole, written beside them: the flags that compare a
    pass with the others (clock dips; a pass whose flags change is saved again) and the aggregate
    of each backend and shape."""
    from attnbench.serving import aggregate

    before = [json.dumps(r.samples.get("observation"), sort_keys=True) for r, _ in passes]
    if observe.reflag_clocks([r for r, _ in passes]):
        for (r, path), old in zip(passes, before):
            if json.dumps(r.samples.get("observation"), sort_keys=True) != old:
                r.save(path)
    folders = {(r.backend, r.scenario["input_len"], r.scenario["output_len"]): path.parent for r, path in passes}
    for agg in aggregate.aggregates([r for r, _ in passes], keep_flagged):
        s = agg.scenario
        folder = folders[(agg.backend, s["input_len"], s["output_len"])]
        agg.save(folder / record_name(s["input_len"], s["output_len"]))


def summarize(result_dir: Path, baseline: str | None = None, keep_flagged: bool = False) -> list[Record]:
    """The comparison of a finished (or cut short) run again, from its records alone."""
    from attnbench.records import record as store

    scanned = store.scan([result_dir])[0]
    found = [f for f in scanned if f.record.kind == "serve"]
    records = [f.record for f in found]
    profiles = [f.record for f in scanned if f.record.kind == "profile"]
    if not records:
        raise UserError(f"{result_dir}: no serve records here; pass a serve-bench result folder")
    per_file = Counter(f.path for f in found)  # a file of several records is left as it is
    settle([(f.record, f.path) for f in found if f.record.scenario.get("repeat") is not None
            and per_file[f.path] == 1], keep_flagged)
    command = next((r.provenance.get("command") for r in records if r.provenance.get("command")), None)
    write_comparison(result_dir, records + profiles, baseline, keep_flagged, command)
    return records


def model_config(model: str) -> dict | None:
    """config.json of an embedded model, a local folder, or an HF id already in the local cache."""
    from attnbench.models import embedded

    return embedded.resolve(model)[1] or _hf_cached_config(model)


def write_comparison(result_dir: Path, records: list[Record], baseline: str | None, keep_flagged: bool,
                     command: str | None) -> None:
    """Terminal table, summary.md and plots; the presentation lives in summary.py / plots.py."""
    from attnbench.serving import plots, summary

    print(summary.table(records, baseline, keep_flagged), flush=True)
    summary.write_summary(result_dir, records, baseline, command=command, keep_flagged=keep_flagged)
    try:
        plots.write_plots(result_dir, records)
    except Exception as e:  # noqa: BLE001 - a plot must never cost the numbers
        print(f"attnbench: warning: plots not written ({type(e).__name__}: {e})", file=sys.stderr)


def vocab_size(model: str | None, given: int | None, notice=print, base_url: str | None = None) -> int:
    """The vocabulary random prompts draw from: --vocab-size, else what the model's config, a local
    GGUF file or the server says, else 10000 with a notice."""
    if given:
        return given
    size, _ = workload.detect_vocab_size(model, base_url, config=model_config(model) if model else None)
    if size:
        return int(size)
    notice(f"attnbench: notice: vocabulary size of {model!r} unknown (no readable config.json, GGUF file or "
           "server metadata); drawing prompt token ids from [100, 10000) — pass --vocab-size to change it")
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
