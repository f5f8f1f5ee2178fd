"""One `vllm serve` per backend: start on a free loopback port, wait until it answers, stop the
whole process group (vLLM spawns engine processes) and wait for the GPU to be free again."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from attnbench import procs
from attnbench.backends.registry import Backend

HOST = "127.0.0.1"


class ServerFailed(Exception):
    """The server did not come up (crash, timeout); `reason` is one line, `log_tail` the evidence."""

    def __init__(self, reason: str, log_tail: list[str]):
        super().__init__(reason)
        self.reason = reason
        self.log_tail = log_tail


@dataclass
class ServerSpec:
    model: str  # what `vllm serve` loads: a local folder or an HF id
    backend: Backend | None
    log_path: Path
    extra_args: list[str] = field(default_factory=list)  # --serve-arg pass-through
    served_model_name: str | None = None
    ready_timeout_s: float = 900.0
    stop_grace_s: float = 30.0
    env: dict[str, str] = field(default_factory=dict)
    cpus: tuple[int, ...] | None = None  # pin the server's processes here (keeps the client's cores free)
    label: str | None = None  # its name in output; default the backend's (two servers of one backend need two)


def vllm_command() -> list[str]:
    """The server executable: `python -m vllm.entrypoints.cli.main serve`, or $ATTNBENCH_VLLM_CMD
    (used by tests and by sites that wrap vLLM)."""
    override = os.environ.get("ATTNBENCH_VLLM_CMD")
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def log_tail(path: Path, n: int = 15) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    return [line.rstrip() for line in lines if line.strip()][-n:]


def _child_setup(cpus: tuple[int, ...] | None):
    def setup() -> None:
        if cpus:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, cpus)  # inherited by the engine processes vLLM spawns
        _die_with_parent()

    return setup


def _die_with_parent() -> None:
    """Runs in the child before exec (Linux): if we die, the server gets SIGTERM, and vLLM's
    shutdown takes its engine process with it. (SIGKILL here left the engine orphaned holding
    ~10 GiB of GPU memory on the H100, and the next server failed to start.)"""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_EXCEPTION = re.compile(r"\b([A-Z]\w*(?:Error|Exception)|CUDA error): (.+)")
_WRAPPERS = ("See root cause above", "See stack trace", "Engine core initialization failed")


def root_cause(lines: list[str]) -> str | None:
    """The exception that explains a failed start, e.g. "ValueError: Free memory on device ...":
    the last exception line in the log that is not one of vLLM's wrappers pointing elsewhere."""
    found = None
    for line in lines:
        m = _EXCEPTION.search(line)
        if m and not any(w in m.group(2) for w in _WRAPPERS):
            found = f"{m.group(1)}: {m.group(2).strip()}"
    return found


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except (OSError, ValueError):
        return 0, b""


class VllmServer:
    def __init__(self, spec: ServerSpec):
        self.spec = spec
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.model_name = spec.served_model_name or spec.model

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def label(self) -> str:
        return self.spec.label or (self.spec.backend.name if self.spec.backend else "server")

    def command(self) -> list[str]:
        args = [*vllm_command(), self.spec.model, "--host", HOST, "--port", str(self.port)]
        if self.spec.served_model_name:
            args += ["--served-model-name", self.spec.served_model_name]
        if self.spec.backend:
            args += list(self.spec.backend.serve_args)
        return args + list(self.spec.extra_args)

    def start(self) -> None:
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.spec.backend.serve_env if self.spec.backend else {}), **self.spec.env}
        with open(self.spec.log_path, "ab") as log:
            log.write(f"# attnbench: {shlex.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True,
                                         preexec_fn=_child_setup(self.spec.cpus))

    def log_offset(self) -> int:
        try:
            return self.spec.log_path.stat().st_size
        except OSError:
            return 0

    def wait_for_log(self, pattern: re.Pattern, timeout_s: float) -> bool:
        """Wait until the server's log matches `pattern` (True), or it exits, answers /health or the
        time runs out (False): how a side-by-side start knows this server has taken its memory."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        pos = 0
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with open(self.spec.log_path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
            except OSError:
                chunk = b""
            text = chunk.decode(errors="replace")
            if pattern.search(text):
                return True
            pos += len(chunk) - min(len(chunk), 400)  # a line split across reads is seen whole next time
            if _get(f"http://{HOST}:{self.port}/health", timeout=0.5)[0] == 200:
                return False
            time.sleep(0.5)
        return False

    def wait_ready(self, status: Callable[[str], None] | None = None) -> None:
        """Poll /health, then /v1/models, until both answer; raise ServerFailed on exit or timeout."""
        assert self.proc is not None
        t0 = time.monotonic()
        healthy = False
        while True:
            elapsed = time.monotonic() - t0
            code = self.proc.poll()
            if code is not None:
                tail = log_tail(self.spec.log_path, 400)
                cause = root_cause(tail)
                raise ServerFailed(f"{self.label}: vllm serve exited with code {code} after {elapsed:.0f} s while starting"
                                   + (f": {cause}" if cause else ""), tail[-15:])
            if elapsed > self.spec.ready_timeout_s:
                raise ServerFailed(f"{self.label}: server not healthy after {self.spec.ready_timeout_s:.0f} s "
                                   "(raise --ready-timeout if it is still compiling)", log_tail(self.spec.log_path))
            if not healthy:
                healthy = _get(f"http://{HOST}:{self.port}/health")[0] == 200
            if healthy:
                code, body = _get(f"{self.base_url}/models")
                if code == 200:
                    with contextlib.suppress(ValueError, KeyError, IndexError):
                        self.model_name = json.loads(body)["data"][0]["id"]
                    return
            if status:
                last = (log_tail(self.spec.log_path, 1) or [""])[0]
                status(f"[{self.label}] starting vllm {int(elapsed) // 60}m{int(elapsed) % 60:02d}s | {last[-120:]}")
            time.sleep(1.0)

    def stop(self, grace_s: float | None = None, wait_gpu: bool = True) -> None:
        """SIGTERM the process group, SIGKILL what is left after the grace period (default the
        spec's), then wait for the GPU memory to be released (unless `wait_gpu` is False)."""
        if self.proc is None:
            return
        procs.stop_group(self.proc, self.spec.stop_grace_s if grace_s is None else grace_s)
        self.proc = None
        if wait_gpu:
            wait_gpu_released()

    def __enter__(self) -> "VllmServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_gpu_released(timeout_s: float = 60.0) -> bool:
    """Wait until no compute process holds GPU memory (no-op without nvidia-smi)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return True
        if out.returncode != 0 or not out.stdout.strip():
            return True
        if time.monotonic() > deadline:
            print(f"attnbench: warning: GPU still held by pid(s) {out.stdout.split()} after {timeout_s:.0f} s",
                  file=sys.stderr)
            return False
        time.sleep(1.0)
