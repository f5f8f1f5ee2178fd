"""Run shapes x backends: build inputs once per shape, check every backend against the float32
reference, time it, and turn each result into a "microbench" Record.

Compilation stays out of the timed budget and is reported on its own: every backend's first call
on a shape (FlashInfer's JIT build, the CuTe DSL compiles of FA4 and attnbench-fa4) runs before
its check and timing, is timed separately (record.metrics["first_call_s"], a "compiled ..." line
when it took a while), and `precompile` runs that first call for every backend x shape before
any shape is timed (`compile_only`: that pass alone)."""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from attnbench.errors import UserError
from attnbench.microbench import check, work
from attnbench.microbench.base import DecodeShape, Kernel, Shape
from attnbench.records.record import Record

REFERENCE = "reference"


@dataclass(frozen=True)
class Options:
    """How each shape is measured (the grid says which shapes). A field whose metadata has a
    "flag" is also a [microbench] scenario key beside `grid = FILE` (metadata as
    serving.run.ServeBench says), and an option of `attnbench microbench decode|prefill`."""
    device: str = field(default="cuda", metadata={"flag": "--device", "help": "cuda or cpu (cpu: reference backend only)"})
    repeats: int = field(default=20, metadata={"flag": "--repeats", "bound": (">=", 1),
                                               "help": "timed repeats; the median is reported"})
    warmup: int = 3
    cold_l2: bool = False
    # None or 0: FA4's own heuristic; N: num_splits=N ("fa4-splitsN")
    fa4_splits: int | None = field(default=None, metadata={
        "flag": "--fa4-splits", "bound": (">=", 0),
        "help": "FA4 num_splits: 0 = its heuristic; 1 = split-KV off (labelled fa4-splits1)"})
    seed: int = 0
    precompile: bool = False  # first call of every backend x shape before any shape is timed


COMPILE_NOTE_S = 2.0  # a first call this slow compiled something: say so on its own line


class InFlight:
    """What the run is doing right now (phase, backend, shape, since when): a time limit's signal
    handler names it, and records it as interrupted, when it cannot wait for the run to stop."""

    def __init__(self):
        self.phase: str | None = None  # "compiling" (first call), "measuring" (check + timing), "inputs"
        self.backend: str | None = None
        self.shape: Shape | None = None
        self.since = 0.0

    def set(self, phase: str | None, backend: str | None = None, shape: Shape | None = None) -> None:
        self.phase, self.backend, self.shape, self.since = phase, backend, shape, time.monotonic()

    def describe(self) -> str | None:
        if not self.phase:
            return None
        what = f"{self.phase} {self.backend}" if self.backend else self.phase
        where = f" on {self.shape.label()}" if self.shape is not None else ""
        return f"{what}{where} for {time.monotonic() - self.since:.0f} s"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def adapter_names() -> list[str]:
    """Registry backends that declare a microbench kernel adapter."""
    from attnbench.backends import registry

    return [b.name for b in registry.BACKENDS.values() if b.microbench]


def label(name: str, opts: Options) -> str:
    return f"{name}-splits{opts.fa4_splits}" if name == "fa4" and opts.fa4_splits else name


def validate_backends(names: Iterable[str], device: str) -> list[str]:
    """Backend names a user typed -> checked list (raises UserError naming the fix)."""
    from attnbench.backends import registry

    names = list(names)
    for n in names:
        if n == REFERENCE:
            continue
        b = registry.get(n)
        if not b.microbench:
            have = ", ".join([*adapter_names(), REFERENCE])
            raise UserError(f"backend {n!r} has no microbench kernel adapter; use one of: {have}")
        if not device.startswith("cuda"):
            raise UserError(f"backend {n!r} needs a GPU; run with --device cuda or use --backends reference")
    return names


def load_kernel(name: str, opts: Options) -> Kernel:
    """The adapter class for a backend name, instantiated and configured."""
    if name == REFERENCE:
        from attnbench.microbench.adapters.reference import Reference

        return Reference()
    from attnbench.backends import registry

    module_name, cls_name = registry.get(name).microbench.split(":")
    kernel = getattr(importlib.import_module(module_name), cls_name)()
    if name == "fa4" and opts.fa4_splits is not None:
        kernel = kernel.with_options(num_splits=opts.fa4_splits)
    return kernel


def _closure(kernel: Kernel, shape: Shape, inp) -> Callable[[], None]:
    return kernel.decode(shape, inp) if isinstance(shape, DecodeShape) else kernel.prefill(shape, inp)


def _record(backend: str, shape: Shape, opts: Options, provenance: dict, roof: dict | None) -> Record:
    scenario = shape.describe() | {"label": shape.label(), "cold_l2": opts.cold_l2, "device": opts.device, "repeats": opts.repeats}
    if backend.startswith("fa4"):
        scenario["fa4_splits"] = opts.fa4_splits or 0
    return Record(kind="microbench", backend=backend, scenario=scenario,
                  metrics={"flops": work.flops(shape), "bytes": work.bytes_moved(shape)},
                  provenance=provenance)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def first_call(kernel: Kernel, shape: Shape, inp, device: str) -> tuple[Callable[[], None], float]:
    """Build the closure (planning, compiling) and run it once, to completion: (closure, seconds)."""
    t0 = time.monotonic()
    fn = _closure(kernel, shape, inp)
    fn()
    _sync(device)
    return fn, time.monotonic() - t0


def _error(rec: Record, e: BaseException) -> None:
    rec.status, rec.samples["verdict"] = "failed", "error"
    rec.error = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
    rec.samples["traceback"] = traceback.format_exc(limit=8)[-3000:]


def measure_one(kernel: Kernel, shape: Shape, inp, ref, opts: Options, roof: dict | None,
                rec: Record, inflight: InFlight | None = None) -> Record:
    """First call (compile, reported apart), then check, then time one backend on one shape;
    fills `rec` (failures become a failed record)."""
    from attnbench.microbench import inputs as inputs_mod
    from attnbench.microbench import roofline, timing

    inflight = inflight or InFlight()
    reason = kernel.unsupported(shape)
    if reason:
        rec.status, rec.error, rec.samples["verdict"] = "failed", f"unsupported: {reason}", "skipped"
        return rec
    try:
        inflight.set("compiling", rec.backend, shape)
        fn, first_s = first_call(kernel, shape, inp, opts.device)
        rec.metrics["first_call_s"] = round(first_s, 3)
        if first_s >= COMPILE_NOTE_S:
            _say(f"compiled {rec.backend} on {shape.label()} in {first_s:.1f} s (first call, not timed)")
        inflight.set("measuring", rec.backend, shape)
        verdict = check.run_checked(fn, inp.out, ref, shape.dtype)
        fns = [fn]
        if opts.cold_l2 and opts.device.startswith("cuda"):
            import torch

            props = torch.cuda.get_device_properties(opts.device)
            free, _ = torch.cuda.mem_get_info(opts.device)
            n = timing.cold_copies(inputs_mod.nbytes(inp), getattr(props, "L2_cache_size", 50 << 20), free)
            copies = [inputs_mod.inputs_for(shape, opts.device, opts.seed + 1 + i) for i in range(n - 1)]
            fns += [_closure(kernel, shape, c) for c in copies]
            rec.metrics["cold_copies"] = n
        t = timing.time_calls(fns, opts.device, opts.repeats, opts.warmup)
    except Exception as e:  # a broken kernel must not stop the grid; say what broke
        inflight.set(None)
        _error(rec, e)
        _free_cuda(opts.device)
        return rec
    inflight.set(None)  # (an interrupt leaves it set: the caller records what it cut short)
    rates = work.rates(shape, t.us * 1e-6)
    rec.metrics.update({"us": t.us, **rates, **roofline.percentages(rates, roof), "rel_err": verdict.rel_err,
                        "tolerance": verdict.tolerance, "graph": int(t.graph), "calls_per_replay": t.calls_per_replay})
    rec.samples["times_us"] = t.samples_us
    rec.samples["verdict"] = "ok" if verdict.ok else "FAIL"
    if t.note:
        rec.samples["note"] = t.note
    if not verdict.ok:
        rec.status, rec.error = "failed", verdict.describe()
    return rec


def interrupted_record(inflight: InFlight, opts: Options, provenance: dict, roof: dict | None,
                       why: str = "interrupted") -> Record | None:
    """The backend x shape a signal cut short, as a record that says so (verdict "interrupted"),
    or None when no backend was running on a shape."""
    if not (inflight.phase in ("compiling", "measuring") and inflight.backend and inflight.shape is not None):
        return None
    rec = _record(inflight.backend, inflight.shape, opts, provenance, roof)
    rec.status, rec.samples["verdict"] = "failed", "interrupted"
    rec.error = f"{why} while {inflight.describe()}" + (" (first call: compiling/JIT)" if inflight.phase == "compiling" else "")
    return rec


def _free_cuda(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def precompile(shapes: list[Shape], backends: list[str], kernels: dict, opts: Options,
               inflight: InFlight | None = None) -> dict[tuple[str, str], float | BaseException]:
    """The first call of every backend x shape (compiles, plans, allocates workspaces) before
    anything is timed, one line each: {(backend label, shape label): seconds or the exception}."""
    from attnbench.microbench import inputs as inputs_mod

    inflight = inflight or InFlight()
    done: dict[tuple[str, str], float | BaseException] = {}
    t_all = time.monotonic()
    for shape in shapes:
        todo = [n for n in backends if not isinstance(kernels[n], Exception) and not kernels[n].unsupported(shape)]
        if not todo:
            continue
        inflight.set("inputs", None, shape)
        try:
            inp = inputs_mod.inputs_for(shape, opts.device, opts.seed)
        except Exception as e:
            inflight.set(None)
            _free_cuda(opts.device)
            _say(f"compile: no inputs for {shape.label()}: {type(e).__name__}: {str(e)[:200]}")
            continue
        for name in todo:
            lab = label(name, opts)
            _say(f"compiling {lab} on {shape.label()} ...")
            inflight.set("compiling", lab, shape)
            try:
                _, sec = first_call(kernels[name], shape, inp, opts.device)
                done[(lab, shape.label())] = sec
                _say(f"compiled {lab} on {shape.label()} in {sec:.1f} s")
            except Exception as e:
                inflight.set(None)
                done[(lab, shape.label())] = e
                _say(f"compile failed: {lab} on {shape.label()}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
                _free_cuda(opts.device)
        inflight.set(None)
        del inp
        _free_cuda(opts.device)
    _say(f"compiled {len(done)} backend x shape pair(s) in {time.monotonic() - t_all:.1f} s")
    return done


def run(shapes: list[Shape], backends: list[str], opts: Options, roof: dict | None = None,
        provenance: dict | None = None, on_record: Callable[[Record], None] | None = None,
        on_progress: Callable[[str], None] | None = None, *, compile_only: bool = False,
        skip: Callable[[str, Shape], bool] | None = None, inflight: InFlight | None = None) -> list[Record]:
    """Every backend on every shape; `on_record` sees each record as soon as it exists (so a run
    cut short keeps what it measured). `skip(backend label, shape)`: leave that pair out (e.g. it
    is already measured in the result directory). `inflight` is kept up to date with what runs."""
    from attnbench import provenance as prov
    from attnbench.microbench import inputs as inputs_mod

    inflight = inflight or InFlight()
    provenance = provenance if provenance is not None else prov.collect(
        {"roofline": roof, "microbench_options": asdict(opts)})
    kernels: dict[str, Kernel | Exception] = {}
    for name in backends:
        inflight.set("loading", name)
        try:
            kernels[name] = load_kernel(name, opts)
        except Exception as e:  # missing adapter module or its library: every shape says why
            kernels[name] = e
    inflight.set(None)
    todo = {i: [n for n in backends if not (skip and skip(label(n, opts), shape))] for i, shape in enumerate(shapes)}
    compiled: dict = {}
    if opts.precompile or compile_only:
        compiled = precompile([s for i, s in enumerate(shapes) if todo[i]], backends, kernels, opts, inflight)
    if compile_only:
        return []
    records = []
    for i, shape in enumerate(shapes):
        names = todo[i]
        if not names:
            continue
        if on_progress:
            on_progress(f"[{i + 1}/{len(shapes)}] {shape.label()}")
        inflight.set("inputs", None, shape)
        try:
            inp = inputs_mod.inputs_for(shape, opts.device, opts.seed)
            ref = check.reference(shape, inp)
        except Exception as e:  # out of memory, most likely: every backend's record says why
            inp = ref = None
            inflight.set(None)
            _free_cuda(opts.device)
            why = "inputs do not fit" if "out of memory" in str(e).lower() else "inputs or reference failed"
            for name in names:
                rec = _record(label(name, opts), shape, opts, provenance, roof)
                rec.status, rec.samples["verdict"] = "failed", "skipped"
                rec.error = f"{why}: {type(e).__name__}: {str(e)[:200]}"
                records.append(rec)
                if on_record:
                    on_record(rec)
            continue
        inflight.set(None)
        for name in names:
            rec = _record(label(name, opts), shape, opts, provenance, roof)
            kernel = kernels[name]
            first = compiled.get((rec.backend, shape.label()))
            if isinstance(kernel, Exception):
                rec.status, rec.samples["verdict"] = "failed", "error"
                rec.error = f"adapter for {name} failed to load: {type(kernel).__name__}: {kernel}"
            elif isinstance(first, BaseException):  # its compile pass failed: say so, do not run it again
                rec.status, rec.samples["verdict"] = "failed", "error"
                rec.error = f"first call (compile pass) failed: {type(first).__name__}: {str(first).splitlines()[0][:300] if str(first) else ''}"
            else:
                measure_one(kernel, shape, inp, ref, opts, roof, rec, inflight)
                if isinstance(first, float):
                    rec.metrics["compile_s"] = round(first, 3)
            records.append(rec)
            if on_record:
                on_record(rec)
        del inp, ref
        _free_cuda(opts.device)
    return records
