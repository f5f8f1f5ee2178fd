"""Serve run directories built by hand for explain's tests: known in-flight samples and TPOTs."""

from __future__ import annotations

from pathlib import Path

from attnbench.records.record import Record

TINY = {"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "dtype": "float16", "block_size": 16}


def serve(backend: str, tpot_ms: float, decode_ctx: list[list[int]], prefill_len: list[list[int]] | None = None,
          model_shape: dict | None = TINY, input_len: int = 32, output_len: int = 32, inflight: bool = True,
          status: str = "ok") -> Record:
    metrics = {"completed": 4, "failed": 0, "duration": 1.0, "mean_tpot_ms": tpot_ms, "median_tpot_ms": tpot_ms * 0.9,
               "output_throughput": 128 / 1.0}
    samples = {"input_lens": [input_len] * 4, "output_lens": [output_len] * 4}
    if inflight:
        samples["inflight"] = {"interval_s": 0.05, "source": "client", "t": [0.05 * i for i in range(len(decode_ctx))],
                               "decode_ctx": decode_ctx,
                               "prefill_len": prefill_len if prefill_len is not None else [[] for _ in decode_ctx]}
    scenario = {"input_len": input_len, "output_len": output_len, "num_prompts": 4, "request_rate": None,
                "burstiness": 1.0, "max_concurrency": None, "seed": 0, "warmup": 0, "model": "tiny",
                "served_model": "tiny", "endpoint": None, "serve_args": [], "percentiles": [50, 90, 99],
                "model_shape": model_shape}
    if status != "ok":
        return Record(kind="serve", backend=backend, scenario=scenario, status="failed", error="server exited\nboom",
                      provenance={"utc_time": "2026-11-24T12:00:00Z"})
    return Record(kind="serve", backend=backend, scenario=scenario, metrics=metrics, samples=samples,
                  provenance={"utc_time": "2026-11-24T12:00:00Z", "git_sha": "abc1234"})


def two_backends() -> list[Record]:
    """fa3 decodes 4 sequences of ~48 tokens for 3 samples; fa4 the same, with a slower step."""
    steady = [[40, 48, 48, 52]] * 3  # each rounds to 48 (3 pages)
    return [serve("fa3", 2.0, [[]] + steady, [[32] * 4] + [[]] * 3), serve("fa4", 3.0, steady)]


def write_run(run_dir: Path, records: list[Record]) -> Path:
    for rec in records:
        rec.save(run_dir / rec.backend / f"serve-{rec.scenario['input_len']}x{rec.scenario['output_len']}.json")
    return run_dir
