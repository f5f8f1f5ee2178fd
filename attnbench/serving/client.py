"""The streaming load generator: OpenAI completions requests with token-id (or text) prompts, a
timestamp per streamed token, spread over worker processes so the client is never the bottleneck.

Each worker process runs one asyncio loop over its share of the requests (request i goes to
worker i % workers, at its own arrival time measured from a start instant shared by all
workers; time.perf_counter is CLOCK_MONOTONIC, the same clock in every process on Linux).

`run` returns the results; `run_with_stats` also returns RunStats, how busy each worker's event
loop was, so a run whose client was the bottleneck can be told apart from a slow server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
from multiprocessing import connection as mp_connection
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

from attnbench.errors import UserError


@dataclass
class Request:
    prompt: list[int] | str  # token ids, or text the server tokenizes
    max_tokens: int
    send_at: float  # seconds after the start instant
    prompt_len: int | None = None  # tokens of a text prompt, when known; the server's usage wins


def _prompt_len(req: Request) -> int:
    if req.prompt_len is not None:
        return req.prompt_len
    return len(req.prompt) if isinstance(req.prompt, list) else 0


@dataclass
class RequestResult:
    prompt_len: int  # from the server's usage when it reports one, else the request's
    output_len: int = 0  # from the server's usage; the chunk count when it reports none
    start: float = 0.0  # when it was sent, seconds after the start instant
    ttft: float = math.nan  # seconds
    itls: list[float] = field(default_factory=list)  # gaps between streamed chunks, seconds
    latency: float = math.nan  # end-to-end, seconds
    chunks: int = 0  # streamed events that carried a token
    error: str = ""
    retries: int = 0  # sends repeated on a fresh connection after the server dropped a pooled one

    @property
    def success(self) -> bool:
        return not self.error


@dataclass(frozen=True)
class ClientConfig:
    base_url: str  # http://host:port/v1
    model: str
    workers: int = 0  # 0: one per 25k tok/s of expected load, at most the CPU count (see `workers_for`)
    max_concurrency: int | None = None
    request_timeout_s: float = 3600.0
    ignore_eos: bool = True
    retries: int = 3  # per request, only when the server dropped the connection before answering
    cpus: tuple[int, ...] | None = None  # CPU ids the client's event loops run on (None: anywhere)


@dataclass
class WorkerStats:
    """How busy one event loop was: if its timer ran late or it used a whole core, the client,
    not the server, may have set the pace."""
    worker: int
    requests: int
    wall_s: float
    cpu_s: float  # CPU time of the loop's thread
    loop_lag_max_ms: float  # how late a 10 ms timer fired, at worst
    loop_lag_p99_ms: float
    cpus: list[int] = field(default_factory=list)  # where it was allowed to run

    @property
    def cpu_fraction(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class RunStats:
    workers: list[WorkerStats] = field(default_factory=list)

    @property
    def loop_lag_max_ms(self) -> float:
        return max((w.loop_lag_max_ms for w in self.workers), default=0.0)

    @property
    def loop_lag_p99_ms(self) -> float:
        return max((w.loop_lag_p99_ms for w in self.workers), default=0.0)

    @property
    def cpu_fraction(self) -> float:
        """Of the busiest worker."""
        return max((w.cpu_fraction for w in self.workers), default=0.0)

    def to_dict(self) -> dict:
        return {"loop_lag_max_ms": round(self.loop_lag_max_ms, 3), "loop_lag_p99_ms": round(self.loop_lag_p99_ms, 3),
                "cpu_fraction": round(self.cpu_fraction, 4),
                "workers": [{**asdict(w), "cpu_fraction": round(w.cpu_fraction, 4)} for w in self.workers]}


LAG_PERIOD_S = 0.01


def check_cpus(cpus) -> tuple[int, ...] | None:
    """A CPU set the client may pin itself to: non-empty, and CPUs this process may use."""
    if cpus is None:
        return None
    cpus = tuple(sorted(set(int(c) for c in cpus)))
    allowed = os.sched_getaffinity(0)
    if not cpus or not set(cpus) <= allowed:
        raise UserError(f"client CPUs {list(cpus)} are not a non-empty subset of the CPUs this process may use "
                        f"({sorted(allowed)}); pick CPU ids from that list")
    return cpus


def workers_for(n_requests: int) -> int:
    """One event loop streams ~25-30k chunks/s on one core; use up to 4 loops when there are cores."""
    return max(1, min(4, (os.cpu_count() or 1), n_requests))


def _body(cfg: ClientConfig, req: Request) -> bytes:
    body = {
        "model": cfg.model,
        "prompt": req.prompt,
        "max_tokens": req.max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if cfg.ignore_eos:  # vLLM extensions: exactly max_tokens tokens
        body["ignore_eos"] = True
        body["min_tokens"] = req.max_tokens
    return json.dumps(body).encode()


def _carries_token(obj: dict) -> bool:
    """A streamed event that carries a token: text (or chat content, or token ids), or an empty
    text that is neither the stream's closing event (a finish reason or usage) nor blank choices.
    Servers such as llama.cpp end with {"choices": [{"text": ""}], "usage": {...}}: not a token."""
    choices = obj.get("choices") or []
    for c in choices:
        delta = c.get("delta") or {}
        if c.get("text") or c.get("token_ids") or delta.get("content") or delta.get("reasoning_content"):
            return True
    if not choices or obj.get("usage"):
        return False
    return all(c.get("finish_reason") is None for c in choices)  # e.g. a special token, streamed as ""


class _Dropped(Exception):
    """The server closed the connection before any response: nothing of the request was answered."""


async def _attempt(session, cfg: ClientConfig, req: Request, res: RequestResult, sent: float) -> None:
    """One send and its stream; fills `res`, raises _Dropped when it may be sent again."""
    import aiohttp

    last = sent
    usage = None
    closing = None  # when the last event with choices but no text came (see the end)

    def token(at: float) -> None:
        nonlocal last
        if res.chunks == 0:
            res.ttft = at - sent
        else:
            res.itls.append(at - last)
        res.chunks += 1
        last = at
    try:
        resp = await session.post(f"{cfg.base_url}/completions", data=_body(cfg, req),
                                  headers={"Content-Type": "application/json"})
    except aiohttp.ClientConnectorError:
        raise  # no connection could be made: a fresh one would fail alike
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:  # no response has begun
        raise _Dropped(f"{type(e).__name__}: {e}") from None
    async with resp:
        if resp.status != 200:
            text = (await resp.text())[:300].replace("\n", " ")
            res.error = f"HTTP {resp.status}: {text}"
            return
        buf = b""
        async for data in resp.content.iter_any():
            now = time.perf_counter()
            buf += data
            *events, buf = buf.split(b"\n\n")
            for event in events:
                event = event.strip()
                if not event.startswith(b"data:"):
                    continue
                payload = event[5:].strip()
                if payload == b"[DONE]":
                    continue
                # most token events carry "usage":null and text; only the rest is parsed
                fast = (b'"usage":null' in payload or b'"usage": null' in payload) and b'"text":""' not in payload
                if not fast:
                    obj = json.loads(payload)
                    if "error" in obj:
                        raise RuntimeError(f"server error mid-stream: {str(obj['error'])[:200]}")
                    if obj.get("usage"):
                        usage = obj["usage"]
                    if not _carries_token(obj):
                        if obj.get("choices"):
                            closing = now
                        continue
                token(now)
    counted = usage.get("completion_tokens") if usage else None
    if closing is not None and closing > last and counted is not None and counted > res.chunks:
        # the usage has a token no text carried: a special token (empty text) in the event that
        # ended the stream, as vLLM sends its last token; counted when it came, as vLLM's client does
        token(closing)
    res.latency = last - sent if res.chunks else time.perf_counter() - sent
    res.output_len = counted if counted is not None else res.chunks
    if usage and usage.get("prompt_tokens") is not None:
        res.prompt_len = int(usage["prompt_tokens"])
    if res.chunks == 0:
        res.error = "stream ended without any token"


async def _one(sessions, cfg: ClientConfig, req: Request, t0: float, sem, counter) -> RequestResult:
    """One request at its arrival time. A send the server dropped before answering (a pooled
    connection it had closed) goes again on a fresh connection, at most cfg.retries times; its
    times still count from the first send."""
    import aiohttp

    session, fresh = sessions
    delay = t0 + req.send_at - time.perf_counter()
    while delay > 0:  # again if the loop's timer woke early (uvloop rounds to whole milliseconds)
        await asyncio.sleep(delay)
        delay = t0 + req.send_at - time.perf_counter()
    async with sem:
        res = RequestResult(prompt_len=_prompt_len(req))
        sent = time.perf_counter()
        res.start = sent - t0
        try:
            while True:
                try:
                    await _attempt(session if res.retries == 0 else fresh(), cfg, req, res, sent)
                    break
                except _Dropped as e:
                    if res.retries >= cfg.retries:
                        res.error = f"{e} (after {res.retries} retries on fresh connections)"[:300]
                        break
                    res.retries += 1
                    res.chunks, res.itls, res.ttft = 0, [], math.nan
        except asyncio.TimeoutError:
            res.error = f"timed out after {cfg.request_timeout_s:.0f} s"
        except (aiohttp.ClientError, RuntimeError, ValueError, OSError) as e:
            res.error = f"{type(e).__name__}: {e}"[:300]
        if counter is not None:  # not for a cancelled request: progress counts finished ones
            with counter.get_lock():
                counter.value += 1
        return res


class Interrupted(Exception):
    """Ctrl-C during a run: `results` holds every request, the unfinished ones marked."""

    def __init__(self, results: list[RequestResult], stats: RunStats | None = None):
        super().__init__("interrupted")
        self.results = results
        self.stats = stats or RunStats()


class _LocalCounter:
    value = 0

    def get_lock(self):
        return contextlib.nullcontext()


async def _lag_probe(lags: list[float]) -> None:
    """How late a periodic timer fires: a loop busy with other work wakes it late."""
    while True:
        t = time.perf_counter()
        await asyncio.sleep(LAG_PERIOD_S)
        lags.append(max(0.0, time.perf_counter() - t - LAG_PERIOD_S))


def _worker_stats(worker: int, n: int, wall_s: float, cpu_s: float, lags: list[float]) -> WorkerStats:
    import numpy as np

    lag = np.array(lags or [0.0]) * 1e3
    return WorkerStats(worker, n, round(wall_s, 4), round(cpu_s, 4), float(lag.max()), float(np.percentile(lag, 99)),
                       sorted(os.sched_getaffinity(0)))


async def _run_async(cfg: ClientConfig, requests: list[Request], t0: float, concurrency: int | None,
                     counter=None, stop=None, progress=None, worker: int = 0) -> tuple[list[RequestResult], WorkerStats]:
    import aiohttp

    limit = concurrency or len(requests) or 1
    sem = asyncio.Semaphore(limit)
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s)
    lags: list[float] = []
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    probe = asyncio.ensure_future(_lag_probe(lags))
    retry_session = []  # made on the first retry: every connection in it is new (and closed after use)

    def fresh():
        if not retry_session:
            retry_session.append(aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                                       timeout=timeout, read_bufsize=2**18))
        return retry_session[0]

    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, read_bufsize=2**18) as session:
            tasks = [asyncio.ensure_future(_one((session, fresh), cfg, r, t0, sem, counter)) for r in requests]
            pending = set(tasks)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=0.2)
                if progress is not None:
                    progress(counter.value)
                if stop is not None and stop.is_set():
                    for t in pending:
                        t.cancel()
                    await asyncio.wait(pending) if pending else None
                    break
    finally:
        probe.cancel()
        for s in retry_session:
            await s.close()
    stats = _worker_stats(worker, len(requests), time.perf_counter() - wall0, time.thread_time() - cpu0, lags)
    out = []
    for req, t in zip(requests, tasks):
        if t.cancelled() or t.exception() is not None:
            why = "interrupted" if t.cancelled() else f"client error: {t.exception()}"
            out.append(RequestResult(prompt_len=_prompt_len(req), error=why))
        else:
            out.append(t.result())
    return out, stats


def _loop_runner(coro):
    try:
        import uvloop  # a faster event loop when installed (the `fast` extra)

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _worker(cfg: ClientConfig, requests: list[Request], concurrency: int | None, counter, stop, conn,
            worker: int = 0) -> None:
    """Import what the run needs, say "ready", wait for the shared start instant, run, send results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sets `stop` on Ctrl-C
    try:
        if cfg.cpus:
            os.sched_setaffinity(0, cfg.cpus)
        import aiohttp  # noqa: F401 - the slow imports happen before the start instant is chosen

        with contextlib.suppress(ImportError):
            import uvloop  # noqa: F401
        conn.send(("ready", None))
        try:
            t0 = conn.recv()
        except EOFError:  # the parent gave up before the start
            return
        conn.send(("ok", _loop_runner(_run_async(cfg, requests, t0, concurrency, counter, stop, worker=worker))))
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def _split_concurrency(total: int | None, workers: int) -> list[int | None]:
    if total is None:
        return [None] * workers
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]


def run(cfg: ClientConfig, requests: list[Request], progress=None, start_delay_s: float = 0.2) -> list[RequestResult]:
    """Send every request at its arrival time; results in request order (see run_with_stats)."""
    return run_with_stats(cfg, requests, progress, start_delay_s)[0]


def _in_process(cfg: ClientConfig, requests: list[Request], progress) -> tuple[list[RequestResult], RunStats]:
    """One event loop in this process (on this thread, pinned to cfg.cpus while it runs). Ctrl-C
    stops it like the workers: in-flight requests are cancelled, finished ones kept."""
    import aiohttp  # noqa: F401 - imported before the start instant, not in the first request's time

    stop = threading.Event()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None

    def on_sigint(signum, frame):
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once

    if main:
        signal.signal(signal.SIGINT, on_sigint)
    affinity = os.sched_getaffinity(0) if cfg.cpus else None
    try:
        if cfg.cpus:
            os.sched_setaffinity(0, cfg.cpus)  # this thread, and threads it starts (DNS)
        t0 = time.perf_counter() + 0.01
        coro = _run_async(cfg, requests, t0, cfg.max_concurrency, _LocalCounter(), stop, progress)
        try:
            results, worker = _loop_runner(coro)
        except KeyboardInterrupt:
            raise Interrupted([RequestResult(prompt_len=_prompt_len(r), error="interrupted") for r in requests]) from None
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
    stats = RunStats([worker])
    if stop.is_set():
        raise Interrupted(results, stats)
    return results, stats


def run_with_stats(cfg: ClientConfig, requests: list[Request], progress=None,
                   start_delay_s: float = 0.2) -> tuple[list[RequestResult], RunStats]:
    """Send every request at its arrival time -> (results in request order, how busy the client
    was). `progress(done)` is called from this process while the run goes on. Ctrl-C raises
    Interrupted with what finished. With several workers, the start instant is `start_delay_s`
    after the last one is ready."""
    if not requests:
        return [], RunStats()
    check_cpus(cfg.cpus)
    workers = min(cfg.workers or workers_for(len(requests)), len(requests), cfg.max_concurrency or len(requests))
    if workers == 1:
        return _in_process(cfg, requests, progress)

    # The start instant is chosen once every worker has started and imported what it needs, so
    # a slow start (a loaded machine, a cold disk) delays the whole run instead of bunching up
    # the first requests and stretching the measured duration.
    ctx = mp.get_context("spawn")
    counter, stop = ctx.Value("i", 0), ctx.Event()
    limits = _split_concurrency(cfg.max_concurrency, workers)
    procs, pipes = [], []
    ready = [False] * workers
    t0: float | None = None
    outs: list[tuple[list[RequestResult], WorkerStats] | None] = [None] * workers
    interrupted = False

    def died(w: int) -> RuntimeError:
        procs[w].join(timeout=1)
        return RuntimeError(f"client worker {w} died (exit code {procs[w].exitcode})")

    def go(ws) -> None:
        for w in ws:
            try:
                pipes[w].send(t0)
            except OSError:
                raise died(w) from None

    try:
        for w in range(workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(cfg, requests[w::workers], limits[w], counter, stop, child, w),
                            daemon=True)
            p.start()
            child.close()
            procs.append(p)
            pipes.append(parent)
        while any(o is None for o in outs):
            try:
                # one wait on every pipe: a message from any worker is read at once
                mp_connection.wait([p for w, p in enumerate(pipes) if outs[w] is None], timeout=0.1)
                for w, pipe in enumerate(pipes):
                    if outs[w] is None and pipe.poll(0):
                        try:
                            status, payload = pipe.recv()
                        except EOFError:
                            raise died(w) from None
                        if status == "ready":
                            ready[w] = True
                            if t0 is not None:  # started without it (Ctrl-C while starting)
                                go([w])
                            elif all(ready):
                                t0 = time.perf_counter() + start_delay_s
                                go(range(workers))
                            continue
                        if status != "ok":
                            raise RuntimeError(f"client worker failed: {payload}")
                        outs[w] = payload
                    elif outs[w] is None and not procs[w].is_alive() and not pipe.poll(0):
                        raise died(w)
                if progress:
                    progress(counter.value)
            except KeyboardInterrupt:
                interrupted = True
                stop.set()  # workers cancel what is in flight and send what they have
                if t0 is None:  # let the ready ones start (and stop at once); the rest follow when ready
                    t0 = time.perf_counter()
                    go([w for w in range(workers) if ready[w]])
    finally:
        for pipe in pipes:
            pipe.close()  # a worker still waiting for the start instant gets EOFError and exits
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    results: list[RequestResult] = [None] * len(requests)  # type: ignore[list-item]
    for w, (out, _) in enumerate(outs):  # type: ignore[misc]
        for j, r in enumerate(out):
            results[w + j * workers] = r
    stats = RunStats([s for _, s in outs])  # type: ignore[misc]
    if interrupted:
        raise Interrupted(results, stats)
    return results, stats
