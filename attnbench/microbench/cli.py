"""`attnbench microbench decode|prefill`: thin typer layer over grid.py, run.py and output.py. The
options a scenario sets beside its grid (--repeats, --fa4-splits, --device) are declared on
run.Options' fields (default, help, bound); the others here."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Optional

import typer

from attnbench.errors import UserError
from attnbench.flags import typer_option
from attnbench.microbench.run import Options

app = typer.Typer(help="Attention kernels across backends: checked against a float32 reference, timed with "
                  "CUDA graphs, placed on the roofline.", no_args_is_help=True)

BACKENDS_HELP = "comma-separated backends (default: the grid's, else every available one with a kernel adapter); 'reference' runs anywhere"


def _check_device(device: str) -> None:
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device {device!r}: use cuda (or cuda:N) or cpu")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda but torch sees no CUDA GPU; run on a GPU machine or use --device cpu --backends reference")


def _choose_backends(flag: str | None, grid_backends: tuple[str, ...], device: str) -> tuple[list[str], list[str]]:
    """(backends to run, notes about grid/default backends left out because they are unavailable)."""
    from attnbench.backends import registry
    from attnbench.microbench import run

    if flag:
        names = [n.strip() for n in flag.split(",") if n.strip()]
        if len(set(names)) != len(names):
            raise UserError(f"--backends names a backend twice: {flag!r}")
        run.validate_backends(names, device)
        for n in names:
            if n != run.REFERENCE and not (a := registry.get(n).availability(serving=False)).ok:
                raise UserError(f"backend {n!r} is not available here: {a.reason}; drop it from --backends")
        return names, []
    if not device.startswith("cuda"):
        return [run.REFERENCE], []
    wanted = list(grid_backends) or run.adapter_names()
    names, notes = [], []
    for n in wanted:
        if n == run.REFERENCE:
            names.append(n)
            continue
        b = registry.get(n)
        a = b.availability(serving=False)
        if b.microbench and a.ok:
            names.append(n)
        else:
            notes.append(f"{n} left out: {a.reason if not a.ok else 'no microbench adapter'}")
    if not names:
        raise UserError("no backend with a microbench adapter is available here; pass --backends reference")
    return names, notes


def _grid(op: str, grid_file: Path | None, **flags):
    """Grid from the file (if any) with every flag the user gave laid over it."""
    from attnbench.microbench import grid as grid_mod

    g = grid_mod.load(grid_file) if grid_file else grid_mod.Grid(name=f"{op}-flags", op=op)
    if g.op != op:
        raise UserError(f"{grid_file} is a {g.op} grid; run it with `attnbench microbench {g.op}`")
    over = {}
    head_dim = flags["head_dim"]
    if flags["heads"] is not None:
        over["heads"] = tuple(grid_mod.parse_heads(h, head_dim or 128) for h in flags["heads"].split(","))
    elif head_dim is not None:
        over["heads"] = tuple((q, kv, head_dim) for q, kv, _ in g.heads)
    if flags.get("shapes") is not None:
        over["pairs"] = grid_mod.parse_pairs(flags["shapes"], "context" if op == "decode" else "seqlen")
    if flags["batch"] is not None:
        over["batch"] = grid_mod.parse_ints(flags["batch"], "batch")
    if flags["lengths"] is not None:
        over["lengths"] = grid_mod.parse_ints(flags["lengths"], "context" if op == "decode" else "seqlen")
    if flags.get("context") is not None:
        over["context"] = tuple(0 if c.strip() == "0" else grid_mod.parse_ints(c, "context")[0]
                                for c in flags["context"].split(","))
    for key in ("page_size", "q_len", "max_kv_gib", "causal", "ragged"):
        if flags.get(key) is not None:
            over[key] = flags[key]
    if flags["dtype"] is not None:
        over["dtype"] = grid_mod.dtype_name(flags["dtype"])
    for key in ("page_size", "q_len"):
        if over.get(key, 1) < 1:
            raise UserError(f"--{key.replace('_', '-')} must be >= 1")
    if over.get("ragged"):
        from attnbench.microbench.inputs import parse_ragged

        parse_ragged(over["ragged"])
    return grid_mod.replace(g, **over)


PLOT_EVERY_S = 60.0  # plots are refreshed during a run at most this often (summary.md after every record)


def _main(op: str, *, backends, grid_file, fa4_splits, repeats, cold_l2, device, result_dir,
          precompile=False, compile_only=False, skip_measured=False, **flags) -> None:
    import time

    from attnbench import provenance
    from attnbench.console import StatusLine
    from attnbench.microbench import output, roofline, run
    from attnbench.microbench.guard import SignalGuard

    g = _grid(op, grid_file, **flags)
    try:
        shapes, skipped = g.shapes()
    except ValueError as e:
        raise UserError(f"bad shape: {e}") from None
    _check_device(device)
    names, notes = _choose_backends(backends, g.backends, device)
    if fa4_splits and "fa4" not in names:
        raise UserError("--fa4-splits applies to the fa4 backend; add fa4 to --backends")
    for line in notes + [f"skipped {s}" for s in skipped]:
        print(f"note: {line}", file=sys.stderr)
    if not shapes:
        raise UserError("no shape left to run (all skipped by max_kv_gib); raise max_kv_gib or pick smaller shapes")

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result_dir = Path(result_dir or Path("results") / f"{stamp}-microbench-{op}")
    opts = run.Options(device=device, repeats=repeats, cold_l2=cold_l2, fa4_splits=fa4_splits, precompile=precompile)
    status = StatusLine(every_s=15, stream=sys.stderr)
    if compile_only:  # warm-up: first call of every backend x shape (fills JIT caches), nothing timed or written
        t0 = time.monotonic()
        run.run(shapes, names, opts, compile_only=True)
        print(f"compile-only: {', '.join(names)} x {len(shapes)} shape(s) in {time.monotonic() - t0:.1f} s")
        return
    roof = None
    if device.startswith("cuda"):
        status("measuring the roofline (copy GB/s, bf16 matmul TFLOP/s)")
        roof = roofline.measure(device)
        status.done(f"roofline: {roof['gpu_name']}: {roof['measured_gbps']:.0f} GB/s copy, "
                    f"{roof['measured_tflops']:.0f} TFLOP/s bf16 matmul")
    from dataclasses import asdict

    prov = provenance.collect({"roofline": roof, "microbench_options": asdict(opts), "grid": g.source or None,
                               "skipped_shapes": skipped})
    writer = output.ResultWriter(result_dir, op)
    inflight = run.InFlight()
    last_plot = [time.monotonic()]

    def on_record(rec) -> None:  # every result is on disk (JSON, summary.md) as soon as it exists
        writer.add(rec)
        output.write_summary(writer, roof, skipped)
        if time.monotonic() - last_plot[0] >= PLOT_EVERY_S:
            output.write_plots(writer)
            last_plot[0] = time.monotonic()

    def save(why: str) -> None:
        """After an interrupt: what was cut short becomes an "interrupted" record, then summary,
        terminal table and plots from every record the directory holds."""
        with writer.lock:
            cut = run.interrupted_record(inflight, opts, prov, roof, why)
            if cut is not None:
                writer.add(cut)
                print(f"interrupted: {cut.error}", file=sys.stderr, flush=True)
            inflight.set(None)
            if writer.all(op):
                output.write_summary(writer, roof, skipped)
                print(output.table(writer.all(op), op), flush=True)
                n = len(output.write_plots(writer))
                print(f"\nresults: {result_dir}/ (summary.md, {n} plot(s), one JSON per backend)", flush=True)

    skip = (lambda b, shape: writer.measured(b, shape.label(), cold_l2)) if skip_measured else None
    with SignalGuard(on_abort=save) as guard:
        try:
            run.run(shapes, names, opts, roof=roof, provenance=prov, on_record=on_record,
                    on_progress=lambda s: status(f"{op} {s}"), skip=skip, inflight=inflight)
        except KeyboardInterrupt:
            guard.standing_down()
            status.done()
            save("interrupted (SIGINT/SIGTERM, e.g. a time limit)")
            raise
        guard.standing_down()
    status.done()
    if writer.all(op):  # partial results still get a summary and plots
        save("")
    failed = [r for r in writer.all(op) if r.samples.get("verdict") == "FAIL"]
    if failed:
        print(f"FAIL: {len(failed)} result(s) over tolerance: "
              + ", ".join(sorted({r.backend for r in failed})), file=sys.stderr)


Backends = typer.Option(None, "--backends", help=BACKENDS_HELP)
Heads = typer.Option(None, "--heads", help="q/kv heads, optionally /head_dim; comma-separated list, e.g. 16/8,32/8/128")
HeadDim = typer.Option(None, "--head-dim", help="head dimension (default 128)")
PageSize = typer.Option(None, "--page-size", help="KV cache page size in tokens (default 16)")
Dtype = typer.Option(None, "--dtype", help="bf16 or fp16 (default bf16)")
GridOpt = typer.Option(None, "--grid", help="grid TOML file, e.g. scenarios/decode-grid.toml; flags override it")
Splits = typer_option(Options, "fa4_splits")
Repeats = typer_option(Options, "repeats")
Cold = typer.Option(False, "--cold-l2", help="rotate input copies so every call finds a cold L2 cache")
Device = typer_option(Options, "device")
ResultDir = typer.Option(None, "--result-dir", help="default results/<UTC>-microbench-<op>")
MaxKv = typer.Option(None, "--max-kv-gib", help="skip shapes whose inputs need more GiB than this (default 40)")
Precompile = typer.Option(False, "--precompile", help="first call (JIT/CuTe compile, planning) of every backend x shape before any shape is timed, each reported with its time")
CompileOnly = typer.Option(False, "--compile-only", help="only that compile pass (a warm-up that fills on-disk JIT caches, e.g. FlashInfer's); nothing is timed or written")
Shapes = typer.Option(None, "--shapes", help="BATCHxLENGTH pairs run instead of the batch x length product, e.g. 256x2048,1x32k")
SkipMeasured = typer.Option(False, "--skip-measured", help="leave out backend x shape pairs the result directory already holds a measurement for (resume a cut-short run)")


@app.command()
def decode(
    backends: Optional[str] = Backends,
    batch: Optional[str] = typer.Option(None, "--batch", help="batch sizes, e.g. 1,4 (default 1,4)"),
    context: Optional[str] = typer.Option(None, "--context", help="context lengths, e.g. 1024,32k (default 1024,32768)"),
    heads: Optional[str] = Heads,
    head_dim: Optional[int] = HeadDim,
    page_size: Optional[int] = PageSize,
    q_len: Optional[int] = typer.Option(None, "--q-len", help="query tokens per sequence (speculative decoding: > 1)"),
    ragged: Optional[str] = typer.Option(None, "--ragged", help="per-sequence context from DIST:LO:HI (uniform|lognormal), e.g. uniform:512:4096"),
    dtype: Optional[str] = Dtype,
    grid: Optional[Path] = GridOpt,
    fa4_splits: Optional[int] = Splits,
    repeats: int = Repeats,
    cold_l2: bool = Cold,
    device: str = Device,
    result_dir: Optional[Path] = ResultDir,
    max_kv_gib: Optional[float] = MaxKv,
    precompile: bool = Precompile,
    compile_only: bool = CompileOnly,
    skip_measured: bool = SkipMeasured,
    shapes: Optional[str] = Shapes,
) -> None:
    """Paged-KV decode (GQA, q_len 1 or more), each backend checked then timed."""
    _main("decode", backends=backends, grid_file=grid, fa4_splits=fa4_splits, repeats=repeats, cold_l2=cold_l2,
          device=device, result_dir=result_dir, precompile=precompile, compile_only=compile_only,
          skip_measured=skip_measured, shapes=shapes, batch=batch, lengths=context, heads=heads, head_dim=head_dim,
          page_size=page_size, q_len=q_len, ragged=ragged, dtype=dtype, max_kv_gib=max_kv_gib)


@app.command()
def prefill(
    backends: Optional[str] = Backends,
    batch: Optional[str] = typer.Option(None, "--batch", help="sequences per batch, e.g. 1,8"),
    seqlen: Optional[str] = typer.Option(None, "--seqlen", help="new tokens per sequence, e.g. 1k,8k"),
    context: Optional[str] = typer.Option(None, "--context", help="cached prefix per sequence (chunked prefill against a paged KV cache); 0 = none"),
    heads: Optional[str] = Heads,
    head_dim: Optional[int] = HeadDim,
    page_size: Optional[int] = PageSize,
    causal: Optional[bool] = typer.Option(None, "--causal/--no-causal", help="causal mask (default causal)"),
    dtype: Optional[str] = Dtype,
    grid: Optional[Path] = GridOpt,
    fa4_splits: Optional[int] = Splits,
    repeats: int = Repeats,
    cold_l2: bool = Cold,
    device: str = Device,
    result_dir: Optional[Path] = ResultDir,
    max_kv_gib: Optional[float] = MaxKv,
    precompile: bool = Precompile,
    compile_only: bool = CompileOnly,
    skip_measured: bool = SkipMeasured,
    shapes: Optional[str] = Shapes,
) -> None:
    """Varlen prefill over packed sequences, and chunked prefill against a paged KV cache."""
    _main("prefill", backends=backends, grid_file=grid, fa4_splits=fa4_splits, repeats=repeats, cold_l2=cold_l2,
          device=device, result_dir=result_dir, precompile=precompile, compile_only=compile_only,
          skip_measured=skip_measured, shapes=shapes, batch=batch, lengths=seqlen, context=context, heads=heads,
          head_dim=head_dim, page_size=page_size, causal=causal, dtype=dtype, max_kv_gib=max_kv_gib)


@app.command()
def summarize(result_dirs: list[Path] = typer.Argument(..., help="microbench result directories")) -> None:
    """Rebuild summary.md, the plots and the terminal table from the JSON records in each directory
    (e.g. after a run was killed before it could write them); directories without records are noted."""
    from attnbench.microbench import output

    done = 0
    for d in result_dirs:
        writer = output.ResultWriter(d) if d.is_dir() else None
        if writer is None or not writer.all():
            print(f"note: {d}: no microbench records (decode-*.json / prefill-*.json)", file=sys.stderr)
            continue
        output.write_summary(writer, None)
        n = len(output.write_plots(writer))
        for op in ("decode", "prefill"):
            if writer.all(op):
                print(output.table(writer.all(op), op))
        print(f"\nresults: {d}/ (summary.md, {n} plot(s), one JSON per backend)\n")
        done += 1
    if not done:
        raise UserError("no microbench records in " + ", ".join(map(str, result_dirs)))
