"""The streaming load generator: OpenAI completions requests with token-id prompts, a timestamp
per streamed chunk, spread over worker processes so the client is never the bottleneck.

Each worker process runs one asyncio loop over its share of the requests (request i goes to
worker i % workers, at its own arrival time measured from a start instant shared by all
workers; time.perf_counter is CLOCK_MONOTONIC, the same clock in every process on Linux)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Request:
    prompt: list[int]
    max_tokens: int
    send_at: float  # seconds after the start instant


@dataclass
class RequestResult:
    prompt_len: int
    output_len: int = 0  # from the server's usage; the chunk count when it reports none
    start: float = 0.0  # when it was sent, seconds after the start instant
    ttft: float = math.nan  # seconds
    itls: list[float] = field(default_factory=list)  # gaps between streamed chunks, seconds
    latency: float = math.nan  # end-to-end, seconds
    chunks: int = 0
    error: str = ""

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


async def _one(session, cfg: ClientConfig, req: Request, t0: float, sem, counter) -> RequestResult:
    import aiohttp

    res = RequestResult(prompt_len=len(req.prompt))
    delay = t0 + req.send_at - time.perf_counter()
    while delay > 0:  # again if the loop's timer woke early (uvloop rounds to whole milliseconds)
        await asyncio.sleep(delay)
        delay = t0 + req.send_at - time.perf_counter()
    async with sem:
        sent = time.perf_counter()
        res.start = sent - t0
        last = sent
        usage_tokens = None
        try:
            async with session.post(f"{cfg.base_url}/completions", data=_body(cfg, req),
                                    headers={"Content-Type": "application/json"}) as resp:
                if resp.status != 200:
                    text = (await resp.text())[:300].replace("\n", " ")
                    res.error = f"HTTP {resp.status}: {text}"
                    return res
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
                        # token chunks carry "usage":null; only the rest (final usage, errors) is parsed
                        if b'"usage":null' not in payload and b'"usage": null' not in payload:
                            obj = json.loads(payload)
                            if "error" in obj:
                                raise RuntimeError(f"server error mid-stream: {str(obj['error'])[:200]}")
                            if obj.get("usage"):
                                usage_tokens = obj["usage"].get("completion_tokens")
                            if not obj.get("choices"):
                                continue
                        if res.chunks == 0:
                            res.ttft = now - sent
                        else:
                            res.itls.append(now - last)
                        res.chunks += 1
                        last = now
            res.latency = last - sent if res.chunks else time.perf_counter() - sent
            res.output_len = usage_tokens if usage_tokens is not None else res.chunks
            if res.chunks == 0:
                res.error = "stream ended without any token"
        except asyncio.TimeoutError:
            res.error = f"timed out after {cfg.request_timeout_s:.0f} s"
        except (aiohttp.ClientError, RuntimeError, ValueError, OSError) as e:
            res.error = f"{type(e).__name__}: {e}"[:300]
        finally:
            if counter is not None:
                with counter.get_lock():
                    counter.value += 1
        return res


class Interrupted(Exception):
    """Ctrl-C during a run: `results` holds every request, the unfinished ones marked."""

    def __init__(self, results: list[RequestResult]):
        super().__init__("interrupted")
        self.results = results


class _LocalCounter:
    value = 0

    def get_lock(self):
        return contextlib.nullcontext()


async def _run_async(cfg: ClientConfig, requests: list[Request], t0: float, concurrency: int | None,
                     counter=None, stop=None, progress=None) -> list[RequestResult]:
    import aiohttp

    limit = concurrency or len(requests) or 1
    sem = asyncio.Semaphore(limit)
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, read_bufsize=2**18) as session:
        tasks = [asyncio.ensure_future(_one(session, cfg, r, t0, sem, counter)) for r in requests]
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
    out = []
    for req, t in zip(requests, tasks):
        if t.cancelled() or t.exception() is not None:
            why = "interrupted" if t.cancelled() else f"client error: {t.exception()}"
            out.append(RequestResult(prompt_len=len(req.prompt), error=why))
        else:
            out.append(t.result())
    return out


def _loop_runner(coro):
    try:
        import uvloop  # a faster event loop when installed (the `fast` extra)

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _worker(cfg: ClientConfig, requests: list[Request], concurrency: int | None, counter, stop, conn) -> None:
    """Import what the run needs, say "ready", wait for the shared start instant, run, send results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sets `stop` on Ctrl-C
    try:
        import aiohttp  # noqa: F401 - the slow imports happen before the start instant is chosen

        with contextlib.suppress(ImportError):
            import uvloop  # noqa: F401
        conn.send(("ready", None))
        try:
            t0 = conn.recv()
        except EOFError:  # the parent gave up before the start
            return
        conn.send(("ok", _loop_runner(_run_async(cfg, requests, t0, concurrency, counter, stop))))
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
    """Send every request at its arrival time; results in request order. `progress(done)` is
    called from this process while the run goes on. Ctrl-C raises Interrupted with what finished.
    With several workers, the start instant is `start_delay_s` after the last one is ready."""
    if not requests:
        return []
    workers = min(cfg.workers or workers_for(len(requests)), len(requests), cfg.max_concurrency or len(requests))
    if workers == 1:
        import aiohttp  # noqa: F401 - imported before the start instant, not in the first request's time

        t0 = time.perf_counter() + 0.01
        stop = threading.Event()
        coro = _run_async(cfg, requests, t0, cfg.max_concurrency, _LocalCounter(), stop, progress)
        try:
            return _loop_runner(coro)
        except KeyboardInterrupt:
            raise Interrupted([RequestResult(prompt_len=len(r.prompt), error="interrupted") for r in requests]) from None

    # The start instant is chosen once every worker has started and imported what it needs, so
    # a slow start (a loaded machine, a cold disk) delays the whole run instead of bunching up
    # the first requests and stretching the measured duration.
    ctx = mp.get_context("spawn")
    counter, stop = ctx.Value("i", 0), ctx.Event()
    limits = _split_concurrency(cfg.max_concurrency, workers)
    procs, pipes = [], []
    ready = [False] * workers
    t0: float | None = None
    outs: list[list[RequestResult] | None] = [None] * workers
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
            p = ctx.Process(target=_worker, args=(cfg, requests[w::workers], limits[w], counter, stop, child),
                            daemon=True)
            p.start()
            child.close()
            procs.append(p)
            pipes.append(parent)
        while any(o is None for o in outs):
            try:
                for w, pipe in enumerate(pipes):
                    if outs[w] is None and pipe.poll(0.1):
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
    for w, out in enumerate(outs):
        for j, r in enumerate(out):  # type: ignore[arg-type]
            results[w + j * workers] = r
    if interrupted:
        raise Interrupted(results)
    return results
