"""A result tree with every kind the report knows, and one it does not, built by hand (small arrays)."""

from __future__ import annotations

import json
from pathlib import Path

from attnbench.records.record import Record

GPU = "NVIDIA H100 80GB HBM3"


def prov(utc_time: str, sha: str) -> dict:
    return {"attnbench_version": "0.1.0", "git_sha": sha, "gpu_name": GPU, "gpu_driver": "570.86",
            "packages": {"vllm": "0.26.0", "torch": "2.11.0"}, "command": "attnbench run scenarios/seed-serve.toml",
            "utc_time": utc_time}


def serve(backend: str, out_tps: float, ttft_ms: float, utc_time: str, sha: str, status: str = "ok") -> Record:
    scen = {"input_len": 1000, "output_len": 1000, "num_prompts": 3, "request_rate": None, "burstiness": 1.0,
            "max_concurrency": None, "seed": 0, "warmup": 0, "model": "qwen3-0.6b", "served_model": "qwen3-0.6b",
            "endpoint": None, "serve_args": [], "percentiles": [50, 90, 99], "model_shape": None}
    if status != "ok":
        return Record("serve", backend, scen, provenance=prov(utc_time, sha), status="failed",
                      error="server exited with code 1 while starting")
    m = {"completed": 3, "failed": 0, "duration": 3.0, "output_throughput": out_tps,
         "total_token_throughput": 2 * out_tps, "max_output_tokens_per_s": out_tps * 1.1,
         "mean_ttft_ms": ttft_ms, "median_ttft_ms": ttft_ms, "p99_ttft_ms": ttft_ms * 1.5,
         "mean_tpot_ms": 20.0, "median_tpot_ms": 20.0, "p99_tpot_ms": 25.0, "mean_itl_ms": 20.0}
    s = {"input_lens": [1000] * 3, "output_lens": [1000] * 3, "ttfts": [ttft_ms / 1000 * f for f in (0.5, 1, 1.5)],
         "itls": [[0.02, 0.02]] * 3, "e2els": [20.0] * 3, "tpots": [0.019, 0.02, 0.021], "start_times": [0, 0, 0],
         "errors": [None] * 3, "timeline": {"t": [0, 1, 2], "output_tok_s": [out_tps, out_tps * 1.1, out_tps / 2]}}
    return Record("serve", backend, scen, m, s, prov(utc_time, sha))


def microbench(backend: str, op: str, seqlen: int, us: float, gbps: float, tflops: float) -> Record:
    """As attnbench.microbench writes it: shape fields and a label; the GPU's ceilings in provenance."""
    scen = {"op": op, "batch": 32, "context": seqlen, "num_q_heads": 16, "num_kv_heads": 8, "head_dim": 128,
            "dtype": "bfloat16", "label": f"{op} b32 ctx{seqlen} h16/8 d128", "cold_l2": True, "repeats": 2}
    p = prov("2026-11-24T12:00:00Z", "bbbbbbb") | {"roofline": {"measured_gbps": 3000.0, "measured_tflops": 700.0,
                                                                "datasheet_gbps": 3350, "datasheet_tflops": 989}}
    return Record("microbench", backend, scen, {"us": us, "gbps": gbps, "tflops": tflops,
                                                "pct_measured_bw": gbps / 3000 * 100, "rel_err": 1e-3},
                  {"times_us": [us, us * 1.01]}, p)


def gpqa(backend: str, acc: float, low: float, high: float) -> Record:
    scen = {"eval": "gpqa", "dataset": "diamond", "model": "gpt-oss-20b", "endpoint": None, "effort": "low",
            "repeats": 1, "seed": 0, "serve_args": []}
    return Record("gpqa", backend, scen, {"accuracy": acc, "score_pct": 100 * acc, "ci_low": low, "ci_high": high,
                                          "n_samples": 198},
                  {"per_repeat": [acc]}, prov("2026-11-24T12:00:00Z", "bbbbbbb"))


def parity(backend: str, top1: float, ok: bool) -> Record:
    """No interval of its own: the report derives top-1 agreement's from prefill_positions."""
    return Record("parity", backend, {"model": "qwen3-0.6b", "reference": "fa2", "num_prompts": 16},
                  {"max_abs_dlogprob": 0.05, "mean_abs_dlogprob": 0.002, "top1_agreement": top1,
                   "prefill_positions": 400, "passed": int(ok)},
                  {"threshold_failures": [] if ok else ["top1_agreement 0.90 < 0.99"]},
                  prov("2026-11-24T12:00:00Z", "bbbbbbb"))


def write_tree(root: Path) -> dict[str, Path]:
    """baseline/ (an older commit) and current/ (newer, with a failed backend), plus other kinds."""
    base, cur = root / "baseline", root / "current"
    serve("fa3", 14000.0, 900.0, "2026-11-20T10:00:00Z", "aaaaaaa").save(base / "fa3" / "serve-1000x1000.json")
    serve("fa4", 10500.0, 1250.0, "2026-11-20T10:05:00Z", "aaaaaaa").save(base / "fa4" / "serve-1000x1000.json")
    serve("fa3", 14200.0, 880.0, "2026-11-24T12:00:00Z", "bbbbbbb").save(cur / "fa3" / "serve-1000x1000.json")
    serve("fa4", 11000.0, 1200.0, "2026-11-24T12:05:00Z", "bbbbbbb").save(cur / "fa4" / "serve-1000x1000.json")
    serve("flashinfer", 0, 0, "2026-11-24T12:10:00Z", "bbbbbbb", status="failed").save(
        cur / "flashinfer" / "serve-1000x1000.json")
    for backend, scale in (("fa3", 1.0), ("attnbench-fa4", 1.2)):
        for seqlen in (1024, 8192):
            microbench(backend, "decode", seqlen, 50 / scale * seqlen / 1024, 2000 * scale, 8.0 * scale).save(
                cur / "microbench" / f"{backend}-decode-{seqlen}.json")
        microbench(backend, "prefill", 8192, 900 / scale, 400 * scale, 500 * scale).save(
            cur / "microbench" / f"{backend}-prefill-8192.json")
    gpqa("fa3", 0.62, 0.55, 0.69).save(cur / "gpqa" / "fa3.json")
    gpqa("attnbench-fa4", 0.60, 0.53, 0.67).save(cur / "gpqa" / "attnbench-fa4.json")
    parity("fa4", 0.995, True).save(cur / "parity" / "fa4.json")
    parity("attnbench-fa4", 0.90, False).save(cur / "parity" / "attnbench-fa4.json")
    (cur / "future").mkdir()
    (cur / "future" / "energy.json").write_text(json.dumps(
        {"schema_version": 1, "kind": "energy", "backend": "fa3", "joules_per_token": 0.12}))
    (cur / "manifest.json").write_text(json.dumps({"scenario": "seed-serve", "runs": 5}))  # not a record
    return {"baseline": base, "current": cur}
