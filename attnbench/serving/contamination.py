"""Is a measured window steady state? Each check returns flags with a one-line evidence string:
a JIT compile in the server log, preemptions or a full KV cache, a GPU clock dip, a saturated
client, or client and server disagreeing on latency. A check that cannot decide returns an
"unknown" flag that does not contaminate, so a broken check never hides or fails a run.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Flag:
    kind: str  # jit | preemption | kv_cache_full | gpu_clock | client_saturated | server_disagrees | unknown
    evidence: str
    contaminates: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def contaminated(flags: list[Flag]) -> bool:
    return any(f.contaminates for f in flags)


# ---------------------------------------------------------------- server log

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# vLLM: "(EngineCore_DP0 pid=456) WARNING 12-01 21:40:03 [jit_monitor.py:135] msg" (local time, no year)
_VLLM_TIME = re.compile(r"(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d+))? ")
# FlashInfer's logger and Python's default: "2026-12-01 21:40:03,361 - INFO - ..."
_ISO_TIME = re.compile(r"\b(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[,.](\d+))?")
_PREFIX = re.compile(r"\s*(?:\([^)]*\)\s*)?")  # "(EngineCore_DP0 pid=456) "

JIT_PATTERNS = [
    (re.compile(r"JIT compilation during inference", re.I), "JIT compile during inference"),
    (re.compile(r"\bnvcc\b|\bninja\b(?!: no work to do)"), "CUDA compile (ninja/nvcc)"),
    (re.compile(r"flashinfer\.jit: .*(?:Loading JIT ops|Building|Compil)", re.I), "FlashInfer JIT build"),
    (re.compile(r"Autotuning process starts", re.I), "FlashInfer autotuning"),
    (re.compile(r"Compiling a graph for", re.I), "torch.compile graph compile"),
    (re.compile(r"[Rr]ecompil(?:ing|ation)"), "torch.compile recompile"),
]


def log_time(line: str, near: float | None = None) -> float | None:
    """Unix time of a log line's own timestamp (read as local time), or None. vLLM's stamp has no
    year: it takes the year that puts the stamp closest to `near` (default now)."""
    line = _ANSI.sub("", line)
    head = _PREFIX.match(line).end()  # stamps open the line: a date inside a message is not one
    try:
        m = _ISO_TIME.match(line, head)
        if m:
            y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
            return _local(y, mo, d, h, mi, s) + _frac(m.group(7))
        m = _VLLM_TIME.match(line, head)
        if not m:
            return None
        mo, d, h, mi, s = (int(x) for x in m.groups()[:5])
        near = time.time() if near is None else near
        year = time.localtime(near).tm_year
        candidates = [_local(y, mo, d, h, mi, s) for y in (year - 1, year, year + 1)]
        return min(candidates, key=lambda t: abs(t - near)) + _frac(m.group(6))
    except (ValueError, OverflowError):
        return None


def _local(y, mo, d, h, mi, s) -> float:
    return time.mktime((y, mo, d, h, mi, s, 0, 0, -1))


def _frac(digits: str | None) -> float:
    return float("0." + digits) if digits else 0.0


class LogWindow:
    """Byte offsets of a growing server log: `mark()` at the window's start and end. Lines in
    between belong to the window even without a timestamp; stamped lines are also checked by time,
    so lines flushed late are still placed right."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def read(self, start: int = 0) -> list[tuple[int, str]]:
        """(offset, line) from `start` to the current end of the file."""
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                data = f.read()
        except OSError:
            return []
        out, pos = [], start
        for raw in data.splitlines(keepends=True):
            out.append((pos, raw.decode("utf-8", "replace").rstrip("\r\n")))
            pos += len(raw)
        return out


def window_lines(path: str | os.PathLike, t0: float, t1: float, start: int | None = None,
                 end: int | None = None, slack_s: float = 1.0) -> list[str]:
    """The log lines written during [t0, t1]. A line's time is its own stamp or that of the last
    stamped line before it; stamps have one-second resolution, hence `slack_s`. Without a stamp
    (none yet since `start`) a line is in when its offset is in [start, end)."""
    lines, last = [], None
    for off, line in LogWindow(path).read(start or 0):
        t = log_time(line, near=t0)
        if t is not None:
            last = t
        elif last is not None:
            t = last
        if t is not None:
            inside = t0 - slack_s <= t <= t1 + slack_s
        else:
            inside = start is not None and off >= start and (end is None or off < end)
        if inside:
            lines.append(line)
    return lines


def jit_flags(lines: list[str]) -> list[Flag]:
    """One flag per kind of compile seen, with how many lines and the first one as evidence."""
    seen: dict[str, list[str]] = {}
    for line in lines:
        for pattern, label in JIT_PATTERNS:
            if pattern.search(line):
                seen.setdefault(label, []).append(line)
                break
    flags = []
    for label, hits in seen.items():
        first = _ANSI.sub("", hits[0]).strip()
        more = f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""
        flags.append(Flag("jit", f"{label}: {_clip(first)}{more}"))
    return flags


# vLLM with VLLM_GC_DEBUG=1 in the server's environment: "(EngineCore pid=9) INFO 12-03 10:52:37
# [gc_utils.py:84] GC took 12.345ms to complete. Collected 7 objects (out of 91) in GC generation 2."
_GC = re.compile(r"GC took ([0-9.]+) ?ms to complete")


def gc_pauses(lines: list[str]) -> dict:
    """Python garbage collections the engine core logged in a window: how many, their total and
    longest time (server_gc_*; empty when none was logged, e.g. VLLM_GC_DEBUG unset). A collection
    stops the engine's scheduling loop, so time here is time the GPU may have waited."""
    pauses = []
    for line in lines:
        line = _ANSI.sub("", line)
        m = _GC.search(line)
        if m and "EngineCore" in line[:_PREFIX.match(line).end()]:
            pauses.append(float(m.group(1)))
    if not pauses:
        return {}
    return {"server_gc_count": len(pauses), "server_gc_ms": round(sum(pauses), 3),
            "server_gc_max_ms": round(max(pauses), 3)}


def _clip(s: str, n: int = 200) -> str:
    return s if len(s) <= n else s[: n - 3] + "..."


# ---------------------------------------------------------------- server metrics

def metrics_flags(server: dict | None, kv_usage_max: float | None = None, kv_full: float = 0.98) -> list[Flag]:
    """From the /metrics delta (prometheus.window_delta) and, when sampled during the window, the
    highest KV-cache usage (0..1)."""
    flags = []
    server = server or {}
    n = server.get("server_preemptions")
    if n is not None and float(n) > 0:
        flags.append(Flag("preemption", f"{n} preemptions in the window (vllm:num_preemptions_total)"))
    usage = kv_usage_max if kv_usage_max is not None else server.get("server_kv_cache_usage_max")
    if usage is not None and usage >= kv_full:
        flags.append(Flag("kv_cache_full", f"KV-cache usage reached {100 * usage:.1f}% (>= {100 * kv_full:.0f}%)"))
    return flags


def agreement_flags(client: dict, server: dict | None, rel_tol: float = 0.10,
                    abs_tol_ms: dict[str, float] | None = None) -> list[Flag]:
    """Client means against the server's for the same window: a difference beyond both the
    relative and the absolute tolerance means time went somewhere neither side attributes (a slow
    client, a proxy, foreign traffic). Also the request and token counts must match."""
    server = server or {}
    if server.get("server_metrics") != "ok":
        return []
    tol = {"ttft": 5.0, "tpot": 1.0, "e2el": 5.0, **(abs_tol_ms or {})}
    flags = []
    for key, abs_ms in tol.items():
        c, s = client.get(f"mean_{key}_ms"), server.get(f"server_mean_{key}_ms")
        if not _finite(c) or not _finite(s):
            continue
        diff = c - s
        if abs(diff) > abs_ms and abs(diff) > rel_tol * abs(s):
            # a warning, not a reason to drop the pass: the client's own latency is what it measured
            flags.append(Flag("server_disagrees", f"mean {key.upper()} client {c:.1f} ms vs server {s:.1f} ms "
                                                  f"({diff:+.1f} ms, {100 * diff / s:+.0f}%)" if s else
                              f"mean {key.upper()} client {c:.1f} ms vs server {s:.1f} ms", contaminates=False))
    # requests must match exactly; tokens within 1% (a client without usage counts chunks)
    for ckey, skey, what, rel in [("completed", "server_requests", "requests", 0.0),
                                  ("total_output_tokens", "server_generation_tokens", "output tokens", 0.01)]:
        c, s = client.get(ckey), server.get(skey)
        if _finite(c) and _finite(s) and abs(c - s) > rel * abs(s):
            flags.append(Flag("server_disagrees", f"{what}: client {c:g} vs server {s:g} in the window "
                                                  "(other traffic, or requests still running at a scrape)"))
    return flags


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ---------------------------------------------------------------- GPU and client

def run_median(values: list[float]) -> float | None:
    vals = [v for v in values if _finite(v)]
    return statistics.median(vals) if vals else None


def clock_flag(window_sm_mhz: list[float], run_median_mhz: float | None, drop: float = 0.05) -> list[Flag]:
    """The window's median SM clock more than `drop` below the run's median clock."""
    vals = [v for v in window_sm_mhz if _finite(v)]
    w = run_median(vals)
    if w is None or not run_median_mhz:
        return []
    if w < (1 - drop) * run_median_mhz:
        return [Flag("gpu_clock", f"SM clock median {w:.0f} MHz vs run median {run_median_mhz:.0f} MHz "
                                  f"({100 * (w / run_median_mhz - 1):+.0f}%, min {min(vals):.0f})")]
    return []


def clock_flags(windows_sm_mhz: list[list[float]], groups: list[str] | None = None,
                drop: float = 0.05) -> list[list[Flag]]:
    """Flags per window against the median over all windows' samples; with `groups` (e.g. the
    backend of each window) against the median of the window's own group, since backends can
    draw different power and so run at different clocks."""
    try:
        groups = groups or [""] * len(windows_sm_mhz)
        pooled: dict[str, list[float]] = {}
        for g, w in zip(groups, windows_sm_mhz):
            pooled.setdefault(g, []).extend(w)
        medians = {g: run_median(v) for g, v in pooled.items()}
        return [clock_flag(w, medians[g], drop) for g, w in zip(groups, windows_sm_mhz)]
    except Exception as e:  # noqa: BLE001 - a failed check must not cost the run
        return [[Flag("unknown", f"gpu clock check failed: {type(e).__name__}: {e}", contaminates=False)]
                for _ in windows_sm_mhz]


def client_flags(loop_lag_p99_ms: float | None = None, worker_cpu_pct: float | None = None,
                 lag_limit_ms: float = 20.0, cpu_limit_pct: float = 90.0) -> list[Flag]:
    """The client itself was the bottleneck: its event loop ran late or a worker had no CPU left."""
    flags = []
    if _finite(loop_lag_p99_ms) and loop_lag_p99_ms > lag_limit_ms:
        flags.append(Flag("client_saturated", f"event-loop lag p99 {loop_lag_p99_ms:.1f} ms (> {lag_limit_ms:g} ms)"))
    if _finite(worker_cpu_pct) and worker_cpu_pct > cpu_limit_pct:
        flags.append(Flag("client_saturated", f"client worker CPU {worker_cpu_pct:.0f}% (> {cpu_limit_pct:g}%)"))
    return flags


def frontend_flags(api_server_cpu_pct: float | None, limit_pct: float = 85.0) -> list[Flag]:
    """vLLM's API server process was busy enough (one asyncio loop streaming every request) that
    it, not the engine, set the pace the client saw. A warning: what the client saw is still what
    a user of that server sees."""
    if not _finite(api_server_cpu_pct) or api_server_cpu_pct < limit_pct:
        return []
    return [Flag("frontend_bound", f"vLLM's API server process used {api_server_cpu_pct:.0f}% of a core during "
                 "the window: client-side throughput and latency measure it as much as the engine (compare the "
                 "server-side TPOT; --serve-arg=--api-server-count=N spreads it)", contaminates=False)]


# ---------------------------------------------------------------- all together

def flags_for_window(t0: float, t1: float, *, log_path: str | os.PathLike | None = None,
                     log_offsets: tuple[int, int | None] | None = None, server: dict | None = None,
                     client: dict | None = None, kv_usage_max: float | None = None,
                     loop_lag_p99_ms: float | None = None, worker_cpu_pct: float | None = None,
                     sm_clock_mhz: list[float] | None = None, run_sm_clock_mhz: float | None = None,
                     log_lines: list[str] | None = None) -> list[Flag]:
    """Every check that has its input. `log_offsets` are LogWindow.mark() at t0 and t1 (the end
    may be None); `log_lines`, the window's lines already read from log_path. The GPU clock check
    needs the run's median, so across a whole run use clock_flags after the last window instead.
    Never raises."""
    flags: list[Flag] = []

    def check(name, fn):
        try:
            flags.extend(fn())
        except Exception as e:  # noqa: BLE001 - a failed check must not cost the run
            flags.append(Flag("unknown", f"{name} check failed: {type(e).__name__}: {e}", contaminates=False))

    if log_lines is not None:
        check("server log", lambda: jit_flags(log_lines))
    elif log_path is not None:
        start, end = log_offsets if log_offsets else (None, None)
        check("server log", lambda: jit_flags(window_lines(log_path, t0, t1, start, end)))
    if server is not None:
        check("server metrics", lambda: metrics_flags(server, kv_usage_max))
        if client is not None:
            check("client vs server", lambda: agreement_flags(client, server))
    check("client", lambda: client_flags(loop_lag_p99_ms, worker_cpu_pct))
    if sm_clock_mhz is not None and run_sm_clock_mhz is not None:
        check("gpu clock", lambda: clock_flag(sm_clock_mhz, run_sm_clock_mhz))
    return flags


# ---------------------------------------------------------------- one measured window, end to end

@dataclass
class WindowReport:
    t0: float
    t1: float
    server: dict  # prometheus.window_delta keys, plus the poller's maxima
    gpu: dict  # telemetry.gpu_summary
    cpu: dict  # telemetry.cpu_summary
    sm_clock_mhz: list[float]  # for clock_flags across the run
    flags: list[Flag]

    def record_fields(self) -> dict:
        """What a record stores: the server_*, gpu_* and cpu keys, the window's unix times and
        the flags as dicts (`contaminated` is true when any of them contaminates)."""
        return {**self.server, **self.gpu, **self.cpu, "window_t0": self.t0, "window_t1": self.t1,
                "flags": [f.to_dict() for f in self.flags], "contaminated": contaminated(self.flags)}


class MeasuredWindow:
    """Everything around one measured window: `start()` right before the first request is sent,
    `finish(client_metrics)` right after the last one ends. The GPU and CPU samplers, if given,
    run for the whole benchmark; this only cuts the window out of them. Never raises."""

    def __init__(self, base_url: str | None, log_path: str | os.PathLike | None = None, model: str | None = None,
                 gpu=None, cpu=None, poll_s: float | None = 2.0):
        self.base_url, self.log_path, self.model = base_url, log_path, model
        self.gpu, self.cpu, self.poll_s = gpu, cpu, poll_s
        self.t0 = 0.0
        self._before = None
        self._start_offset: int | None = None
        self._poller = None

    def start(self) -> "MeasuredWindow":
        from attnbench.serving import prometheus

        try:
            if self.log_path is not None:
                self._start_offset = LogWindow(self.log_path).mark()
            if self.base_url:
                self._before = prometheus.scrape(self.base_url)
                if self._before is not None and self.poll_s:
                    self._poller = prometheus.GaugePoller(self.base_url, self.poll_s, self.model).start()
        except Exception:  # noqa: BLE001 - observation must not cost the run
            pass
        self.t0 = time.time()
        return self

    def finish(self, client_metrics: dict | None = None, loop_lag_p99_ms: float | None = None,
               worker_cpu_pct: float | None = None) -> WindowReport:
        from attnbench.serving import prometheus, telemetry

        t1 = time.time()
        server: dict = {}
        gpu: dict = {}
        cpu: dict = {}
        clocks: list[float] = []
        errors: list[Flag] = []
        lines = None  # the server log written during the window, read once for the JIT and GC checks
        try:
            end = LogWindow(self.log_path).mark() if self.log_path is not None else None
            if self._poller is not None:
                gauges = self._poller.stop()
            else:
                gauges = {}
            if self.log_path is not None and self._start_offset is not None:
                lines = window_lines(self.log_path, self.t0, t1, self._start_offset, end)
                server.update(gc_pauses(lines))
            if self.base_url:
                expected = (client_metrics or {}).get("completed")
                after = prometheus.scrape_settled(self.base_url, self._before,
                                                  expected if isinstance(expected, int) else None)
                server = {**server, **prometheus.window_delta(self._before, after, self.model), **gauges}
            if self.gpu is not None:
                samples = self.gpu.snapshot()
                gpu, clocks = telemetry.gpu_summary(samples, self.t0, t1), telemetry.sm_clocks(samples, self.t0, t1)
            if self.cpu is not None:
                cpu = telemetry.cpu_summary(self.cpu.snapshot(), self.t0, t1)
        except Exception as e:  # noqa: BLE001
            end = None
            errors.append(Flag("unknown", f"window observation failed: {type(e).__name__}: {e}", contaminates=False))
        flags = flags_for_window(self.t0, t1, log_path=self.log_path,
                                 log_offsets=(self._start_offset, end) if self._start_offset is not None else None,
                                 server=server or None, client=client_metrics, loop_lag_p99_ms=loop_lag_p99_ms,
                                 worker_cpu_pct=worker_cpu_pct, log_lines=lines)
        return WindowReport(self.t0, t1, server, gpu, cpu, clocks, errors + flags)


def add_clock_flags(reports: list[WindowReport], groups: list[str] | None = None, drop: float = 0.05) -> None:
    """After the run's last window: flag the windows whose SM clock dipped below the run's median
    (per group, e.g. backend, when given)."""
    for report, flags in zip(reports, clock_flags([r.sm_clock_mhz for r in reports], groups, drop)):
        report.flags.extend(flags)
