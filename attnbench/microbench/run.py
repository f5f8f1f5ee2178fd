"""Run shapes x backends: build inputs once per shape, check every backend against the float32
reference, time it, and turn each result into a "microbench" Record."""

from __future__ import annotations

import importlib
import traceback
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

from attnbench.errors import UserError
from attnbench.microbench import check, work
from attnbench.microbench.base import DecodeShape, Kernel, Shape
from attnbench.results.record import Record

REFERENCE = "reference"


@dataclass(frozen=True)
class Options:
    device: str = "cuda"
    repeats: int = 20
    warmup: int = 3
    cold_l2: bool = False
    fa4_splits: int | None = None  # None or 0: FA4's own heuristic; N: num_splits=N ("fa4-splitsN")
    seed: int = 0


def adapter_names() -> list[str]:
    """Registry backends that declare a microbench kernel adapter."""
    from attnbench.backends import registry

    return [b.name for b in registry.BACKENDS.values() if b.microbench]


def default_backends() -> list[str]:
    from attnbench.backends import registry

    return [n for n in adapter_names() if registry.BACKENDS[n].availability().ok]


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
        from attnbench.microbench.kernels.reference import Reference

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


def measure_one(kernel: Kernel, shape: Shape, inp, ref, opts: Options, roof: dict | None,
                rec: Record) -> Record:
    """Check, then time one backend on one shape; fills `rec` (failures become a failed record)."""
    from attnbench.microbench import inputs as inputs_mod
    from attnbench.microbench import roofline, timing

    reason = kernel.unsupported(shape)
    if reason:
        rec.status, rec.error, rec.samples["verdict"] = "failed", f"unsupported: {reason}", "skipped"
        return rec
    try:
        fn = _closure(kernel, shape, inp)
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
        rec.status, rec.samples["verdict"] = "failed", "error"
        rec.error = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        rec.samples["traceback"] = traceback.format_exc(limit=8)[-3000:]
        _free_cuda(opts.device)
        return rec
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


def _free_cuda(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def run(shapes: list[Shape], backends: list[str], opts: Options, roof: dict | None = None,
        provenance: dict | None = None, on_record: Callable[[Record], None] | None = None,
        on_progress: Callable[[str], None] | None = None) -> list[Record]:
    """Every backend on every shape; `on_record` sees each record as soon as it exists (so a run
    cut short keeps what it measured)."""
    from attnbench import provenance as prov
    from attnbench.microbench import inputs as inputs_mod

    provenance = provenance if provenance is not None else prov.collect(
        {"roofline": roof, "microbench_options": asdict(opts)})
    kernels: dict[str, Kernel | Exception] = {}
    for name in backends:
        try:
            kernels[name] = load_kernel(name, opts)
        except Exception as e:  # missing adapter module or its library: every shape says why
            kernels[name] = e
    records = []
    for i, shape in enumerate(shapes):
        if on_progress:
            on_progress(f"[{i + 1}/{len(shapes)}] {shape.label()}")
        try:
            inp = inputs_mod.inputs_for(shape, opts.device, opts.seed)
            ref = check.reference(shape, inp)
        except Exception as e:  # out of memory, most likely: every backend's record says why
            inp = ref = None
            _free_cuda(opts.device)
            why = "inputs do not fit" if "out of memory" in str(e).lower() else "inputs or reference failed"
            for name in backends:
                rec = _record(label(name, opts), shape, opts, provenance, roof)
                rec.status, rec.samples["verdict"] = "failed", "skipped"
                rec.error = f"{why}: {type(e).__name__}: {str(e)[:200]}"
                records.append(rec)
                if on_record:
                    on_record(rec)
            continue
        for name in backends:
            rec = _record(label(name, opts), shape, opts, provenance, roof)
            kernel = kernels[name]
            if isinstance(kernel, Exception):
                rec.status, rec.samples["verdict"] = "failed", "error"
                rec.error = f"adapter for {name} failed to load: {type(kernel).__name__}: {kernel}"
            else:
                measure_one(kernel, shape, inp, ref, opts, roof, rec)
            records.append(rec)
            if on_record:
                on_record(rec)
        del inp, ref
        _free_cuda(opts.device)
    return records
