"""Serving metrics with `vllm bench serve`'s definitions and key names, and its result block.

TTFT: send -> first streamed token. TPOT (per request, first token excluded):
(e2el - ttft) / (output_len - 1). ITL: every gap between consecutive streamed chunks, pooled
over requests. E2EL: send -> last token. Throughputs divide totals over successful requests
by the benchmark duration (start instant -> last request done)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from attnbench.serving.client import RequestResult

LATENCIES = ("ttft", "tpot", "itl", "e2el")
_TITLES = {"ttft": ("Time to First Token", "TTFT"), "tpot": ("Time per Output Token (excl. 1st token)", "TPOT"),
           "itl": ("Inter-token Latency", "ITL"), "e2el": ("End-to-end Latency", "E2EL")}


def tpot(r: RequestResult) -> float | None:
    return (r.latency - r.ttft) / (r.output_len - 1) if r.success and r.output_len > 1 else None


def token_times(r: RequestResult) -> np.ndarray:
    """When each streamed chunk arrived, seconds after the start instant."""
    if not r.success:
        return np.empty(0)
    return r.start + r.ttft + np.concatenate([[0.0], np.cumsum(r.itls)])


def _dist(name: str, values_s: list[float], percentiles: list[float]) -> dict[str, float | None]:
    v = np.asarray(values_s, dtype=float) * 1000.0
    out: dict[str, float | None] = {}
    out[f"mean_{name}_ms"] = float(v.mean()) if v.size else None
    out[f"median_{name}_ms"] = float(np.median(v)) if v.size else None
    out[f"std_{name}_ms"] = float(v.std()) if v.size else None
    for p in percentiles:
        out[f"p{_pct(p)}_{name}_ms"] = float(np.percentile(v, p)) if v.size else None
    return out


def _pct(p: float) -> str:
    return str(int(p)) if float(p).is_integer() else str(p)


def compute(results: list[RequestResult], percentiles: list[float] = (50, 90, 99),
            slos_ms: dict[str, float] | None = None) -> dict[str, float | int | None]:
    ok = [r for r in results if r.success]
    ends = [r.start + r.latency for r in ok]
    duration = max(ends) if ends else max((r.start for r in results), default=0.0)
    duration = max(duration, 1e-9)
    total_in = sum(r.prompt_len for r in ok)
    total_out = sum(r.output_len for r in ok)
    tpots = [t for t in map(tpot, ok) if t is not None]
    m: dict[str, float | int | None] = {
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "duration": duration,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(ok) / duration,
        "request_goodput": None,
        "output_throughput": total_out / duration,
        "total_token_throughput": (total_in + total_out) / duration,
    }
    if slos_ms:
        m["request_goodput"] = sum(_good(r, slos_ms) for r in ok) / duration
    tl = timeline(results)
    m["max_output_tokens_per_s"] = max(tl["output_tok_s"], default=0)
    m["max_concurrent_requests"] = max_concurrency(results)
    m.update(_dist("ttft", [r.ttft for r in ok], percentiles))
    m.update(_dist("tpot", tpots, percentiles))
    m.update(_dist("itl", [x for r in ok for x in r.itls], percentiles))
    m.update(_dist("e2el", [r.latency for r in ok], percentiles))
    return m


def _good(r: RequestResult, slos_ms: dict[str, float]) -> bool:
    values = {"ttft": r.ttft, "tpot": tpot(r) or 0.0, "e2el": r.latency}
    return all(values[k] * 1000.0 <= v for k, v in slos_ms.items())


def timeline(results: list[RequestResult]) -> dict[str, list]:
    """Output tokens per one-second bucket since the start instant (as vLLM's peak throughput)."""
    times = [token_times(r) for r in results if r.success]
    if not times:
        return {"t": [], "output_tok_s": []}
    allt = np.concatenate(times)
    counts = Counter(np.floor(allt).astype(int).tolist())
    n = max(counts) + 1
    return {"t": list(range(n)), "output_tok_s": [counts.get(i, 0) for i in range(n)]}


def max_concurrency(results: list[RequestResult]) -> int:
    """Most requests in flight at once (sent, not yet finished), by a sweep over send/end times."""
    events = []
    for r in results:
        end = r.start + (r.latency if not math.isnan(r.latency) else 0.0)
        events += [(r.start, 1), (end, -1)]
    live = peak = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):
        live += d
        peak = max(peak, live)
    return peak


def inflight(results: list[RequestResult], interval_s: float = 0.1) -> dict:
    """What the server had in flight every `interval_s`, reconstructed from the stream timestamps:
    the context length of each decoding request (prompt + tokens streamed so far) and the prompt
    length of each request still waiting for its first token. `attnbench explain` replays it."""
    spans = []
    for r in results:
        if not r.success:
            continue
        tt = token_times(r)
        scale = r.output_len / len(tt) if len(tt) else 1.0  # chunks may carry several tokens
        spans.append((r.start, tt, r.prompt_len, scale))
    end = max((s[1][-1] for s in spans), default=0.0)
    t_grid = np.arange(0.0, end, interval_s)
    decode_ctx, prefill_len = [], []
    for t in t_grid:
        dec, pre = [], []
        for start, tt, plen, scale in spans:
            if t < start or t >= tt[-1]:
                continue
            got = int(np.searchsorted(tt, t, side="right"))
            if got == 0:
                pre.append(plen)
            else:
                dec.append(plen + int(round(got * scale)))
        decode_ctx.append(dec)
        prefill_len.append(pre)
    return {"interval_s": interval_s, "source": "client", "t": [round(float(t), 4) for t in t_grid],
            "decode_ctx": decode_ctx, "prefill_len": prefill_len}


def format_block(m: dict, max_concurrency_setting: int | None = None, percentiles=(50, 90, 99),
                 title: str = " Serving Benchmark Result ") -> str:
    """The block `vllm bench serve` prints, with the same labels."""
    def f(v, digits=2):
        return "n/a" if v is None else f"{v:<10.{digits}f}"

    lines = [f"{title:=^50}",
             f"{'Successful requests:':<40}{m['completed']:<10}",
             f"{'Failed requests:':<40}{m['failed']:<10}",
             f"{'Maximum request concurrency:':<40}{str(max_concurrency_setting):<10}",
             f"{'Benchmark duration (s):':<40}{f(m['duration'])}",
             f"{'Total input tokens:':<40}{m['total_input_tokens']:<10}",
             f"{'Total generated tokens:':<40}{m['total_output_tokens']:<10}",
             f"{'Request throughput (req/s):':<40}{f(m['request_throughput'])}"]
    if m.get("request_goodput") is not None:
        lines.append(f"{'Request goodput (req/s):':<40}{f(m['request_goodput'])}")
    lines += [f"{'Output token throughput (tok/s):':<40}{f(m['output_throughput'])}",
              f"{'Peak output token throughput (tok/s):':<40}{f(m['max_output_tokens_per_s'])}",
              f"{'Peak concurrent requests:':<40}{f(m['max_concurrent_requests'])}",
              f"{'Total token throughput (tok/s):':<40}{f(m['total_token_throughput'])}"]
    for key in LATENCIES:
        long, short = _TITLES[key]
        lines.append(f"{long:-^50}")
        lines.append(f"{'Mean ' + short + ' (ms):':<40}{f(m.get(f'mean_{key}_ms'))}")
        lines.append(f"{'Median ' + short + ' (ms):':<40}{f(m.get(f'median_{key}_ms'))}")
        for p in percentiles:
            if _pct(p) == "50":
                continue
            lines.append(f"{'P' + _pct(p) + ' ' + short + ' (ms):':<40}{f(m.get(f'p{_pct(p)}_{key}_ms'))}")
    lines.append("=" * 50)
    return "\n".join(lines)
