"""Serve records built by hand for the presentation tests (summary, plots): small arrays, known numbers."""

from __future__ import annotations

from attnbench.records.record import Record

GPU = "NVIDIA H100 80GB HBM3"


def provenance(utc_time: str = "2026-11-24T12:00:00Z", sha: str = "abc1234") -> dict:
    return {"attnbench_version": "0.1.0", "git_sha": sha, "gpu_name": GPU, "gpu_driver": "570.86",
            "packages": {"vllm": "0.26.0", "torch": "2.11.0"}, "command": "attnbench serve-bench --input 1000",
            "utc_time": utc_time}


def scenario(input_len: int = 1000, output_len: int = 1000, num_prompts: int = 4) -> dict:
    return {"input_len": input_len, "output_len": output_len, "num_prompts": num_prompts, "request_rate": None,
            "burstiness": 1.0, "max_concurrency": None, "seed": 0, "warmup": 0, "model": "qwen3-0.6b",
            "served_model": "qwen3-0.6b", "endpoint": None, "serve_args": [], "percentiles": [50, 90, 99],
            "model_shape": {"num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
                            "head_dim": 128, "dtype": "bfloat16", "block_size": 16}}


def serve(backend: str, out_tps: float, ttft_ms: float, tpot_ms: float | None = 20.0, input_len: int = 1000,
          output_len: int = 1000, utc_time: str = "2026-11-24T12:00:00Z", sha: str = "abc1234") -> Record:
    """A successful 4-request run; every latency metric is derived from ttft_ms / tpot_ms."""
    n = 4
    ttfts = [ttft_ms / 1000 * f for f in (0.5, 1.0, 1.0, 1.5)]  # mean = median = ttft_ms
    tpots = [None] * n if tpot_ms is None else [tpot_ms / 1000] * n
    m = {"completed": n, "failed": 0, "duration": 10.0, "total_input_tokens": n * input_len,
         "total_output_tokens": n * output_len, "request_throughput": 0.4, "request_goodput": None,
         "output_throughput": out_tps, "total_token_throughput": out_tps * (input_len + output_len) / output_len,
         "max_output_tokens_per_s": out_tps * 1.2, "max_concurrent_requests": n}
    for name, mean in (("ttft", ttft_ms), ("tpot", tpot_ms), ("itl", tpot_ms), ("e2el", 5000.0)):
        for stat in ("mean", "median", "p50", "p90", "p99"):
            m[f"{stat}_{name}_ms"] = None if mean is None else (mean * 1.4 if stat == "p99" else mean)
        m[f"std_{name}_ms"] = None if mean is None else 1.0
    samples = {"input_lens": [input_len] * n, "output_lens": [output_len] * n, "ttfts": ttfts,
               "itls": [[] if tpot_ms is None else [tpot_ms / 1000] * 5 for _ in range(n)],
               "e2els": [5.0] * n, "tpots": tpots, "start_times": [0.0] * n, "errors": [None] * n,
               "timeline": {"t": [0, 1, 2, 3], "output_tok_s": [0, out_tps, out_tps * 1.2, out_tps / 2]},
               "inflight": {"interval_s": 0.05, "source": "client", "t": [0.0], "decode_ctx": [[]],
                            "prefill_len": [[input_len] * n]}}
    return Record(kind="serve", backend=backend, scenario=scenario(input_len, output_len, n), metrics=m,
                  samples=samples, provenance=provenance(utc_time, sha))


def failed(backend: str, reason: str, input_len: int = 1000, output_len: int = 1000) -> Record:
    return Record(kind="serve", backend=backend, scenario=scenario(input_len, output_len), status="failed",
                  error=reason, provenance=provenance(), samples={"server_log_tail": ["boom"]})
