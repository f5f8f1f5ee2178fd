"""`attnbench gpqa` end to end: load the questions, ask them through one running endpoint or one
vLLM server per backend (resuming from the cache), grade, and write per backend a record and
the conversation report, then across backends summary.md, comparison.json and a plot."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench import atomic, stats
from attnbench.evals import gpqa
from attnbench.evals.cache import Cache
from attnbench.results.record import Record

DEFAULT_MODEL = "openai/gpt-oss-20b"


@dataclass
class GPQARun:
    result_dir: Path
    dataset: str = "diamond"
    effort: str = "low"
    api: str = "responses"
    repeats: int = 8
    concurrency: int = 64
    max_tokens: int = 32768  # the reference's defaults
    temperature: float = 1.0
    limit: int | None = None
    seed: int = 0
    model: str | None = None  # with an endpoint: None takes the server's model
    endpoint: str | None = None
    name: str = "endpoint"  # the backend name an endpoint's record carries
    backends: list[Any] = field(default_factory=list)  # registry.Backend
    serve_args: list[str] = field(default_factory=list)
    request_timeout_s: float = 1800.0
    retries: int = 5
    backoff_s: float = 1.0
    ready_timeout_s: float = 900.0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(cfg: GPQARun, notice: Callable[[str], None] = _say) -> list[Record]:
    questions = gpqa.load(cfg.dataset)
    samples = gpqa.make_samples(questions, cfg.repeats, cfg.seed, cfg.limit)
    if cfg.concurrency < 1:
        from attnbench.errors import UserError

        raise UserError(f"--concurrency must be >= 1 (got {cfg.concurrency})")
    cfg.result_dir.mkdir(parents=True, exist_ok=True)
    records: list[Record] = []
    with Cache(cfg.result_dir / "cache.jsonl") as cache:
        try:
            if cfg.endpoint:
                from attnbench.serving import endpoint

                base_url = endpoint.normalize(cfg.endpoint)
                model = endpoint.pick_model(base_url, cfg.model)
                records.append(_evaluate(cfg, samples, cache, cfg.name, f"{base_url}|{model}", base_url, model, notice))
            else:
                for backend in cfg.backends:
                    records.append(_serve_and_evaluate(cfg, samples, cache, backend, notice))
        finally:
            if records:
                from attnbench.evals import summary

                summary.write(cfg, records)
    return records


def _serve_and_evaluate(cfg: GPQARun, samples, cache: Cache, backend, notice) -> Record:
    from attnbench.console import StatusLine
    from attnbench.serving.server import ServerFailed, ServerSpec, running

    model = cfg.model or DEFAULT_MODEL
    target = f"vllm:{model}"
    if not _todo(cfg, samples, cache, backend.name, target):  # all cached: no server needed
        return _evaluate(cfg, samples, cache, backend.name, target, None, model, notice)
    spec = ServerSpec(model=model, backend=backend, log_path=cfg.result_dir / backend.name / "server.log",
                      extra_args=list(cfg.serve_args), ready_timeout_s=cfg.ready_timeout_s)
    status = StatusLine(stream=sys.stderr)
    try:
        with running(spec, status) as server:
            status.done()
            return _evaluate(cfg, samples, cache, backend.name, target, server.base_url, server.model_name, notice)
    except ServerFailed as e:
        status.done()
        notice(f"attnbench: {e.reason}; log: {spec.log_path}")
        record = make_record(cfg, backend.name, model, None, samples, {}, time.monotonic(), status="failed",
                             error=f"{e.reason}: " + " | ".join(e.log_tail[-5:]))
        save_record(cfg, record, samples, {})
        return record


def _base(cfg: GPQARun, label: str, target: str) -> dict[str, Any]:
    return {"target": target, "backend": label, "effort": cfg.effort, "api": cfg.api,
            "max_tokens": cfg.max_tokens, "temperature": cfg.temperature}


def _todo(cfg: GPQARun, samples, cache: Cache, label: str, target: str) -> list:
    """The samples the cache has no answer for, asked the same way."""
    return [s for s in samples
            if cache.get((target, label, cfg.effort, s.question.id, s.repeat), prompt_sha=gpqa.prompt_sha(s.prompt),
                         api=cfg.api, max_tokens=cfg.max_tokens, temperature=cfg.temperature) is None]


def _evaluate(cfg: GPQARun, samples, cache: Cache, label: str, target: str, base_url: str | None, model: str,
              notice) -> Record:
    from attnbench.console import Progress
    from attnbench.evals import sampler as sampler_mod

    base = _base(cfg, label, target)
    todo = _todo(cfg, samples, cache, label, target)
    todo_ids = {(s.question.id, s.repeat) for s in todo}
    rows: dict[tuple, dict] = {}
    for s in samples:
        if (s.question.id, s.repeat) not in todo_ids:
            rows[(s.question.id, s.repeat)] = cache.rows[(target, label, cfg.effort, s.question.id, s.repeat)]
    if rows:
        notice(f"attnbench: {label}: {len(rows)} of {len(samples)} samples from {cache.path}, asking {len(todo)}")
    t0 = time.monotonic()
    if todo:
        sampler = sampler_mod.make(cfg.api, base_url=base_url, model=model, effort=cfg.effort,
                                   max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                                   timeout_s=cfg.request_timeout_s, retries=cfg.retries, backoff_s=cfg.backoff_s,
                                   notice=notice)
        progress = Progress(len(samples), f"gpqa {label}", stream=sys.stderr)
        progress.n = len(rows)
        tally = {"right": sum(r["score"] or 0 for r in rows.values()), "scored": len(rows), "failed": 0}

        def on_row(sample, row):
            rows[(sample.question.id, sample.repeat)] = row
            if row["error"] is None:
                cache.append(row)
                tally["scored"] += 1
                tally["right"] += row["score"]
            else:
                tally["failed"] += 1
            acc = tally["right"] / max(tally["scored"], 1)
            progress.update(1, f"acc {100 * acc:.1f}%" + (f" failed {tally['failed']}" if tally["failed"] else ""))

        try:
            asyncio.run(gpqa.GPQAEval(samples).run(sampler, todo, base, on_row, cfg.concurrency))
        except KeyboardInterrupt:
            progress.close()
            record = make_record(cfg, label, model, base_url, samples, rows, t0, status="failed",
                                 error=f"interrupted after {len(rows)} of {len(samples)} samples; re-run to resume")
            save_record(cfg, record, samples, rows)
            raise
        progress.close()
    record = make_record(cfg, label, model, base_url, samples, rows, t0)
    save_record(cfg, record, samples, rows)
    return record


def make_record(cfg: GPQARun, label: str, model: str, base_url: str | None, samples, rows: dict[tuple, dict],
                t0: float, status: str = "ok", error: str | None = None) -> Record:
    from attnbench import provenance

    scored = [r for r in rows.values() if r.get("error") is None and r.get("score") is not None]
    cells = {(r["question_id"], r["repeat"]): r["score"] for r in scored}
    est = stats.estimate(cells, cfg.seed)
    failed = [r for r in rows.values() if r.get("error")]
    n_questions = len({s.question.id for s in samples})
    metrics = {
        "accuracy": est.mean, "score_pct": 100 * est.mean, "stderr": est.stderr, "stderr_pct": 100 * est.stderr,
        "ci_low": est.ci_low, "ci_high": est.ci_high, "n_samples": len(scored), "n_expected": len(samples),
        "n_questions": n_questions,
        "extraction_failures": sum(r["extracted"] is None for r in scored),
        "truncations": sum(bool(r.get("truncated")) for r in scored),
        "failed_requests": len(failed), "missing_samples": len(samples) - len(rows),
        "prompt_tokens": sum(r.get("prompt_tokens") or 0 for r in scored),
        "completion_tokens": sum(r.get("completion_tokens") or 0 for r in scored),
        "mean_completion_tokens": (sum(r.get("completion_tokens") or 0 for r in scored) / len(scored)) if scored else None,
        "duration_s": round(time.monotonic() - t0, 3),
    }
    if not scored and status == "ok":
        first = failed[0]["error"] if failed else "none"
        hint = ("; lower --max-tokens to fit the model's context" if any(
            k in first.lower() for k in ("context length", "max_tokens", "max_output_tokens")) else "")
        status, error = "failed", f"no sample was answered ({len(failed)} failed requests; first: {first}){hint}"
    sent = [r.get("effort_sent") for r in scored]
    scenario = {
        "eval": "gpqa", "dataset": cfg.dataset, "model": model, "endpoint": base_url if cfg.endpoint else None,
        "effort": cfg.effort, "effort_sent": (any(sent) if sent else None) if cfg.effort != "none" else False,
        "api": cfg.api, "repeats": cfg.repeats, "limit": cfg.limit, "seed": cfg.seed, "max_tokens": cfg.max_tokens,
        "temperature": cfg.temperature, "concurrency": cfg.concurrency, "serve_args": list(cfg.serve_args),
    }
    ordered = sorted(rows.values(), key=lambda r: (r["repeat"], str(r["question_id"])))
    samples_out = {
        "per_repeat": [v for _, v in sorted(stats.per_repeat_means(cells).items())],
        "per_question": {str(q): v for q, v in sorted(stats.per_question_means(cells).items(), key=lambda kv: str(kv[0]))},
        "rows": [{k: v for k, v in r.items() if k not in ("response", "target", "api", "max_tokens", "temperature")}
                 | {"response_tail": (r.get("response") or "")[-300:]} for r in ordered],
    }
    return Record(kind="gpqa", backend=label, scenario=scenario, metrics=metrics, samples=samples_out,
                  provenance=provenance.collect({"endpoint": base_url, "model": model}), status=status, error=error)


def save_record(cfg: GPQARun, record: Record, samples, rows: dict[tuple, dict]) -> None:
    from attnbench.evals import html

    folder = cfg.result_dir / record.backend
    record.save(folder / "gpqa.json")
    prompts = {(s.question.id, s.repeat): s.prompt for s in samples}
    shown = {k: v for k, v in record.metrics.items() if v is not None}
    title = f"GPQA {cfg.dataset} · {record.backend} · {record.scenario.get('model')} · effort {cfg.effort}"
    atomic.write_text(folder / "report.html", html.report(title, shown, list(rows.values()), prompts))
