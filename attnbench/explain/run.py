"""explain over a serve run directory: pick the serve records, compose, time, write records.

Everything is checked (records, in-flight samples, model shapes, kernel names) before the first
kernel is timed, so bad input costs no GPU time. Each backend's record is written as soon as its
estimate is done, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from attnbench import stats
from attnbench.errors import UserError
from attnbench.explain import compose, estimate
from attnbench.records.record import Record
from attnbench.serving import aggregate
from attnbench.serving.shape import Shape
from attnbench.serving.summary import one_line


@dataclass
class Job:
    """One backend's measured passes of one load to explain: the batches of the newest pass, the
    TPOT over all passes used."""

    record: Record  # the pass whose in-flight samples give the batch mix
    kernel: str
    mix: compose.Mix
    model: estimate.ModelShape
    tpot: stats.Spread  # mean TPOT over the passes used (measured_tpot)
    tpot_median_ms: float | None
    tpot_source: str  # "engine" or "client"


def measured_tpot(group: aggregate.Group) -> tuple[stats.Spread, float | None, str]:
    """The decode step the engine lived through: vLLM's own mean TPOT (/metrics, engine
    timestamps) when every pass used has it, else the client's; the median is the client's. The
    client's includes delivery: with a saturated API server it was 61% above the engine's on an
    H200 (docs/serving-noise.md)."""
    used = group.used
    engine = group.values("server_mean_tpot_ms")
    # The median is always the client's per-request one: the engine's comes from histogram
    # buckets (5 ms wide near 15 ms), which put every backend of the H200 run at 17.5.
    median = group.spread("median_tpot_ms")
    median_ms = median.mean if median.n else None
    if used and len(engine) == len(used):
        return stats.spread(engine.values()), median_ms, "engine"
    return group.spread("mean_tpot_ms"), median_ms, "client"


@dataclass
class ShapeResult:
    shape: Shape
    estimates: list[estimate.Estimate] = field(default_factory=list)
    gaps: list[estimate.Gap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skipped or failed backends, one line each
    paths: list[Path] = field(default_factory=list)


def parse_shape(spec: str | None) -> tuple[int, int] | None:
    """'1000x1000' -> (1000, 1000)."""
    if not spec:
        return None
    a, _, b = spec.lower().replace(":", "x").partition("x")
    try:
        return int(a), int(b)
    except ValueError:
        raise UserError(f"--shape {spec!r}: expected INPUTxOUTPUT tokens, e.g. --shape 1000x1000") from None


def parse_kernels(items: list[str]) -> dict[str, str]:
    """['attnbench-fa4=fa4'] -> {'attnbench-fa4': 'fa4'}: which microbench backend times a serve backend."""
    out = {}
    for item in items:
        name, sep, kernel = item.partition("=")
        if not sep or not name.strip() or not kernel.strip():
            raise UserError(f"--kernel-backend {item!r}: expected SERVE_BACKEND=MICROBENCH_BACKEND, e.g. fa3=reference")
        out[name.strip()] = kernel.strip()
    return out


def kernel_for(backend: str, kernels: dict[str, str], device: str = "cuda") -> str:
    """The serve backend's own microbench kernel unless --kernel-backend maps it elsewhere."""
    from attnbench.backends.registry import BACKENDS

    kernel = kernels.get(backend, backend)
    timed = ["reference", *(n for n, b in BACKENDS.items() if b.microbench)]
    if kernel not in timed:
        raise UserError(f"serve backend {backend!r}: microbench has no kernel {kernel!r}; pass "
                        f"--kernel-backend {backend}=KERNEL with KERNEL one of {', '.join(timed)}")
    if device == "cpu" and kernel != "reference":
        raise UserError(f"--device cpu times only the reference kernel; pass --kernel-backend {backend}=reference "
                        "(or run on a GPU with --device cuda)")
    return kernel


def select(records: list[Record], where: str, backends: list[str] | None = None,
           shape: tuple[int, int] | None = None) -> dict[Shape, list[aggregate.Group]]:
    """Per load shape, each backend's passes of its newest run (serve-bench's repeats, or one pass),
    filtered."""
    newest: dict[tuple[str, Shape], aggregate.Group] = {}
    for g in aggregate.groups([r for r in records if r.kind == "serve"]):
        k = (g.backend, Shape.of(g.passes[0]))
        if k not in newest or aggregate.run_of(g.passes[0]) >= aggregate.run_of(newest[k].passes[0]):
            newest[k] = g
    serve = list(newest.values())
    if not serve:
        raise UserError(f"{where}: no serve records; pass the result directory `attnbench serve-bench` wrote")
    if shape:
        kept = [g for g in serve if (Shape.of(g.passes[0]).input_len, Shape.of(g.passes[0]).output_len) == shape]
        if not kept:
            have = sorted({f"{Shape.of(g.passes[0]).input_len}x{Shape.of(g.passes[0]).output_len}" for g in serve})
            raise UserError(f"--shape {shape[0]}x{shape[1]}: no serve record of that shape in {where} "
                            f"(it has {', '.join(have)})")
        serve = kept
    if backends:
        have = list(dict.fromkeys(g.backend for g in serve))
        missing = [b for b in backends if b not in have]
        if missing:
            raise UserError(f"--backends: {', '.join(missing)} not in {where} (it has {', '.join(have)})")
        serve = sorted((g for g in serve if g.backend in backends), key=lambda g: backends.index(g.backend))
    out: dict[Shape, list[aggregate.Group]] = {}
    for g in serve:
        out.setdefault(Shape.of(g.passes[0]), []).append(g)
    return out


def plan(groups: list[aggregate.Group], kernels: dict[str, str], coverage: float,
         device: str = "cuda") -> tuple[list[Job], list[str]]:
    """Check and compose every backend's newest pass before any timing; failed runs become notes."""
    jobs, notes = [], []
    for g in groups:
        if not g.used:
            why = one_line(g.failed[-1].error) if g.failed else f"all {len(g.flagged)} passes were flagged as contaminated"
            notes.append(f"{g.backend}: skipped, its serve run failed: {why}")
            continue
        rec = g.used[-1]
        where = f"{rec.backend} {Shape.of(rec).label}"
        tpot, median, source = measured_tpot(g)
        if not tpot.n or not tpot.mean:
            notes.append(f"{rec.backend}: skipped, its serve run has no TPOT (output length 1 or no request completed)")
            continue
        model = estimate.ModelShape.of(rec.scenario, where)
        mix = compose.compose(compose.inflight_of(rec.samples, where), model.page_size, coverage=coverage, where=where)
        jobs.append(Job(rec, kernel_for(rec.backend, kernels, device), mix, model, tpot, median, source))
    return jobs, notes


def to_record(est: estimate.Estimate, job: Job, device: str, coverage: float, gaps: list[estimate.Gap],
              provenance: dict) -> Record:
    rec = job.record
    s, mix = rec.scenario, est.mix
    scenario = {k: s.get(k) for k in ("input_len", "output_len", "num_prompts", "request_rate", "burstiness",
                                      "max_concurrency", "seed", "model", "served_model", "model_shape")}
    scenario.update(kernel=est.kernel, device=device, inflight_source=mix.source, inflight_interval_s=mix.interval_s,
                    coverage_target=coverage)
    provenance = {**provenance, "serve_utc_time": rec.provenance.get("utc_time"),  # which serve run it explains
                  "serve_git_sha": rec.provenance.get("git_sha"), "serve_gpu_name": rec.provenance.get("gpu_name")}
    layers = est.model.layers
    flops = compose.prefill_attention_flops(rec.samples.get("input_lens") or [], est.model.q_heads,
                                            est.model.head_dim, layers)
    metrics = {"mean_tpot_ms": est.tpot_mean_ms, "median_tpot_ms": est.tpot_median_ms,
               "attn_est_ms": est.attn_ms, "attn_share": est.share, "rest_ms": est.rest_ms,
               "num_hidden_layers": layers, "mean_decode_batch": mix.mean_batch, "mean_context": mix.mean_context,
               "coverage": mix.coverage, "inflight_samples": mix.samples, "decode_samples": mix.decode_samples,
               "mixed_share": mix.mixed_share, "prefill_attn_tflop": flops / 1e12,
               "tpot_passes": job.tpot.n,
               "mean_tpot_ci_low_ms": job.tpot.ci_low if job.tpot.n > 1 else None,
               "mean_tpot_ci_high_ms": job.tpot.ci_high if job.tpot.n > 1 else None}
    scenario["tpot_source"] = job.tpot_source
    comps = [{**c.to_json(), "layer_us": t, "step_ms": t * layers / 1000}
             for c, t in zip(mix.compositions, est.layer_us)]
    mine = [g.to_json() for g in gaps if est.backend in (g.slower, g.faster)]
    return Record(kind="explain", backend=est.backend, scenario=scenario, metrics=metrics,
                  samples={"compositions": comps, "pairs": mine}, provenance=provenance)


def failed_record(job: Job, device: str, error: str, provenance: dict) -> Record:
    s = job.record.scenario
    scenario = {k: s.get(k) for k in ("input_len", "output_len", "num_prompts", "request_rate", "max_concurrency",
                                      "model")}
    scenario.update(kernel=job.kernel, device=device)
    return Record(kind="explain", backend=job.record.backend, scenario=scenario, provenance=provenance,
                  status="failed", error=error, samples={"compositions": [c.to_json() for c in job.mix.compositions]})


def record_path(result_dir: Path, backend: str, shape: Shape) -> Path:
    return result_dir / backend / f"explain-{shape.slug}.json"


def explain(records: list[Record], where: str, timer: estimate.Timer, result_dir: Path, device: str = "cuda",
            backends: list[str] | None = None, shape: tuple[int, int] | None = None,
            kernels: dict[str, str] | None = None, coverage: float = compose.COVERAGE, same_load: bool = False,
            status=None, provenance: dict | None = None, into: list[ShapeResult] | None = None) -> list[ShapeResult]:
    """Explain every selected load shape; writes one explain record per backend and shape.

    Results are appended to `into` (when given) as they are made, so a caller interrupted
    mid-way can still write a summary of what was measured.

    same_load: for each pair also time the slower backend's kernel on the faster run's batches,
    splitting the attention gap into kernel speed and load (costs one more timing per composition).
    """
    from attnbench import provenance as prov_mod

    groups = select(records, where, backends, shape)
    planned = {s: plan(recs, kernels or {}, coverage, device) for s, recs in groups.items()}  # all checks first
    prov = provenance if provenance is not None else prov_mod.collect({"device": device})
    timer = estimate.cached(timer)
    results = into if into is not None else []
    for s, (jobs, notes) in planned.items():
        res = ShapeResult(s, notes=list(notes))
        results.append(res)
        by_backend: dict[str, Job] = {}
        for job in jobs:
            name = job.record.backend
            n = len(job.mix.compositions)

            def report(i, ds, name=name, kernel=job.kernel, n=n):
                if status:
                    status(f"explain {s.label}: {name} ({kernel}) {i + 1}/{n} {ds.label()}")

            try:
                measured = {"mean_tpot_ms": job.tpot.mean, "median_tpot_ms": job.tpot_median_ms}
                est = estimate.estimate(name, job.kernel, measured, job.mix, job.model, timer, report)
                est.tpot_source, est.tpot_passes = job.tpot_source, job.tpot.n
                est.tpot_half_pct = job.tpot.half_width_pct if job.tpot.n > 1 else None
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # one backend's kernel failing must not lose the others
                msg = one_line(str(e) or type(e).__name__)
                res.notes.append(f"{name}: kernel {job.kernel!r} could not be timed: {msg}")
                res.paths.append(failed_record(job, device, msg, prov).save(record_path(result_dir, name, s)))
                continue
            res.estimates.append(est)
            if est.share > 1:
                res.notes.append(f"{name}: estimated attention ({est.attn_ms:.2f} ms) exceeds the measured TPOT "
                                 f"({est.tpot_mean_ms:.2f} ms); the timed shapes overstate the served batches "
                                 "(check scenario.model_shape and the compositions)")
            by_backend[name] = job
            res.paths.append(to_record(est, job, device, coverage, [], prov).save(record_path(result_dir, name, s)))
        for a, b in combinations(res.estimates, 2):
            try:
                res.gaps.append(estimate.gap(a, b, timer if same_load else None))
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:
                res.notes.append(f"{a.backend} vs {b.backend}: same-batch kernel timing failed: "
                                 f"{one_line(str(e) or type(e).__name__)}")
                res.gaps.append(estimate.gap(a, b))
        for est in res.estimates:  # again, now with the pairs
            to_record(est, by_backend[est.backend], device, coverage, res.gaps, prov).save(
                record_path(result_dir, est.backend, s))
    return results
