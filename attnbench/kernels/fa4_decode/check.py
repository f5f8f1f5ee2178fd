"""On-GPU acceptance check of the attnbench-fa4 decode kernels, for the lead to run on the H100.

    python -m attnbench.kernels.fa4_decode.check --out results/h100/fa4_decode_check.json
    compute-sanitizer --tool memcheck python -m attnbench.kernels.fa4_decode.check --sanitize

Correctness: every shape of SHAPES against reference.decode in float32 (rel err <= 1e-2, outputs
poisoned with NaN beforehand so an unwritten element shows up). Speed: the TIMED shapes under
CUDA-graph replay with CUDA events (microbench's timing), GB/s next to FA3 when vLLM is there.
Each shape runs in its own try/except and a watchdog ends the process if anything hangs; the
JSON is rewritten after every shape so a crash keeps what was measured.
"""

from __future__ import annotations

import argparse
import faulthandler
import sys
import time
import traceback

from attnbench.microbench.base import DecodeShape

REL_TOL = 1e-2
L2_BYTES = 50 * 2**20  # H100 L2


def _ragged(batch: int, lo: int, hi: int, seed: int = 1) -> tuple[int, ...]:
    import random

    rng = random.Random(seed)
    return tuple(rng.randint(lo, hi) for _ in range(batch))


def _shapes() -> list[tuple[DecodeShape, int | None]]:
    """(shape, forced num_splits or None for the planner's choice)."""
    out = []
    for dtype in ("bfloat16", "float16"):
        for d in (128, 64):
            for page in (16, 64):
                for batch, ctx in ((1, 1), (1, 17), (4, 1000), (32, 2048), (1, 32768), (256, 2048)):
                    if (d, page) != (128, 16) and batch == 256:
                        continue  # the big shape once per dtype is enough
                    out.append((DecodeShape.uniform(batch, ctx, head_dim=d, page_size=page, dtype=dtype), None))
    for dtype in ("bfloat16", "float16"):
        out.append((DecodeShape(batch=32, context_lens=_ragged(32, 1, 4000), dtype=dtype), None))
        out.append((DecodeShape(batch=4, context_lens=(1, 17, 1000, 2048), dtype=dtype), 8))
        out.append((DecodeShape(batch=4, context_lens=(5, 16, 31, 33), head_dim=64, page_size=64, dtype=dtype), 3))
    out.append((DecodeShape.uniform(4, 1000, q_heads=32, kv_heads=8), None))  # GQA group 4
    out.append((DecodeShape.uniform(2, 700, q_heads=8, kv_heads=8), 5))  # MHA
    out.append((DecodeShape.uniform(2, 300, q_heads=32, kv_heads=2), 3))  # group 16 (spills, slow)
    return out


SHAPES = _shapes()
TIMED = [DecodeShape.uniform(256, 2048), DecodeShape.uniform(1, 32768)]
SANITIZE = [(DecodeShape(batch=3, context_lens=(1, 40, 100)), 1), (DecodeShape(batch=3, context_lens=(1, 40, 100)), 4),
            (DecodeShape(batch=2, context_lens=(17, 64), head_dim=64, page_size=64, dtype="float16"), 2)]


def _say(*a) -> None:
    print(*a, flush=True)


VARIANTS = {"default": {}, "pipelined": {"num_threads": 128, "tokens_per_thread": 2, "pipeline": True},
            "smem": {"num_threads": 128, "tokens_per_thread": 2, "smem_stages": 3}}


def _decoder(shape: DecodeShape, device, **tuning):
    from attnbench.kernels.fa4_decode.launcher import FA4Decode

    return FA4Decode(q_heads=shape.q_heads, kv_heads=shape.kv_heads, head_dim=shape.head_dim,
                     page_size=shape.page_size, dtype=shape.dtype, max_batch=shape.batch, device=device, **tuning)


def _compare(inp, dec, max_context, splits, ref) -> dict:
    import torch

    inp.out.fill_(float("nan"))
    dec(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale, inp.out,
        max_context=max_context, num_splits=splits)
    torch.cuda.synchronize()
    nan = int(inp.out.isnan().sum())
    err = float((inp.out.float() - ref).norm() / ref.norm().clamp_min(1e-6))
    return {"rel_err": err, "nan": nan, "ok": nan == 0 and err <= REL_TOL}


def check_shape(shape: DecodeShape, splits: int | None, seed: int = 0) -> dict:
    """Run each kernel variant once on fresh random inputs and compare with the float32 reference."""
    from attnbench.kernels.fa4_decode import reference
    from attnbench.microbench.inputs import decode_inputs

    inp = decode_inputs(shape, device="cuda", seed=seed)
    ref = reference.decode(inp.q, inp.k_cache, inp.v_cache, inp.block_table, inp.seq_lens, inp.scale)
    max_context = max(shape.context_lens)
    res = {"shape": shape.describe(), "label": shape.label(), "planned": splits is None}
    for name, tuning in VARIANTS.items():
        try:
            dec = _decoder(shape, inp.q.device, **tuning)
        except ValueError as e:  # this variant's fixed launch config does not fit the shape
            res[name] = {"ok": True, "skipped": str(e)}
            continue
        try:
            res[name] = _compare(inp, dec, max_context, splits, ref)
            res[name]["splits"] = splits or dec.plan(shape.batch, max_context).num_splits
        except Exception as e:  # noqa: BLE001
            res[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:1000]}
    res["ok"] = all(res[n]["ok"] for n in VARIANTS)
    return res


def _fmt(r: dict) -> str:
    if "skipped" in r:
        return "skipped (config does not fit)"
    if "error" in r:
        return f"ERROR {r['error'][:200]}"
    return f"{'ok' if r['ok'] else 'BAD'} splits={r['splits']:<3} rel_err={r['rel_err']:.2e} nan={r['nan']}"


def time_shape(shape: DecodeShape) -> dict:
    """GB/s (bytes_moved / time) of attnbench-fa4 and, when importable, FA3 on the same inputs."""
    import torch

    from attnbench.microbench import timing, work
    from attnbench.microbench.inputs import decode_inputs
    from attnbench.microbench.kernels.attnbench_fa4 import AttnbenchFA4

    free, _ = torch.cuda.mem_get_info()
    copies = timing.cold_copies(work.footprint_bytes(shape), L2_BYTES, free, max_copies=4)
    inputs = [decode_inputs(shape, device="cuda", seed=i) for i in range(copies)]
    res = {"label": shape.label(), "shape": shape.describe(), "copies": copies}
    kernels = {"attnbench-fa4": AttnbenchFA4()}
    try:
        import vllm.vllm_flash_attn  # noqa: F401

        from attnbench.microbench.kernels.flash_attn import FA3

        kernels["fa3"] = FA3()
    except Exception as e:  # noqa: BLE001
        res["fa3_unavailable"] = f"{type(e).__name__}: {e}"[:200]
    for name, kernel in kernels.items():
        try:
            fns = [kernel.decode(shape, inp) for inp in inputs]
            t = timing.time_calls(fns, "cuda", repeats=20)
            res[name] = {"us": t.us, "gbps": work.bytes_moved(shape) / (t.us * 1e-6) / 1e9,
                         "graph": t.graph, "note": t.note}
        except Exception as e:  # noqa: BLE001
            res[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
    return res


# (threads, tokens_per_thread, ctas_per_sm, pipeline, smem_stages): register counts for each are in NOTES.md
SWEEP = [(256, 4, 2, False, 0), (256, 2, 3, False, 0), (128, 4, 4, False, 0), (128, 8, 3, False, 0),
         (256, 2, 2, True, 0), (128, 2, 4, True, 0), (128, 2, 6, False, 3), (128, 2, 5, False, 4)]


def sweep_shape(shape: DecodeShape) -> dict:
    """GB/s of each launch configuration in SWEEP on one shape (to pick default_tuning by measurement)."""
    import torch

    from attnbench.kernels.fa4_decode import reference
    from attnbench.kernels.fa4_decode.launcher import FA4Decode
    from attnbench.microbench import timing, work
    from attnbench.microbench.inputs import decode_inputs

    free, _ = torch.cuda.mem_get_info()
    copies = timing.cold_copies(work.footprint_bytes(shape), L2_BYTES, free, max_copies=4)
    inputs = [decode_inputs(shape, device="cuda", seed=i) for i in range(copies)]
    i0 = inputs[0]
    ref = reference.decode(i0.q, i0.k_cache, i0.v_cache, i0.block_table, i0.seq_lens, i0.scale)
    res = {"label": shape.label(), "shape": shape.describe(), "configs": []}
    for threads, tokens, ctas, pipeline, stages in SWEEP:
        row = {"num_threads": threads, "tokens_per_thread": tokens, "ctas_per_sm": ctas, "pipeline": pipeline,
               "smem_stages": stages}
        try:
            dec = FA4Decode(q_heads=shape.q_heads, kv_heads=shape.kv_heads, head_dim=shape.head_dim,
                            page_size=shape.page_size, dtype=shape.dtype, max_batch=shape.batch,
                            num_threads=threads, tokens_per_thread=tokens, ctas_per_sm=ctas,
                            pipeline=pipeline, smem_stages=stages).compile()
            mc = max(shape.context_lens)
            row["splits"] = dec.plan(shape.batch, mc).num_splits
            fns = [(lambda i=i, dec=dec, mc=mc: dec(i.q, i.k_cache, i.v_cache, i.block_table, i.seq_lens,
                                                    i.scale, i.out, max_context=mc)) for i in inputs]
            t = timing.time_calls(fns, "cuda", repeats=10)
            row.update(us=t.us, gbps=work.bytes_moved(shape) / (t.us * 1e-6) / 1e9, graph=t.graph)
            row.update(_compare(inputs[0], dec, mc, None, ref))
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {e}"[:300]
        res["configs"].append(row)
        _say(f"  SWEEP {shape.label():<30} threads={threads} T={tokens} ctas/SM={ctas} pipeline={pipeline} stages={stages}: "
             + (f"{row['gbps']:.0f} GB/s ({row['us']:.1f} us, {row['splits']} splits, rel_err {row['rel_err']:.1e}"
               f"{'' if row['ok'] else ' WRONG'})" if "rel_err" in row else row.get("error", "?")))
    return res


def _save(path, report) -> None:
    if path:
        from attnbench.atomic import write_json

        write_json(path, report)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="JSON file for the results (rewritten after every shape)")
    ap.add_argument("--sanitize", action="store_true", help="a few tiny shapes, no timing (run under compute-sanitizer)")
    ap.add_argument("--no-time", action="store_true", help="correctness only")
    ap.add_argument("--sweep", action="store_true", help="only time the launch configurations of SWEEP on TIMED shapes")
    ap.add_argument("--watchdog", type=float, default=540.0, help="abort (with stacks) after this many seconds")
    args = ap.parse_args(argv)
    faulthandler.dump_traceback_later(args.watchdog, exit=True, file=sys.__stderr__)
    try:
        return _run(args)
    finally:
        faulthandler.cancel_dump_traceback_later()


def _run(args) -> int:
    import torch

    if not torch.cuda.is_available():
        _say("FAIL: no CUDA device")
        return 2
    from attnbench import provenance

    report = {"kind": "fa4_decode_check", "provenance": provenance.collect({}), "checks": [], "timings": []}
    t0 = time.time()
    if args.sweep:
        report["sweep"] = []
        for shape in TIMED:
            try:
                report["sweep"].append(sweep_shape(shape))
            except Exception as e:  # noqa: BLE001
                _say(f"  SWEEP {shape.label()} ERROR {type(e).__name__}: {e}"[:400])
            _save(args.out, report)
        return 0
    shapes = SANITIZE if args.sanitize else SHAPES
    _say(f"attnbench-fa4 decode check: {len(shapes)} shapes on {torch.cuda.get_device_name()}")
    for shape, splits in shapes:
        try:
            r = check_shape(shape, splits)
            _say(f"  {'PASS' if r['ok'] else 'FAIL'} {r['label']:<34} "
                 + "  ".join(f"{n}: {_fmt(r[n])}" for n in VARIANTS))
        except Exception as e:  # noqa: BLE001
            r = {"label": shape.label(), "shape": shape.describe(), "splits": splits, "ok": False,
                 "error": f"{type(e).__name__}: {e}"[:2000], "traceback": traceback.format_exc()[-3000:]}
            _say(f"  ERROR {shape.label()}: {r['error'][:300]}")
        report["checks"].append(r)
        _save(args.out, report)
    if not (args.sanitize or args.no_time):
        for shape in TIMED:
            try:
                r = time_shape(shape)
            except Exception as e:  # noqa: BLE001
                r = {"label": shape.label(), "error": f"{type(e).__name__}: {e}"[:2000]}
            line = "  ".join(f"{k}: {v['gbps']:.0f} GB/s ({v['us']:.1f} us{'' if v['graph'] else ', eager'})"
                             if "gbps" in v else f"{k}: {v.get('error', '?')[:120]}"
                             for k, v in r.items() if k in ("attnbench-fa4", "fa3"))
            _say(f"  TIME {r['label']:<34} {line or r.get('error', '')}")
            report["timings"].append(r)
            _save(args.out, report)
    failed = [c for c in report["checks"] if not c["ok"]]
    report["ok"] = not failed
    _save(args.out, report)
    _say(f"{'PASS' if not failed else 'FAIL'}: {len(report['checks']) - len(failed)}/{len(report['checks'])} "
         f"shapes correct in {time.time() - t0:.0f}s" + (f"; results in {args.out}" if args.out else ""))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
