"""vLLM's own view of a measured window: parse Prometheus text from the server's /metrics,
before and after the window, and turn the difference into flat `server_*` keys for the record.

The server measures TTFT and token gaps from the moment a request enters its front end, so
client minus server is the network, HTTP and client overhead; a large or drifting gap says the
client (not the engine) moved the numbers. Nothing here raises: an absent or unreadable
/metrics gives None or `server_metrics: "absent" | "unknown"`, never a failed benchmark.
"""

from __future__ import annotations

import math
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass
class Scrape:
    """One /metrics reading: sample name -> [(labels, value)], the declared family types, and
    when it was read (unix time)."""

    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    t: float = 0.0
    bad_lines: int = 0

    def total(self, name: str, model: str | None = None, **match: str) -> float | None:
        """Sum of one sample name over its label sets (engines, finish reasons), or None when
        absent. `model` keeps only that model_name; `match` keeps label sets with those values."""
        if model is not None:
            match = {**match, "model_name": model}
        rows = [v for labels, v in self.samples.get(name, ())
                if all(labels.get(k) == want for k, want in match.items())]
        return math.fsum(rows) if rows else None

    def histogram(self, name: str, model: str | None = None) -> "Histogram | None":
        """The `<name>_bucket/_sum/_count` series summed over label sets, or None when absent."""
        match = {} if model is None else {"model_name": model}
        cum: dict[float, float] = {}
        for labels, v in self.samples.get(name + "_bucket", ()):
            if any(labels.get(k) != want for k, want in match.items()):
                continue
            try:
                le = float(labels["le"])
            except (KeyError, ValueError):
                continue
            cum[le] = cum.get(le, 0.0) + v
        count, total = self.total(name + "_count", model), self.total(name + "_sum", model)
        if count is None and not cum:
            return None
        if count is None:
            count = cum.get(math.inf, 0.0)
        return Histogram(sorted(cum.items()), total or 0.0, count)


@dataclass
class Histogram:
    """Cumulative buckets [(upper bound, observations <= it)], sum and count of observations."""

    buckets: list[tuple[float, float]]
    sum: float
    count: float

    def minus(self, before: "Histogram | None") -> "Histogram | None":
        """Observations made between `before` and this reading; None when the counts went down
        (the server restarted in between, so no difference means anything)."""
        if before is None:
            return self
        old = dict(before.buckets)
        buckets = [(le, c - old.get(le, 0.0)) for le, c in self.buckets]
        count = self.count - before.count
        if count < 0 or any(c < 0 for _, c in buckets):
            return None
        return Histogram(buckets, self.sum - before.sum, count)

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket holding the q-th observation, as Prometheus's
        histogram_quantile does: exact only to the bucket's width. A quantile in the +Inf bucket
        reads as the largest finite bound."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lo_bound, lo_count = 0.0, 0.0
        for le, c in self.buckets:
            if c >= rank and c > lo_count:
                if math.isinf(le):
                    return lo_bound
                return lo_bound + (le - lo_bound) * (rank - lo_count) / (c - lo_count)
            if not math.isinf(le):
                lo_bound, lo_count = le, c
        return lo_bound


def parse(text: str, t: float | None = None) -> Scrape:
    """Prometheus text exposition (also OpenMetrics' `# EOF` and exemplars). Malformed lines
    are counted in `bad_lines` and skipped."""
    out = Scrape(t=time.time() if t is None else t)
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                out.types[parts[2]] = parts[3].strip()
            continue
        sample = _parse_sample(line)
        if sample is None:
            out.bad_lines += 1
        else:
            name, labels, value = sample
            out.samples.setdefault(name, []).append((labels, value))
    return out


def _parse_sample(line: str) -> tuple[str, dict[str, str], float] | None:
    m = _NAME.match(line)
    if not m:
        return None
    name, pos, labels = m.group(), m.end(), {}
    if pos < len(line) and line[pos] == "{":
        pos += 1
        while True:
            while pos < len(line) and line[pos] in " ,":
                pos += 1
            if pos < len(line) and line[pos] == "}":
                pos += 1
                break
            lm = _LABEL.match(line, pos)
            if not lm:
                return None
            labels[lm.group(1)] = re.sub(r'\\[\\"n]', lambda e: _UNESCAPE[e.group()], lm.group(2))
            pos = lm.end()
    rest = line[pos:].split("#", 1)[0].split()  # drop an OpenMetrics exemplar
    if not rest:
        return None
    try:
        return name, labels, float(rest[0])  # float() reads +Inf, -Inf and NaN
    except ValueError:
        return None


def metrics_url(base_url: str) -> str:
    """vLLM serves /metrics at the root, beside /v1, not under it."""
    parts = urlsplit(base_url.strip())
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path + "/metrics", "", ""))


def scrape(base_url: str, timeout: float = 5.0) -> Scrape | None:
    """Read the server's /metrics; None when it has none, is unreachable or answers garbage."""
    try:
        with urllib.request.urlopen(metrics_url(base_url), timeout=timeout) as resp:
            if resp.status != 200:
                return None
            text = resp.read().decode("utf-8", "replace")
        s = parse(text)
        return s if s.samples else None
    except Exception:  # noqa: BLE001 - a missing /metrics must never fail a benchmark
        return None


def scrape_settled(base_url: str, before: Scrape | None, expected_requests: int | None = None,
                   wait_s: float = 5.0, timeout: float = 5.0) -> Scrape | None:
    """The scrape after a window. vLLM records a finished request's stats just after streaming
    its last token, so a scrape right after the client's last response can miss the last ones:
    re-scrape until `expected_requests` more requests are counted than in `before` (or, without
    an expectation, until two scrapes agree), for at most `wait_s`."""
    deadline = time.monotonic() + wait_s
    last = None
    while True:
        s = scrape(base_url, timeout)
        if s is None:
            return last
        done = s.total(COUNTERS["requests"]) or 0.0
        if expected_requests is not None and before is not None:
            if done - (before.total(COUNTERS["requests"]) or 0.0) >= expected_requests:
                return s
        elif last is not None and done == (last.total(COUNTERS["requests"]) or 0.0):
            return s
        last = s
        if time.monotonic() > deadline:
            return s
        time.sleep(0.1 if expected_requests is not None else 0.3)


# record key -> (histogram, fallbacks from older vLLM releases)
HISTOGRAMS = {
    "ttft": ("vllm:time_to_first_token_seconds",),
    # per request: (e2e - ttft) / (tokens - 1), what `vllm bench serve` calls TPOT
    "tpot": ("vllm:request_time_per_output_token_seconds",),
    # per token gap; the older name measured the same thing and was hidden after 0.11
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "e2el": ("vllm:e2e_request_latency_seconds",),
    "queue": ("vllm:request_queue_time_seconds",),
    "prefill": ("vllm:request_prefill_time_seconds",),
    "decode": ("vllm:request_decode_time_seconds",),
}
COUNTERS = {
    "requests": "vllm:request_success_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "preemptions": "vllm:num_preemptions_total",
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
}
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # 0..1; the second before 0.10


def window_delta(before: Scrape | None, after: Scrape | None, model: str | None = None) -> dict:
    """The server's counters and latency histograms over the window between two scrapes, as
    flat `server_*` keys (ms for times; a key is absent when the server does not export it).
    `server_metrics` says "ok", "absent" (no /metrics) or "unknown" (unreadable or reset)."""
    if before is None or after is None:
        return {"server_metrics": "absent"}
    try:
        return _delta(before, after, model)
    except Exception as e:  # noqa: BLE001 - parsing trouble must not cost the run
        return {"server_metrics": "unknown", "server_metrics_error": f"{type(e).__name__}: {e}"}


def _delta(before: Scrape, after: Scrape, model: str | None) -> dict:
    out: dict = {"server_metrics": "ok", "server_window_s": round(after.t - before.t, 3)}
    reset = False
    for key, name in COUNTERS.items():
        a, b = after.total(name, model), before.total(name, model)
        if a is None:
            continue
        d = a - (b or 0.0)
        if d < 0:
            reset = True
            continue
        out[f"server_{key}"] = int(round(d)) if d == int(d) else d
    q, h = out.get("server_prefix_cache_queries"), out.get("server_prefix_cache_hits")
    if q is not None and h is not None:
        out["server_prefix_cache_hit_rate"] = h / q if q > 0 else 0.0
    for key, names in HISTOGRAMS.items():
        for name in names:
            a = after.histogram(name, model)
            if a is None:
                continue
            d = a.minus(before.histogram(name, model))
            if d is None:
                reset = True
            elif d.count > 0:
                out[f"server_{key}_count"] = int(round(d.count))
                out[f"server_mean_{key}_ms"] = 1000 * d.mean
                out[f"server_median_{key}_ms"] = _ms(d.quantile(0.5))
                out[f"server_p99_{key}_ms"] = _ms(d.quantile(0.99))
            break
    kv = kv_cache_usage(after, model)
    if kv is not None:
        out["server_kv_cache_usage_after"] = kv
    if reset:
        out["server_metrics"] = "unknown"
        out["server_metrics_error"] = "a counter went down between the scrapes (server restarted?)"
    elif len(out) <= 2:
        out["server_metrics"] = "unknown"
        out["server_metrics_error"] = "no vLLM metrics in /metrics"
    return out


def _ms(x: float | None) -> float | None:
    return None if x is None else 1000 * x


def kv_cache_usage(s: Scrape | None, model: str | None = None) -> float | None:
    """The highest KV-cache usage gauge (0..1) over engines in one scrape."""
    if s is None:
        return None
    for name in KV_USAGE:
        rows = [v for labels, v in s.samples.get(name, ())
                if model is None or labels.get("model_name") == model]
        if rows:
            return max(rows)
    return None


class GaugePoller:
    """Scrapes /metrics every `interval_s` on a thread during a window and keeps the highest
    KV-cache usage and queue length: read after the window, the gauges show an idle server.
    Each scrape costs the API server a little CPU, hence a slow default."""

    def __init__(self, base_url: str, interval_s: float = 2.0, model: str | None = None, timeout: float = 1.0):
        self.base_url, self.interval_s, self.model, self.timeout = base_url, interval_s, model, timeout
        self.kv_max: float | None = None
        self.waiting_max: float | None = None
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> None:
        s = scrape(self.base_url, self.timeout)
        if s is None:
            return
        self.scrapes += 1
        kv = kv_cache_usage(s, self.model)
        if kv is not None and (self.kv_max is None or kv > self.kv_max):
            self.kv_max = kv
        waiting = s.total("vllm:num_requests_waiting", self.model)
        if waiting is not None and (self.waiting_max is None or waiting > self.waiting_max):
            self.waiting_max = waiting

    def _run(self) -> None:
        while True:
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - a poller must never take the run down
                pass
            if self._stop.wait(self.interval_s):
                return

    def start(self) -> "GaugePoller":
        self._thread = threading.Thread(target=self._run, daemon=True, name="metrics-poller")
        self._thread.start()
        return self

    def stop(self) -> dict:
        """`server_kv_cache_usage_max` (0..1), `server_num_waiting_max` and how many scrapes."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 2)
        out: dict = {"server_gauge_scrapes": self.scrapes}
        if self.kv_max is not None:
            out["server_kv_cache_usage_max"] = self.kv_max
        if self.waiting_max is not None:
            out["server_num_waiting_max"] = self.waiting_max
        return out

    def __enter__(self) -> "GaugePoller":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
