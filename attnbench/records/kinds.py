"""The record kinds attnbench writes, declared once: each kind's metrics (which way is better, unit,
label), the headline set compare shows by default, the report's view of it, and the identity that
says two records measure the same thing. compare, report, the serve summaries and explain read
these declarations; a metric no kind declares falls back to compare.direction's name patterns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

HIGHER, LOWER, UNKNOWN = 1, -1, 0


@dataclass(frozen=True)
class Metric:
    name: str  # the key in the record (vLLM's --save-result name for serve)
    direction: int  # HIGHER or LOWER is better; UNKNOWN: reported, never judged
    unit: str = ""
    label: str = ""  # a human name with its unit, for axes and history tables
    short: str = ""  # a column header where space is tight (the serve-bench table)


@dataclass(frozen=True)
class Kind:
    name: str
    title: str  # the report section's heading
    metrics: tuple[Metric, ...] = ()
    headline: tuple[str, ...] | None = None  # compare shows these rows by default; None: every row
    columns: tuple[str, ...] = ()  # metrics the report's tables show first
    history: tuple[str, ...] = ()  # metrics the report draws over runs
    intervals: tuple[str, ...] = ()  # metrics the report charts with their confidence intervals
    label_keys: tuple[str, ...] = ()  # scenario keys that name a record in a table
    compared: bool = True  # False: compare skips it (derived from other records of the same run)
    prefixes: tuple[str, ...] = ()  # "hf_x" is metric x measured against another reference

    def metric(self, name: str) -> Metric | None:
        found = next((m for m in self.metrics if m.name == name), None)
        base = next((name.removeprefix(p) for p in self.prefixes if name.startswith(p)), None)
        return found if found or base is None else self.metric(base)


def _m(name: str, direction: int, unit: str = "", label: str = "", short: str = "") -> Metric:
    return Metric(name, direction, unit, label or name, short or label or name)


_SERVE_TABLE = {"mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms",
                "mean_itl_ms", "median_itl_ms"}  # declared with their table labels below
SERVE_METRICS = (  # throughputs in tok/s, latencies in ms; the first ones are serve-bench's table columns
    _m("output_throughput", HIGHER, "tok/s", "output tok/s", "out tok/s"),
    _m("total_token_throughput", HIGHER, "tok/s", "total tok/s"),
    _m("mean_ttft_ms", LOWER, "ms", "mean TTFT (ms)", "TTFT mean"),
    _m("median_ttft_ms", LOWER, "ms", "median TTFT (ms)", "TTFT med"),
    _m("p99_ttft_ms", LOWER, "ms", "p99 TTFT (ms)", "TTFT p99"),
    _m("mean_tpot_ms", LOWER, "ms", "mean TPOT (ms)", "TPOT mean"),
    _m("server_mean_tpot_ms", LOWER, "ms", "server mean TPOT (ms)", "TPOT server"),  # the engine's clock (/metrics)
    _m("median_tpot_ms", LOWER, "ms", "median TPOT (ms)", "TPOT med"),
    _m("p99_tpot_ms", LOWER, "ms", "p99 TPOT (ms)", "TPOT p99"),
    _m("mean_itl_ms", LOWER, "ms", "mean ITL (ms)", "ITL mean"),
    _m("max_output_tokens_per_s", HIGHER, "tok/s", "peak output tok/s", "peak out tok/s"),
    _m("median_itl_ms", LOWER, "ms", "median ITL (ms)", "ITL med"),
    # the rest of vLLM's --save-result keys and the engine's own latencies
    _m("request_throughput", HIGHER, "req/s"), _m("duration", LOWER, "s"), _m("failed", LOWER),
    *(_m(f"{stat}_{lat}_ms", LOWER, "ms") for lat in ("ttft", "tpot", "itl", "e2el")
      for stat in ("p50", "p90", "p99", "mean", "median") if f"{stat}_{lat}_ms" not in _SERVE_TABLE),
    *(_m(f"server_{stat}_{lat}_ms", LOWER, "ms") for lat in ("ttft", "tpot", "itl", "e2el", "queue", "prefill", "decode")
      for stat in ("mean", "median", "p99") if f"server_{stat}_{lat}_ms" != "server_mean_tpot_ms"),
    *(_m(f"std_{lat}_ms", UNKNOWN, "ms") for lat in ("ttft", "tpot", "itl", "e2el")),  # spread, not speed
    *(_m(n, UNKNOWN) for n in ("completed", "total_input_tokens", "total_output_tokens", "max_concurrent_requests")),
)
SERVE_COLUMNS = tuple(m.name for m in SERVE_METRICS[:11])  # serve-bench's comparison table
SERVE_LABEL_KEYS = ("input_len", "output_len", "num_prompts", "request_rate", "max_concurrency")

KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("serve", "Serving (serve-bench)", SERVE_METRICS,
         headline=("output_throughput", "total_token_throughput", "median_ttft_ms", "p99_ttft_ms",
                   "median_tpot_ms", "p99_tpot_ms", "median_itl_ms"),
         history=("output_throughput", "total_token_throughput", "mean_ttft_ms", "mean_tpot_ms"),
         label_keys=SERVE_LABEL_KEYS),
    Kind("serve-aggregate", "Serving aggregates (serve-bench repeats)", SERVE_METRICS,
         label_keys=SERVE_LABEL_KEYS, compared=False),  # one per backend and shape, beside its "serve" passes
    Kind("microbench", "Kernel microbenchmarks", (
        _m("us", LOWER, "us", "time (us)"), _m("tflops", HIGHER, "TFLOP/s", "TFLOP/s"),
        _m("gbps", HIGHER, "GB/s", "GB/s"), _m("pct_measured_bw", HIGHER, "%"), _m("pct_peak_bw", HIGHER, "%"),
        _m("pct_measured_flops", HIGHER, "%"), _m("pct_peak_flops", HIGHER, "%"), _m("rel_err", LOWER),
        _m("kv_gbps", HIGHER, "GB/s"),
        _m("first_call_s", UNKNOWN, "s", "first call (JIT compile, planning), s"),  # not gated: compile times vary
        *(_m(n, UNKNOWN) for n in ("bytes", "flops", "tolerance", "graph", "calls_per_replay", "num_splits",
                                   "cold_copies"))),  # what was timed, not how fast
         headline=("us", "tflops", "gbps"),
         columns=("us", "tflops", "gbps", "pct_measured_bw", "pct_peak_bw", "pct_measured_flops", "rel_err"),
         history=("tflops", "us"),
         label_keys=("op", "q_heads", "kv_heads", "head_dim", "batch", "context", "seqlen", "q_len", "dtype")),
    Kind("gpqa", "GPQA accuracy", (
        _m("accuracy", HIGHER, "fraction", "accuracy (fraction)"), _m("ci_low", UNKNOWN), _m("ci_high", UNKNOWN),
        _m("stderr", UNKNOWN), _m("n_samples", UNKNOWN), _m("n_questions", UNKNOWN),
        _m("extraction_failures", LOWER), _m("score_pct", HIGHER, "%"), _m("stderr_pct", UNKNOWN, "%"),
        _m("failed_requests", LOWER), _m("missing_samples", LOWER), _m("truncations", LOWER),
        _m("duration_s", LOWER, "s"), _m("n_expected", UNKNOWN), _m("prompt_tokens", UNKNOWN),
        _m("completion_tokens", UNKNOWN), _m("mean_completion_tokens", UNKNOWN)),
         headline=("accuracy",),
         columns=("accuracy", "ci_low", "ci_high", "stderr", "n_samples", "n_questions", "extraction_failures"),
         history=("accuracy",), intervals=("accuracy",), label_keys=("model", "effort", "repeats")),
    Kind("parity", "Numerical parity", (
        _m("passed", HIGHER), _m("max_abs_dlogprob", LOWER), _m("mean_abs_dlogprob", LOWER, "", "mean |dlogprob|"),
        _m("top1_agreement", HIGHER, "fraction", "top-1 agreement"), _m("max_kl", LOWER),
        _m("greedy_identical_frac", HIGHER, "fraction"),
        *(_m(f"{where}{stat}", LOWER) for where in ("", "prefill_", "decode_")
          for stat in ("max_abs_dlogprob", "mean_abs_dlogprob", "mean_kl", "max_kl")
          if f"{where}{stat}" not in ("max_abs_dlogprob", "mean_abs_dlogprob", "max_kl")),
        _m("top1_agreement_tie_aware", HIGHER, "fraction"), _m("greedy_prefix_mean", HIGHER, "tokens"),
        _m("greedy_prefix_min", HIGHER, "tokens"), _m("flat_topk_fraction", UNKNOWN, "fraction"),
        *(_m(n, UNKNOWN) for n in ("prefill_positions", "decode_positions"))),
         columns=("passed", "max_abs_dlogprob", "mean_abs_dlogprob", "top1_agreement", "max_kl", "greedy_identical_frac"),
         history=("mean_abs_dlogprob", "top1_agreement"), intervals=("top1_agreement",),
         label_keys=("model", "reference", "num_prompts"), prefixes=("hf_",)),  # hf_: against fp32 transformers
    Kind("profile", "Served step profiles (serve-bench --profile-steps)", (  # one profiled pass, not repeats
        _m("kernel_us_per_step", LOWER, "us", "GPU kernel time per engine step (us)"),
        _m("gpu_step_us", LOWER, "us", "a step's span on the GPU (us)"),
        *(_m(n, UNKNOWN) for n in ("steps", "decode_steps", "output_throughput"))),  # throughput: under the profiler
         label_keys=SERVE_LABEL_KEYS, compared=False),
    Kind("explain", "Explain estimates", (  # estimates of a serve run, not speeds of their own
        *(_m(n, UNKNOWN, "ms") for n in ("attn_est_ms", "rest_ms", "mean_tpot_ms", "median_tpot_ms",  # TPOT: the serve
                                         "mean_tpot_ci_low_ms", "mean_tpot_ci_high_ms")),  # run's, compared there
        *(_m(n, UNKNOWN) for n in ("attn_share", "coverage", "decode_samples", "inflight_samples", "mean_context",
                                   "mean_decode_batch", "mixed_share", "num_hidden_layers", "prefill_attn_tflop",
                                   "tpot_passes")))),
)}
NAMES = tuple(KINDS)


def get(kind: str) -> Kind | None:
    return KINDS.get(kind)


def metric(kind: str | None, name: str) -> Metric | None:
    """The declaration of a metric: in its own kind first, else in any kind that declares that name."""
    own = KINDS[kind].metric(name) if kind in KINDS else None
    return own or next((m for k in KINDS.values() if (m := k.metric(name))), None)


# Identity. Run-specific scenario keys: where it ran, not what ran (an endpoint URL has a fresh port
# per run; seeds change the random prompts but not their lengths; served_model can be a local path).
RUN_SPECIFIC = frozenset({"result_dir", "seed", "endpoint", "served_model", "repeat", "log_path", "port",
                          "command", "utc_time", "cache_dir", "concurrency",
                          # how serve-bench laid the run out: repeats of one load, whatever the order
                          "repeats", "target_ci", "max_repeats", "interleaved", "side_by_side", "layout",
                          "client_cpus", "wave"})

Key = tuple[str, str, str]  # (kind, backend, canonical JSON of the scenario settings)


def settings(record: Any) -> dict[str, Any]:
    """What a record measured: its scenario without the run-specific keys."""
    return {k: v for k, v in record.scenario.items() if k not in RUN_SPECIFIC}


def key(record: Any) -> Key:
    """Two records measure the same thing when their keys are equal (then they are repeats)."""
    return record.kind, record.backend, json.dumps(settings(record), sort_keys=True, default=str)
