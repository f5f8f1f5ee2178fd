"""A real OpenAI-compatible server with known token timings, for tests and for measuring the
client's own capacity. Not a model: unless a Script subclass's `reply` answers otherwise, it
streams `max_tokens` " tok" chunks, the first `ttft_s` (+ `ttft_per_token_s` x prompt length)
after the request arrives, then one every `itl_s`, on absolute deadlines so timings do not drift.
Serves /v1/completions and /v1/chat/completions (streamed or not), /v1/responses (not streamed),
/v1/models, /health, /version, vLLM-style /metrics and, with a profile_dir, vLLM's
/start_profile and /stop_profile.

    python -m attnbench.serving.scripted_server --port 8000 --ttft 0.05 --itl 0.01 [--workers 2]
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from attnbench import atomic

BACKLOG = 2048  # connections waiting to be accepted, as uvicorn (vLLM's server) allows


@dataclass
class Reply:
    """One answer, as `Script.reply` gives it: `tokens` are the streamed chunks (joined when not
    streamed); a status other than 200 answers `error` instead, after `delay_s` either way."""
    tokens: list[str]
    finish_reason: str | None = "length"
    reasoning: str = ""  # chat: message.reasoning_content; responses: a reasoning item
    status: int = 200
    error: str = "scripted failure"
    delay_s: float = 0.0
    usage: tuple[int, int] | None = None  # (prompt, completion) tokens reported instead of the counted ones
    choice: dict = field(default_factory=dict)  # more keys of a completion's choice (vLLM's logprobs, token ids)


@dataclass
class Script:
    """How the server answers; subclasses override `reply` to answer as a model would."""
    ttft_s: float = 0.05
    ttft_per_token_s: float = 0.0
    itl_s: float = 0.01
    model: str = "scripted"
    fail_status: dict[int, int] = field(default_factory=dict)  # request number -> HTTP status to answer
    error_after: dict[int, int] = field(default_factory=dict)  # request number -> tokens before a mid-stream error
    hang: set[int] = field(default_factory=set)  # request numbers that never send a token
    report_usage: bool = True
    metrics: bool = True  # serve vLLM-style /metrics of what this server did
    preemptions: dict[int, int] = field(default_factory=dict)  # request number -> preemptions /metrics reports
    kv_cache_usage: float = 0.0  # what /metrics reports as vllm:kv_cache_usage_perc (0..1)
    # As servers seen in the field behave:
    # llama.cpp's llama-server closes a connection after each stream although it answered with
    # keep-alive; a request sent on it is lost (here: dropped unanswered on arrival).
    close_after_stream: bool = False
    # llama-server's last event is {"choices": [{"text": "", ...}], "usage": {...}}, not choices: [].
    empty_final_event: bool = False
    # llama-cpp-python's server takes `prompt` only as a string (token-id lists: HTTP 500).
    text_prompts_only: bool = False
    count_tokens: Callable[[str], int] | None = None  # tokens of a text prompt (default: whitespace words)
    # what /version and /v1/models tell (vLLM's keys), and the Server response header
    version: str | None = None
    max_model_len: int | None = None
    root: str | None = None
    meta: dict | None = None  # llama.cpp's server: {"n_vocab": ..., "n_ctx_train": ...}
    server_header: str | None = None
    # vLLM's torch profiler (--profiler-config): /start_profile and /stop_profile answer only with a
    # directory; stop writes a Kineto-style trace of `profile_steps` decode steps there, each running
    # `profile_kernels` ((name, us) pairs) on the GPU's timeline
    profile_dir: str | None = None
    profile_steps: int = 5
    profile_kernels: tuple[tuple[str, float], ...] = (("gemm", 300.0), ("attention", 450.0))

    def reply(self, path: str, body: dict, n: int) -> Reply | None:
        """The answer to request number `n` at `path` ("completions", "chat" or "responses");
        None: `max_tokens` scripted tokens."""
        return None


class ScriptedServer:
    """Runs on its own thread (or in the foreground with `serve_forever`); `requests` keeps the
    JSON bodies received, in arrival order, and `paths` where each went, for tests to inspect."""

    def __init__(self, script: Script | None = None, host: str = "127.0.0.1", port: int = 0, sock=None):
        self.script = script or Script()
        self.host, self.port, self._sock = host, port, sock
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.dropped = 0  # requests that arrived on a connection closed after its stream
        self._streamed: set = set()  # transports of connections that carried a stream (close_after_stream)
        self.active = 0
        self.profiling = False  # between /start_profile and /stop_profile
        self.max_active = 0
        self.stats = ServedStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._runner = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def _app(self):
        from aiohttp import web

        app = web.Application()
        app.on_response_prepare.append(self._server_header)
        app.router.add_get("/version", self._version)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        for path in ("completions", "chat", "responses"):
            app.router.add_post("/v1/chat/completions" if path == "chat" else f"/v1/{path}",
                                functools.partial(self._answer, path=path))
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/start_profile", self._start_profile)
        app.router.add_post("/stop_profile", self._stop_profile)
        return app

    async def _start_profile(self, request):
        from aiohttp import web

        if self.script.profile_dir is None:  # vLLM adds these routes only with --profiler-config
            raise web.HTTPNotFound()
        self.profiling = True
        return web.Response(text="")

    async def _stop_profile(self, request):
        from aiohttp import web

        if self.script.profile_dir is None:
            raise web.HTTPNotFound()
        if self.profiling:
            self.profiling = False
            write_trace(Path(self.script.profile_dir), self.script.profile_steps, self.script.profile_kernels)
        return web.Response(text="")

    async def _version(self, request):
        from aiohttp import web

        if self.script.version is None:
            raise web.HTTPNotFound()
        return web.json_response({"version": self.script.version})

    async def _server_header(self, request, response):
        if self.script.server_header is not None:
            response.headers["Server"] = self.script.server_header

    async def _health(self, request):
        from aiohttp import web

        return web.Response(text="")

    async def _models(self, request):
        from aiohttp import web

        s = self.script
        model = {"id": s.model, "object": "model", "owned_by": "scripted"}
        if s.root is not None:
            model["root"] = s.root
        if s.max_model_len is not None:
            model["max_model_len"] = s.max_model_len
        if s.meta is not None:
            model["meta"] = s.meta
        return web.json_response({"object": "list", "data": [model]})

    async def _metrics(self, request):
        from aiohttp import web

        if not self.script.metrics:
            raise web.HTTPNotFound()
        text = self.stats.render(self.script.model, self.active, self.script.kv_cache_usage)
        return web.Response(text=text, content_type="text/plain")

    async def _answer(self, request, path: str):
        from aiohttp import web

        arrived = time.perf_counter()
        s = self.script
        conn = request.transport
        if s.close_after_stream and conn in self._streamed:
            self.dropped += 1
            request.transport.close()  # as a server that closed this connection after the last stream
            raise asyncio.CancelledError
        body = await request.json()
        n = len(self.requests)
        self.requests.append(body)
        self.paths.append(path)
        if n in s.fail_status:
            return _error(s.fail_status[n], "scripted failure")
        if path == "completions":
            prompt = body.get("prompt", [])
        else:
            prompt = " ".join(m["content"] for m in body.get("messages") or body.get("input") or []
                              if isinstance(m.get("content"), str))
        if s.text_prompts_only and not (isinstance(prompt, str) or
                                        isinstance(prompt, list) and all(isinstance(x, str) for x in prompt)):
            return _error(500, "prompt must be a string or a list of strings", "internal_server_error")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            prompt_len = s.count_tokens(prompt) if s.count_tokens else len(prompt.split())
        else:
            prompt_len = len(prompt)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or body.get("max_output_tokens")
        reply = s.reply(path, body, n) or Reply([" tok"] * int(max_tokens or 16))
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.status != 200:
            return _error(reply.status, reply.error)
        prompt_len, out_len = reply.usage or (prompt_len, len(reply.tokens))
        usage = {"prompt_tokens": prompt_len, "completion_tokens": out_len, "total_tokens": prompt_len + out_len}
        cid = f"cmpl-{n}"
        first = arrived + reply.delay_s + s.ttft_s + s.ttft_per_token_s * prompt_len
        if not body.get("stream") or path == "responses":
            await asyncio.sleep(max(0.0, first + s.itl_s * (len(reply.tokens) - 1) - time.perf_counter()))
            self.stats.finished(arrived, prompt_len, [], out_len, s.preemptions.get(n, 0), streamed=False)
            return web.json_response(self._whole(path, cid, reply, usage))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        times: list[float] = []
        try:
            if n in s.hang:
                await asyncio.sleep(3600)
            chunks = {t: self._event(path, cid, [self._choice(path, t, None)], None) for t in set(reply.tokens)}
            for i, token in enumerate(reply.tokens):
                if i == len(reply.tokens) - 1:  # as vLLM streams it: the last token's event says why it ended
                    chunks[token] = self._event(path, cid, [self._choice(path, token, reply.finish_reason)], None)
                if n in s.error_after and i == s.error_after[n]:
                    await resp.write(b'data: {"error": {"message": "scripted mid-stream failure", "code": 500}}\n\n')
                    return resp
                delay = first + i * s.itl_s - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await resp.write(chunks[token])
                times.append(time.perf_counter())
            if (body.get("stream_options") or {}).get("include_usage") and s.report_usage:
                last = [self._choice(path, "", reply.finish_reason)] if s.empty_final_event else []
                await resp.write(self._event(path, cid, last, usage))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            if s.close_after_stream:
                self._streamed.add(conn)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.active -= 1
            self.stats.finished(arrived, prompt_len, times, len(reply.tokens), s.preemptions.get(n, 0))
        return resp

    @staticmethod
    def _choice(path: str, token: str, finish_reason: str | None) -> dict:
        if path == "chat":
            return {"index": 0, "delta": {"content": token} if token else {}, "finish_reason": finish_reason}
        return {"index": 0, "text": token, "finish_reason": finish_reason}

    def _event(self, path: str, cid: str, choices: list, usage: dict | None) -> bytes:
        kind = "chat.completion.chunk" if path == "chat" else "text_completion"
        return b"data: " + json.dumps({"id": cid, "object": kind, "created": 0, "model": self.script.model,
                                       "choices": choices, "usage": usage}).encode() + b"\n\n"

    def _whole(self, path: str, cid: str, reply: Reply, usage: dict) -> dict:
        """A non-streamed answer in the shape of its path."""
        text, model = "".join(reply.tokens), self.script.model
        if path == "completions":
            return {"id": cid, "object": "text_completion", "model": model, "usage": usage, "choices": [
                {"index": 0, "text": text, "finish_reason": reply.finish_reason, **reply.choice}]}
        if path == "chat":
            message = {"role": "assistant", "content": text or None, "reasoning_content": reply.reasoning or None}
            return {"id": cid, "object": "chat.completion", "model": model, "usage": usage,
                    "choices": [{"index": 0, "finish_reason": reply.finish_reason, "message": message}]}
        output = [{"type": "reasoning", "content": [{"type": "reasoning_text", "text": reply.reasoning}]}]
        output = output[:bool(reply.reasoning)] + [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]}]
        truncated = reply.finish_reason == "length"
        return {"id": cid, "object": "response", "model": model, "output": output,
                "status": "incomplete" if truncated else "completed",
                "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
                "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                          "total_tokens": usage["total_tokens"]}}

    async def _start(self):
        from aiohttp import web

        self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        # aiohttp listens with a backlog of 128: at 256 connections at once the rest were dropped
        # and retried by TCP a second later (1.1 s TTFTs on the H200), which the truth must not do
        if self._sock is not None:
            site = web.SockSite(self._runner, self._sock, backlog=BACKLOG)
        else:
            site = web.TCPSite(self._runner, self.host, self.port, reuse_port=False, backlog=BACKLOG)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    def start(self) -> "ScriptedServer":
        """Serve on a background thread; returns once it accepts connections."""

        def main():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._start())
            self._started.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("scripted server did not start")
        return self

    def stop(self) -> None:
        if self._loop and self._thread:
            done = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            try:
                done.result(timeout=5)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=5)

    def __enter__(self) -> "ScriptedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        loop = asyncio.new_event_loop()
        loop.run_until_complete(self._start())
        loop.run_forever()


def write_trace(folder: Path, steps: int, kernels) -> Path:
    """A trace as vLLM's engine writes it (tensorboard_trace_handler's name, gzipped Chrome JSON):
    per decode step a CPU and a GPU annotation, and the step's kernels back to back."""
    events, t = [], 0.0
    step, name = sum(us for _, us in kernels), "execute_context_0(0)_generation_4(4)"
    for _ in range(steps):
        events += [{"ph": "X", "cat": "user_annotation", "name": name, "ts": t, "dur": step},
                   {"ph": "X", "cat": "gpu_user_annotation", "name": name, "ts": t, "dur": step}]
        for kernel, us in kernels:
            events.append({"ph": "X", "cat": "kernel", "name": kernel, "ts": t, "dur": us})
            t += us
    path = folder / f"scripted_dp0_pp0_tp0.{time.time_ns()}.pt.trace.json.gz"
    return atomic.write_bytes(path, gzip.compress(json.dumps({"traceEvents": events}).encode()))


class ServedStats:
    """What the server did, under vLLM's /metrics names and buckets (one engine): requests,
    tokens, preemptions, and TTFT / token-gap / per-request TPOT / e2e histograms from its own
    clock (arrival to each chunk written). With --workers > 1 each process counts its own."""

    BUCKETS = {
        "vllm:time_to_first_token_seconds": [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                                             1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0],
        "vllm:inter_token_latency_seconds": [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
                                             2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0],
        "vllm:e2e_request_latency_seconds": [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                                             50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0],
    }
    BUCKETS["vllm:request_time_per_output_token_seconds"] = BUCKETS["vllm:inter_token_latency_seconds"]

    def __init__(self):
        self.counters = {"vllm:request_success": 0, "vllm:prompt_tokens": 0, "vllm:generation_tokens": 0,
                         "vllm:num_preemptions": 0}
        self.hist = {name: ([0] * len(b), [0.0, 0]) for name, b in self.BUCKETS.items()}  # per-bucket, [sum, n]

    def observe(self, name: str, value: float) -> None:
        from bisect import bisect_left

        counts, total = self.hist[name]
        i = bisect_left(self.BUCKETS[name], value)  # the first bound >= value
        if i < len(counts):
            counts[i] += 1
        total[0] += value
        total[1] += 1

    def finished(self, arrived: float, prompt_len: int, times: list[float], max_tokens: int, preemptions: int,
                 streamed: bool = True) -> None:
        """One request done: `times` are its chunks' write times (none when not streamed)."""
        c = self.counters
        c["vllm:prompt_tokens"] += prompt_len
        c["vllm:num_preemptions"] += preemptions
        c["vllm:generation_tokens"] += len(times) if streamed else max_tokens
        if times:
            self.observe("vllm:time_to_first_token_seconds", times[0] - arrived)
            for a, b in zip(times, times[1:]):
                self.observe("vllm:inter_token_latency_seconds", b - a)
            if len(times) > 1:
                self.observe("vllm:request_time_per_output_token_seconds", (times[-1] - times[0]) / (len(times) - 1))
        if not streamed or len(times) == max_tokens:  # failures and hangs are not successes
            c["vllm:request_success"] += 1
            self.observe("vllm:e2e_request_latency_seconds", (times[-1] if times else time.perf_counter()) - arrived)

    def render(self, model: str, running: int = 0, kv_cache_usage: float = 0.0) -> str:
        labels = f'engine="0",model_name="{model}"'
        out = ["# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{labels}}} {float(running)}",
               "# TYPE vllm:kv_cache_usage_perc gauge", f"vllm:kv_cache_usage_perc{{{labels}}} {float(kv_cache_usage)}"]
        for name, v in self.counters.items():
            reason = ',finished_reason="length"' if name == "vllm:request_success" else ""
            out += [f"# TYPE {name}_total counter", f"{name}_total{{{labels}{reason}}} {float(v)}"]
        for name, (counts, (total, n)) in self.hist.items():
            out.append(f"# TYPE {name} histogram")
            cum = 0
            for le, k in zip(self.BUCKETS[name], counts):
                cum += k
                out.append(f'{name}_bucket{{{labels},le="{le}"}} {float(cum)}')
            out += [f'{name}_bucket{{{labels},le="+Inf"}} {float(n)}',
                    f"{name}_count{{{labels}}} {float(n)}", f"{name}_sum{{{labels}}} {total!r}"]
        return "\n".join(out) + "\n"


def _error(status: int, message: str, kind: str | None = None):
    from aiohttp import web

    error = {"message": message, "code": status} | ({"type": kind} if kind else {})
    return web.json_response({"error": error}, status=status)


@contextlib.contextmanager
def spawned(ttft_s: float, itl_s: float, workers: int = 1, model: str = "scripted", host: str = "127.0.0.1"):
    """The server in processes of its own, as a real server runs beside a client (a thread would
    share the client's interpreter); yields its base URL once it answers, and stops its process
    group on the way out."""
    import subprocess
    import sys
    import urllib.request

    from attnbench import procs

    proc = subprocess.Popen([sys.executable, "-m", "attnbench.serving.scripted_server", "--host", host, "--port", "0",
                             "--ttft", str(ttft_s), "--itl", str(itl_s), "--workers", str(workers), "--model", model],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()  # "scripted server on URL (pid N)"
        if not line.startswith("scripted server on "):
            raise RuntimeError(f"scripted server did not start (exit code {proc.poll()})")
        url = line.split()[3]
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"scripted server at {url} did not answer")
        yield url
    finally:
        procs.stop_group(proc, grace_s=10)


def _serve_process(script: Script, sock: socket.socket) -> None:
    ScriptedServer(script, sock=sock).serve_forever()


def main(argv: list[str] | None = None) -> None:
    import argparse
    import multiprocessing as mp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--ttft", type=float, default=0.05)
    ap.add_argument("--itl", type=float, default=0.01)
    ap.add_argument("--model", default="scripted")
    ap.add_argument("--workers", type=int, default=1, help="server processes sharing the port")
    a = ap.parse_args(argv)
    script = Script(ttft_s=a.ttft, itl_s=a.itl, model=a.model)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((a.host, a.port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    print(f"scripted server on http://{a.host}:{sock.getsockname()[1]}/v1 (pid {os.getpid()})", flush=True)
    procs = [mp.get_context("fork").Process(target=_serve_process, args=(script, sock), daemon=True)
             for _ in range(a.workers - 1)]
    for p in procs:
        p.start()
    _serve_process(script, sock)


if __name__ == "__main__":
    main()
