"""Measure attnbench-fa4's launch configurations per shape class and write the tuning table the
launcher chooses from (attnbench/kernels/fa4_decode/tuning.json).

    python -m attnbench.microbench.fa4_sweep --grid scenarios/decode-grid.toml --heads 16/8/128 \\
        --page-size 16 --out /tmp/res/fa4-sweep/16-8-128-p16.json

Every shape of the grid (the flags narrow it, as in `attnbench microbench decode`) is timed with
each candidate of `candidates(group)` (the fallback first) the way microbench times a kernel
(CUDA-graph replay, median), checked against the float32 reference with microbench's tolerance,
then the winner once more with each of its `refinements` (launch-level switches such as pdl), and
the fastest correct result becomes that shape's row of the table, beside the fallback's GB/s. The raw numbers (--out) and the table (--table) are rewritten after every shape, so a run
cut short keeps what it measured; --skip-measured leaves out shapes --out already holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

from attnbench.errors import UserError
from attnbench.kernels.fa4_decode import tuning
from attnbench.kernels.fa4_decode.tuning import Row, Tuning
from attnbench.microbench.base import DecodeShape

# (threads, tokens_per_thread, ctas_per_sm, pipeline, smem_stages); register counts in NOTES.md
CANDIDATES = (Tuning(256, 4, 2), Tuning(256, 2, 3), Tuning(128, 4, 4), Tuning(128, 8, 3),
              Tuning(256, 2, 2, pipeline=True), Tuning(128, 2, 4, pipeline=True),
              Tuning(128, 2, 6, smem_stages=3), Tuning(128, 2, 5, smem_stages=4))
# the tensor-core kernel (v4) for wide groups: warps x stages of 8 KB K+V tiles per CTA; CTAs per SM
# by shared memory (228 KB per SM: 4 warps x 3 stages is ~101 KB, x 2 stages ~69 KB) and registers
# (~165 at D128, ~130 at D64, 128 threads)
MMA_CANDIDATES = (Tuning(128, 1, 2, smem_stages=3, mma=True), Tuning(128, 1, 3, smem_stages=2, mma=True),
                  Tuning(64, 1, 3, smem_stages=4, mma=True), Tuning(256, 1, 1, smem_stages=3, mma=True))
# From group 2: the MMA tile is then mostly padding, but decode is a memory stream and v4's per-warp
# cp.async ring streamed better at group 4 (B1 x 32768: 3276 GB/s) than v3's did at group 2 (3086)
MMA_MIN_GROUP = 2


def candidates(group: int) -> list[Tuning]:
    """The fallback of this group first (what a geometry with no measured class runs), then CANDIDATES,
    then for groups of MMA_MIN_GROUP or more MMA_CANDIDATES; a candidate the geometry cannot run is
    reported as an error row and never wins."""
    wide = MMA_CANDIDATES if group >= MMA_MIN_GROUP else ()
    return list(dict.fromkeys([tuning.fallback(group), *CANDIDATES, *wide]))


def refinements(winner: Tuning, splits: int) -> list[Tuning]:
    """Variants tried on a shape's winner only, after every candidate (at most three more timings
    per shape, not three per candidate), for what does not change how the decode streams: decode
    and combine as programmatic dependent launches (v4.1), a row's splits summed by 4 warps in the
    combine (combine v2), and both; where the winner runs 1 split there is no combine, so only the
    first."""
    wanted = [replace(winner, pdl=True)]
    if splits > 1:
        wanted += [replace(winner, combine_warps=4), replace(winner, pdl=True, combine_warps=4)]
    return [t for t in dict.fromkeys(wanted) if t != winner]


def best(results: list[dict]) -> dict | None:
    """The fastest candidate that was timed and correct."""
    ok = [r for r in results if r.get("ok") and r.get("gbps")]
    return max(ok, key=lambda r: r["gbps"]) if ok else None


def row_for(shape: DecodeShape, results: list[dict], source: str) -> Row:
    """The table row of a measured shape: the winner (None if nothing ran correctly) beside the
    fallback's GB/s from the same run."""
    group = shape.q_heads // shape.kv_heads
    win = best(results)
    fb = next((r for r in results if r["tuning"] == tuning.fallback(group).spec() and r.get("ok")), None)
    return Row(group=group, head_dim=shape.head_dim, page_size=shape.page_size, batch=shape.batch,
               context=max(shape.context_lens), tuning=Tuning.parse(win["tuning"], "sweep") if win else None,
               gbps=round(win["gbps"], 1) if win else None,
               fallback_gbps=round(fb["gbps"], 1) if fb else None, source=source)


def measure(shape: DecodeShape, cands: list[Tuning], repeats: int = 10, say=print) -> list[dict]:
    """GB/s and correctness of each candidate on one shape (GPU)."""
    from attnbench.kernels.fa4_decode.launcher import FA4Decode
    from attnbench.microbench import check, timing, work
    from attnbench.microbench.inputs import decode_inputs

    inp = decode_inputs(shape, device="cuda", seed=0)
    ref = check.reference(shape, inp)
    max_context = max(shape.context_lens)
    out = []
    for t in cands:
        res = {"tuning": t.spec()}
        try:
            dec = FA4Decode(q_heads=shape.q_heads, kv_heads=shape.kv_heads, head_dim=shape.head_dim,
                            page_size=shape.page_size, dtype=shape.dtype, max_batch=shape.batch,
                            **asdict(t)).compile()  # every Tuning field is an FA4Decode argument
            res["splits"] = dec.plan(shape.batch, max_context).num_splits
            call = lambda: dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale,  # noqa: E731
                               inp.out, max_context=max_context)
            verdict = check.run_checked(call, inp.out, ref, shape.dtype)
            res.update(rel_err=verdict.rel_err, ok=verdict.ok)
            tm = timing.time_calls([call], "cuda", repeats=repeats)
            res.update(us=tm.us, gbps=work.bytes_moved(shape) / (tm.us * 1e-6) / 1e9, graph=tm.graph)
        except Exception as e:  # noqa: BLE001 - one candidate failing must not end the sweep
            res.update(ok=False, error=f"{type(e).__name__}: {e}"[:300])
        out.append(res)
        say(f"  {shape.label():<28} p{shape.page_size:<4} {t.spec():<62} "
            + (f"{res['gbps']:6.0f} GB/s {res['splits']:>3} splits rel_err {res['rel_err']:.1e}"
               f"{'' if res['ok'] else ' WRONG'}" if "gbps" in res else res.get("error", "?")))
    return out


def shapes(grid_file: Path | None, heads: str | None, page_sizes: str | None, batch: str | None,
           context: str | None, pairs: str | None) -> list[DecodeShape]:
    """The grid's decode shapes (flags override it) for every page size asked for."""
    from attnbench.microbench import grid as grid_mod

    g = grid_mod.load(grid_file) if grid_file else grid_mod.Grid(name="fa4-sweep", op="decode")
    if g.op != "decode":
        raise UserError(f"{grid_file} is a {g.op} grid; the sweep needs a decode grid such as scenarios/decode-grid.toml")
    over = {}
    if heads:
        over["heads"] = tuple(grid_mod.parse_heads(h, 128) for h in heads.split(","))
    if batch:
        over["batch"] = grid_mod.parse_ints(batch, "batch")
    if context:
        over["lengths"] = grid_mod.parse_ints(context, "context")
    if pairs:
        over["pairs"] = grid_mod.parse_pairs(pairs, "context")
    out = []
    for page in (grid_mod.parse_ints(page_sizes, "page-size") if page_sizes else (g.page_size,)):
        found, _ = replace(g, page_size=page, **over).shapes()
        out += [s for s in found if not s.ragged]
    return out


def source_key(gpu: str, when) -> str:
    """A run's provenance key in the table: GPU and UTC time to the second, so two sweeps of one
    day (other heads, other pages) keep their own descriptions, each row naming its own."""
    return f"{gpu.replace(' ', '-')}-{when:%Y-%m-%dT%H:%M:%SZ}"


def check_source(table: tuning.Table, key: str, text: str) -> None:
    """Refuse, before any GPU time, a key the table already gives another run: merging would
    rewrite that run's description under every row that names it."""
    if table.sources.get(key, text) != text:
        raise UserError(f"the tuning table's source {key!r} describes another run ({table.sources[key][:80]}...); "
                        "pass a new --source, or leave it out for one named by GPU and time")


def _key(shape: DecodeShape) -> str:
    return f"{shape.label()} p{shape.page_size}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=Path, help="decode grid TOML (default: flags only)")
    ap.add_argument("--heads", help="q/kv/head_dim list, e.g. 16/8/128,64/8/64 (default: the grid's)")
    ap.add_argument("--page-size", help="page sizes, e.g. 16,128 (default: the grid's)")
    ap.add_argument("--batch", help="batch sizes (default: the grid's)")
    ap.add_argument("--context", help="context lengths (default: the grid's)")
    ap.add_argument("--shapes", help="BATCHxCONTEXT pairs instead of batch x context, e.g. 256x2048,1x32k")
    ap.add_argument("--out", type=Path, required=True, help="JSON of every candidate's numbers (rewritten per shape)")
    ap.add_argument("--table", type=Path, default=tuning.TABLE_PATH, help="tuning table to merge the winners into")
    ap.add_argument("--source", help="provenance key of this run in the table (default: GPU name and UTC time)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-measured", action="store_true", help="leave out shapes --out already holds")
    args = ap.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    import datetime as dt

    import torch

    todo = shapes(args.grid, args.heads, args.page_size, args.batch, args.context, args.shapes)
    if not todo:
        raise UserError("no shape to sweep (all skipped by max_kv_gib?); pick smaller shapes")
    if not torch.cuda.is_available():
        raise UserError("the sweep times kernels on a CUDA GPU and torch sees none; run it on the GPU machine")
    from attnbench import atomic, provenance

    gpu = torch.cuda.get_device_name()
    source = args.source or source_key(gpu, dt.datetime.now(dt.timezone.utc))
    report = json.loads(args.out.read_text()) if args.out.is_file() else {}
    report.setdefault("kind", "fa4_sweep")
    report["provenance"] = provenance.collect({"source": source})
    report.setdefault("shapes", {})
    table = tuning.load(args.table) if args.table.is_file() else tuning.Table()
    command = "python -m attnbench.microbench.fa4_sweep " + " ".join(sys.argv[1:])
    sources = {source: f"{gpu}, torch {torch.__version__}, bf16/fp16 as in each row; `{command}`"}
    check_source(table, source, sources[source])
    runs = sum(len(candidates(s.q_heads // s.kv_heads)) + 3 for s in todo)  # + at most 3 refinements of the winner
    print(f"fa4 sweep: {len(todo)} shapes, {runs} candidate runs on {gpu}", flush=True)
    for shape in todo:
        if args.skip_measured and _key(shape) in report["shapes"]:
            continue
        results = measure(shape, candidates(shape.q_heads // shape.kv_heads), args.repeats)
        win = best(results)
        if win:
            results += measure(shape, refinements(Tuning.parse(win["tuning"], "sweep"), win.get("splits", 1)), args.repeats)
        report["shapes"][_key(shape)] = {"shape": shape.describe(), "results": results}
        atomic.write_json(args.out, report)
        row = row_for(shape, results, source)
        table = table.merged([row], sources)
        table.save(args.table)
        print(f"  -> {_key(shape)}: {row.tuning.spec() if row.tuning else 'nothing correct'}"
              + (f" {row.gbps:.0f} GB/s (fallback {row.fallback_gbps or 0:.0f})" if row.gbps else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
