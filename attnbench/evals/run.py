"""`attnbench gpqa` end to end: load the questions, ask them through one running endpoint or one
vLLM server per backend (side by side when the GPU has room; resuming from the cache when the
server is the same), grade, and write per backend a record and the conversation report, then
across backends summary.md, comparison.json and a plot. `reuse` and `ask` take any types.Eval: the cache and the failure
rule are the same for every eval."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench import atomic, stats
from attnbench.evals import gpqa
from attnbench.evals.cache import KEY_FIELDS, Cache, key, server_key
from attnbench.evals.grader import GRADERS
from attnbench.evals.sampler import APIS, EFFORTS, MAX_TOKENS
from attnbench.evals.types import Eval, Sampler, SamplerResponse, SingleEvalResult, prompt_sha, user
from attnbench.records.record import Record

DEFAULT_MODEL = "openai/gpt-oss-20b"
# chat completions on vLLM refuse prompt + max_tokens beyond the model length (the responses API
# clamps instead): leave room for a GPQA prompt, all of which are far shorter (half the model
# length at most, for small test models)
CHAT_PROMPT_ALLOWANCE = 4096


@dataclass
class GPQARun:
    """What `attnbench gpqa` runs. A field whose metadata has a "flag" is also the [gpqa] scenario
    key of its name, checked when the scenario loads, and the option of `attnbench gpqa`
    (metadata as serving.run.ServeBench says)."""
    result_dir: Path
    dataset: str = field(default="diamond", metadata={"flag": "--dataset", "help": (
        "diamond|main|extended (OpenAI's public simple-evals CSV, as the reference reads it), "
        "hub:diamond|main|extended|experts (the Hugging Face copy, gated: needs HF_TOKEN), mini (20 made-up "
        "questions), or a local .csv/.jsonl with GPQA's columns.")})
    # a scenario's list of efforts is one run per effort
    effort: str = field(default="low", metadata={
        "flag": "--effort", "type": str | list[str], "choices": EFFORTS,
        "help": "Reasoning effort: low, medium, high, or none (send no effort: for servers without reasoning). "
                "Never dropped: a request the server refuses (HTTP 400) scores 0, as in the reference, and is counted."})
    api: str = field(default="responses", metadata={
        "flag": "--api", "choices": APIS,
        "help": "responses (/v1/responses, as the reference) or chat (/v1/chat/completions)."})
    repeats: int = field(default=8, metadata={
        "flag": "--repeats", "bound": (">=", 1),
        "help": "Times each question is asked (with a fresh option order each time)."})
    concurrency: int = field(default=64, metadata={"flag": "--concurrency", "bound": (">=", 1),
                                                   "help": "Requests in flight at most."})
    max_tokens: int = field(default=MAX_TOKENS, metadata={
        "flag": "--max-tokens", "bound": (">=", 1),
        "help": "Output token limit per answer (the reference's), capped by the server's max model length "
                "(with a notice)."})
    temperature: float = field(default=1.0, metadata={"flag": "--temperature", "bound": (">=", 0),
                                                      "help": "Sampling temperature (the reference's default)."})
    limit: int | None = field(default=None, metadata={
        "flag": "--limit", "bound": (">=", 1),
        "help": "Ask only this many questions (drawn with the seed, as the reference does)."})
    seed: int = field(default=0, metadata={
        "flag": "--seed", "help": "Seed of the question subset and the option shuffling (the reference uses 0)."})
    # with an endpoint: None takes the server's model
    model: str | None = field(default=None, metadata={
        "flag": "--model", "help": "Model: with --endpoint the served name (default: the server's); with --backends "
                                   "what vLLM loads (default openai/gpt-oss-20b)."})
    endpoint: str | None = None
    name: str = "endpoint"  # the backend name an endpoint's record carries
    backends: list[Any] = field(default_factory=list)  # registry.Backend
    serve_args: list[str] = field(default_factory=list, metadata={
        "flag": "--serve-arg", "each": True,
        "help": "Argument passed to `vllm serve`, repeatable: --serve-arg=--max-model-len --serve-arg=8192."})
    request_timeout_s: float = field(default=3600.0, metadata={
        "flag": "--request-timeout", "bound": (">", 0), "help": "Seconds before one request attempt counts as failed."})
    # total time one sample may spend on retries before it counts as failed
    retry_time_s: float = field(default=7200.0, metadata={
        "flag": "--retry-time", "bound": (">=", 0),
        "help": "Seconds one sample may spend retrying 429/5xx/timeouts (exponential backoff) before it counts as "
                "failed (and wrong)."})
    backoff_s: float = 1.0
    # chat: times an empty final content is asked again
    empty_resamples: int = field(default=4, metadata={
        "flag": "--empty-resamples", "bound": (">=", 0),
        "help": "--api chat: times an answer with empty content is asked again (the reference asks until it is "
                "not empty)."})
    grader: str = field(default="reference", metadata={
        "flag": "--grader", "choices": GRADERS,
        "help": "reference (awards exactly what gpt-oss's extract_abcd awards) or lenient (also bare lowercase "
                "letters such as 'c'; recorded)."})
    ready_timeout_s: float = field(default=900.0, metadata={
        "flag": "--ready-timeout", "bound": (">", 0), "help": "Seconds to wait for a started server to become ready."})
    parallel_start: bool | None = None  # None: the backends' servers side by side when the GPU has room


@dataclass
class Server:
    """Where to ask and what is known about the server answering (its identity keys the cache)."""
    label: str  # the backend name records carry
    target: str
    base_url: str | None
    model: str
    identity: dict[str, Any]
    max_model_len: int | None = None

    @property
    def key(self) -> str:
        return server_key(self.identity)

    def describe(self) -> str:
        return ", ".join(f"{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in self.identity.items()
                         if v not in (None, [], ""))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(cfg: GPQARun, notice: Callable[[str], None] = _say) -> list[Record]:
    from attnbench.errors import UserError

    if cfg.grader not in GRADERS:
        raise UserError(f"--grader {cfg.grader!r}: use reference (as gpt-oss scores) or lenient")
    if cfg.concurrency < 1:
        raise UserError(f"--concurrency must be >= 1 (got {cfg.concurrency})")
    questions = gpqa.load(cfg.dataset)
    ev = gpqa.GPQAEval(gpqa.make_samples(questions, cfg.repeats, cfg.seed, cfg.limit), cfg.grader)
    cfg.result_dir.mkdir(parents=True, exist_ok=True)
    records: list[Record] = []
    with Cache(cfg.result_dir / "cache.jsonl") as cache:
        try:
            if cfg.endpoint:
                from attnbench.serving import endpoint

                base_url = endpoint.normalize(cfg.endpoint)
                model = endpoint.pick_model(base_url, cfg.model)
                card, version = probe(base_url, model)
                identity = {"url": base_url, "model": model, "root": card.get("root"),
                            "max_model_len": card.get("max_model_len"), "vllm": version}
                server = Server(cfg.name, f"{base_url}|{model}", base_url, model, identity, card.get("max_model_len"))
                records.append(_evaluate(cfg, ev, cache, server, notice))
            else:
                serve_and_evaluate(cfg, ev, cache, records, notice)
        finally:
            if records:
                from attnbench.evals import summary

                shown = summary.with_earlier_runs(cfg, records)  # comparable earlier runs too
                diffs = summary.comparisons(shown, cfg.seed)
                summary.write_comparison(cfg, diffs)
                summary.write_plots(cfg, shown)
                summary.write_summary(cfg, shown, diffs)
    return records


def probe(base_url: str, model: str) -> tuple[dict[str, Any], str | None]:
    """(the model's card from GET /v1/models, vLLM's version from GET /version), each as far
    as the server tells: vLLM's card carries max_model_len and root (the checkpoint loaded)."""
    def get(url: str) -> Any:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    models = get(f"{base_url}/models") or {}
    card = next((m for m in models.get("data") or [] if isinstance(m, dict) and m.get("id") == model), {})
    version = get(base_url.removesuffix("/v1") + "/version")
    return card, version.get("version") if isinstance(version, dict) else None


def _started_identity(cfg: GPQARun, backend, model: str) -> dict[str, Any]:
    """What is known before vLLM starts: model, revision, backend, serve args, vLLM version."""
    from importlib import metadata

    try:
        version = metadata.version("vllm")
    except metadata.PackageNotFoundError:
        version = None
    args = list(cfg.serve_args)
    revision = next((a.split("=", 1)[1] for a in args if a.startswith("--revision=")), None)
    if "--revision" in args and args.index("--revision") + 1 < len(args):
        revision = args[args.index("--revision") + 1]
    return {"model": model, "revision": revision, "backend": backend.name, "serve_args": args, "vllm": version}


def memory_need(cfg: GPQARun, n_samples: int) -> float | None:
    """GiB one server needs for the load gpqa sends: `concurrency` requests in flight, each at
    most a prompt allowance plus the output tokens sent (both within the model length), counted
    as serve-bench counts a load; None when the model's config is not at hand."""
    from attnbench.serving import fleet
    from attnbench.serving.run import model_config, model_shape

    model_cfg = model_config(cfg.model or DEFAULT_MODEL)
    text = (model_cfg or {}).get("text_config", model_cfg or {})
    given = fleet.flag_value(list(cfg.serve_args), "--max-model-len")
    length = int(given) if given and given.isdigit() else text.get("max_position_embeddings")
    prompt = min(CHAT_PROMPT_ALLOWANCE, length // 2) if length else CHAT_PROMPT_ALLOWANCE
    out = min(cfg.max_tokens, length - prompt) if length else cfg.max_tokens
    n = min(n_samples, cfg.concurrency)
    return fleet.need_gib(model_cfg, model_shape(model_cfg, cfg.serve_args),
                          fleet.tokens_in_flight(n, [(prompt, max(out, 1))]))


def serve_and_evaluate(cfg: GPQARun, ev: Eval, cache: Cache, records: list[Record], notice) -> None:
    """--backends: every backend's server side by side in as few waves as the GPU's memory allows
    (serving.fleet; a backend whose answers are all cached needs none), each backend asked through
    its own, one after another; a record per backend, in backend order, all in one folder."""
    from attnbench.console import StatusLine
    from attnbench.serving import fleet
    from attnbench.serving.server import ServerFailed, ServerSpec

    model = cfg.model or DEFAULT_MODEL
    servers = {b.name: Server(b.name, f"vllm:{model}", None, model, _started_identity(cfg, b, model))
               for b in cfg.backends}
    out: dict[str, Record] = {}
    started = []
    for b in cfg.backends:
        base = _base(cfg, servers[b.name])
        if all(_cached(cache, base, s) is not None for s in ev.samples):  # all cached: no server needed
            out[b.name] = _evaluate(cfg, ev, cache, servers[b.name], notice)
        else:
            started.append(b)
    total = fleet.gpu_memory_gib()  # $ATTNBENCH_GPU_MEMORY_GIB, else nvidia-smi's
    plan = fleet.plan(started, memory_need(cfg, len(ev.samples)), total, cfg.parallel_start, cfg.serve_args)
    if started:
        if why := fleet.unmet(plan, cfg.parallel_start):
            notice(f"attnbench: notice: {why}")
        notice(f"attnbench: {plan.reason}" + ("; the backends of a wave are asked one after another"
                                              if plan.side_by_side else ""))
    try:
        for wave in plan.waves:
            specs = [ServerSpec(model=model, backend=b, log_path=cfg.result_dir / b.name / "server.log",
                                extra_args=[*fleet.memory_args(plan.memory_share), *cfg.serve_args],
                                ready_timeout_s=cfg.ready_timeout_s)
                     for b in wave]
            status = StatusLine(stream=sys.stderr)
            with fleet.running(specs, status) as up:
                status.done()
                for b, spec, s in zip(wave, specs, up):
                    server = servers[b.name]
                    if isinstance(s, ServerFailed):
                        notice(f"attnbench: {s.reason}; log: {spec.log_path}")
                        out[b.name] = make_record(cfg, server, ev.samples, {}, time.monotonic(), status="failed",
                                                  error=f"{s.reason}: " + " | ".join(s.log_tail[-5:]))
                        save_record(cfg, out[b.name], ev.samples, {})
                        continue
                    server.base_url, server.model = s.base_url, s.model_name
                    server.max_model_len = probe(s.base_url, s.model_name)[0].get("max_model_len")
                    out[b.name] = _evaluate(cfg, ev, cache, server, notice)
    finally:
        records += [out[b.name] for b in cfg.backends if b.name in out]


def max_tokens_sent(cfg: GPQARun, max_model_len: int | None) -> int:
    """--max-tokens, capped by what the server can produce after a prompt."""
    if not max_model_len:
        return cfg.max_tokens
    room = min(CHAT_PROMPT_ALLOWANCE, max_model_len // 2) if cfg.api == "chat" else 0
    return min(cfg.max_tokens, max_model_len - room)


def _base(cfg: GPQARun, server: Server) -> dict[str, Any]:
    return {"target": server.target, "backend": server.label, "effort": cfg.effort, "api": cfg.api,
            "max_tokens": cfg.max_tokens, "temperature": cfg.temperature, "server": server.key}


def _cached(cache: Cache, base: dict[str, Any], sample) -> dict | None:
    """The cached row for this sample when it was asked with the same prompt and the same
    settings (every field of `base`) of the same server."""
    return cache.get(key({**base, "question_id": sample.id, "repeat": sample.repeat}),
                     prompt_sha=prompt_sha(sample.prompt), **{k: v for k, v in base.items() if k not in KEY_FIELDS})


def reuse(ev: Eval, cache: Cache, base: dict[str, Any]) -> tuple[dict[tuple, dict], list]:
    """(the rows the cache holds for ev's samples, graded again by ev so that a grader change
    needs no request; the samples it has no answer for)."""
    rows: dict[tuple, dict] = {}
    todo = []
    for s in ev.samples:
        row = _cached(cache, base, s)
        if row is None:
            todo.append(s)
        else:
            rows[(s.id, s.repeat)] = {**row, **ev.result(s, SamplerResponse.from_row(row, user(s.prompt))).row()}
    return rows, todo


def ask(ev: Eval, sampler: Sampler, todo: list, base: dict[str, Any], cache: Cache, rows: dict[tuple, dict],
        concurrency: int, extra: dict[str, Any] | None = None, on_row: Callable[[dict], None] | None = None) -> None:
    """Asks `todo` through ev and `sampler`; each row (`base`, the sample's result, then `extra`)
    is kept as it arrives: in `rows`, so an interrupted run keeps what came, and in the cache
    unless it failed (a re-run asks a failure again)."""
    def keep(result: SingleEvalResult) -> None:
        row = {**base, **result.row(), **(extra or {})}
        rows[(result.sample.id, result.sample.repeat)] = row
        if row["outcome"] != "failed":
            cache.append(row)
        if on_row:
            on_row(row)

    asyncio.run(ev(sampler, todo, keep, concurrency))


def _evaluate(cfg: GPQARun, ev: Eval, cache: Cache, server: Server, notice) -> Record:
    from attnbench.console import Progress
    from attnbench.evals import sampler as sampler_mod

    label = server.label
    samples = ev.samples
    base = _base(cfg, server)
    rows, todo = reuse(ev, cache, base)
    if rows:
        notice(f"attnbench: {label}: reusing {len(rows)} of {len(samples)} answers from {cache.path} "
               f"(server: {server.describe()}); asking {len(todo)}")
    t0 = time.monotonic()
    if todo:
        sent = max_tokens_sent(cfg, server.max_model_len)
        if sent != cfg.max_tokens:
            notice(f"attnbench: {label}: max tokens {cfg.max_tokens} capped to {sent}: the server's max model "
                   f"length is {server.max_model_len}" + (f" (less {server.max_model_len - sent} for the prompt: "
                                                           "chat completions refuse more)" if cfg.api == "chat" else ""))
        sampler = sampler_mod.make(cfg.api, base_url=server.base_url, model=server.model, effort=cfg.effort,
                                   max_tokens=sent, temperature=cfg.temperature, timeout_s=cfg.request_timeout_s,
                                   retry_time_s=cfg.retry_time_s, backoff_s=cfg.backoff_s,
                                   empty_resamples=cfg.empty_resamples, notice=notice)
        progress = Progress(len(samples), f"{ev.name} {label}", stream=sys.stderr)
        progress.n = len(rows)
        tally = {"right": sum(r["score"] or 0 for r in rows.values()), "done": len(rows), "failed": 0}

        def on_row(row):
            tally["done"] += 1
            tally["right"] += row["score"]
            tally["failed"] += row["outcome"] == "failed"
            acc = tally["right"] / max(tally["done"], 1)
            progress.update(1, f"acc {100 * acc:.1f}%" + (f" failed {tally['failed']}" if tally["failed"] else ""))

        try:
            ask(ev, sampler, todo, base, cache, rows, cfg.concurrency, {"max_tokens_sent": sent}, on_row)
        except KeyboardInterrupt:
            progress.close()
            record = make_record(cfg, server, samples, rows, t0, status="failed",
                                 error=f"interrupted after {len(rows)} of {len(samples)} samples; re-run to resume")
            save_record(cfg, record, samples, rows)
            raise
        progress.close()
    record = make_record(cfg, server, samples, rows, t0)
    save_record(cfg, record, samples, rows)
    return record


def make_record(cfg: GPQARun, server: Server, samples, rows: dict[tuple, dict], t0: float, status: str = "ok",
                error: str | None = None) -> Record:
    """Headline: every sample asked, a rejected (HTTP 400) or failed one scoring 0, as in the
    reference; beside it the score over answered samples only."""
    from attnbench import provenance
    from attnbench.evals.grader import is_letter

    every = list(rows.values())
    answered = [r for r in every if r.get("outcome") == "answered"]
    rejected = [r for r in every if r.get("outcome") == "rejected"]
    failed = [r for r in every if r.get("outcome") == "failed"]
    est = stats.estimate({(r["question_id"], r["repeat"]): r["score"] for r in every}, cfg.seed)
    est_answered = stats.estimate({(r["question_id"], r["repeat"]): r["score"] for r in answered}, cfg.seed)
    asked_effort = None if cfg.effort == "none" else cfg.effort
    without_effort = sum(1 for r in answered + rejected
                         if asked_effort and (r["outcome"] == "rejected" or r.get("effort_sent") != asked_effort))
    completion = [r.get("completion_tokens") or 0 for r in answered]
    metrics = {
        "accuracy": est.mean, "score_pct": 100 * est.mean, "stderr": est.stderr, "stderr_pct": 100 * est.stderr,
        "ci_low": est.ci_low, "ci_high": est.ci_high,
        "stderr_repeat": est.stderr_repeat, "stderr_repeat_pct": 100 * est.stderr_repeat,
        "accuracy_answered": est_answered.mean, "score_answered_pct": 100 * est_answered.mean,
        "ci_answered_low": est_answered.ci_low, "ci_answered_high": est_answered.ci_high,
        "n_samples": len(every), "n_expected": len(samples), "n_answered": len(answered),
        "n_questions": len({s.id for s in samples}),
        "rejected_requests": len(rejected), "failed_requests": len(failed),
        "missing_samples": len(samples) - len(every), "samples_without_effort": without_effort,
        "extraction_failures": sum(not is_letter(r.get("extracted")) for r in answered),
        "truncations": sum(bool(r.get("truncated")) for r in answered),
        "empty_resamples": sum(r.get("resampled") or 0 for r in answered),
        "prompt_tokens": sum(r.get("prompt_tokens") or 0 for r in answered),
        "completion_tokens": sum(completion),
        "mean_completion_tokens": sum(completion) / len(completion) if completion else None,
        "duration_s": round(time.monotonic() - t0, 3),
    }
    if not answered and status == "ok":
        first = (rejected or failed)[0] if rejected or failed else None
        why = "none" if first is None else (f"HTTP 400: {first['rejected']}" if first["outcome"] == "rejected"
                                            else first["error"])
        hint = ("; lower --max-tokens to fit the model's context" if any(
            k in why.lower() for k in ("context length", "max_tokens", "max_output_tokens")) else "")
        status, error = "failed", (f"no sample was answered ({len(rejected)} rejected with HTTP 400, {len(failed)} "
                                   f"failed; first: {why}){hint}")
    sents = {r.get("max_tokens_sent") for r in every if r.get("max_tokens_sent")}
    scenario = {
        "eval": "gpqa", "dataset": cfg.dataset, "dataset_source": gpqa.source_of(cfg.dataset), "model": server.model,
        "endpoint": server.base_url if cfg.endpoint else None, "effort": cfg.effort, "api": cfg.api,
        "grader": cfg.grader, "repeats": cfg.repeats, "limit": cfg.limit, "seed": cfg.seed,
        "max_tokens": cfg.max_tokens, "max_tokens_sent": sorted(sents)[0] if len(sents) == 1 else sorted(sents) or None,
        "temperature": cfg.temperature, "concurrency": cfg.concurrency, "serve_args": list(cfg.serve_args),
        "retry_time_s": cfg.retry_time_s, "empty_resamples": cfg.empty_resamples,
        "server": server.identity, "server_key": server.key,
    }
    ordered = sorted(every, key=lambda r: (r["repeat"], str(r["question_id"])))
    cells = {(r["question_id"], r["repeat"]): r["score"] for r in every}
    samples_out = {
        "per_repeat": [v for _, v in sorted(stats.per_repeat_means(cells).items())],
        "per_question": {str(q): v for q, v in sorted(stats.per_question_means(cells).items(), key=lambda kv: str(kv[0]))},
        "rows": [{k: v for k, v in r.items() if k not in ("response", "target", "api", "max_tokens", "temperature")}
                 | {"response_tail": (r.get("response") or "")[-300:]} for r in ordered],
    }
    return Record(kind="gpqa", backend=server.label, scenario=scenario, metrics=metrics, samples=samples_out,
                  provenance=provenance.collect({"endpoint": server.base_url, "model": server.model}),
                  status=status, error=error)


def save_record(cfg: GPQARun, record: Record, samples, rows: dict[tuple, dict]) -> None:
    from attnbench.evals import html

    folder = cfg.result_dir / record.backend
    record.save(folder / "gpqa.json")
    prompts = {(s.id, s.repeat): s.prompt for s in samples}
    shown = {k: v for k, v in record.metrics.items() if v is not None}
    title = f"GPQA {cfg.dataset} · {record.backend} · {record.scenario.get('model')} · effort {cfg.effort}"
    atomic.write_text(folder / "report.html", html.report(title, shown, list(rows.values()), prompts))
