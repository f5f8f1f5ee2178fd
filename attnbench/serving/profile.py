"""Kernel time per engine step of a served pass, from vLLM's torch profiler. serve-bench starts its
servers with `--profiler-config` (recording starts DELAY_STEPS engine steps after /start_profile
and lasts the asked number of steps), runs one extra unmeasured pass between /start_profile and
/stop_profile, and reads the trace the engine core writes. What a backend's step spends on each
kernel inside the server's CUDA graphs, beside another backend's, says where a TPOT gap is, which
a kernel timed alone (microbench, explain) cannot.

The trace is Kineto's Chrome trace JSON: GPU work is "X" events of cat kernel, gpu_memcpy or
gpu_memset (µs); each engine step is a user annotation vLLM names
"execute_context_<requests>(<tokens>)_generation_<requests>(<tokens>)", which Kineto also lays
on the GPU's timeline (cat gpu_user_annotation)."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Engine steps after /start_profile before recording: past the prefill of a burst of requests
# (256 x 1000 tokens is 32 chunks of 8192), so a decode-heavy pass records steady decode steps,
# and well inside an 8000-token prompt burst's ~250 prefill chunks.
DELAY_STEPS = 100
GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
_STEP = re.compile(r"^execute_(?:\d+_)?context_(\d+)\((\d+)\)")


def server_args(trace_dir: Path, steps: int) -> list[str]:
    """`vllm serve` arguments that make /start_profile record `steps` engine steps into trace_dir
    (no CPU stacks or shapes: they slow the steps being measured; no frontend trace)."""
    config = {"profiler": "torch", "torch_profiler_dir": str(Path(trace_dir).resolve()), "ignore_frontend": True,
              "delay_iterations": DELAY_STEPS, "max_iterations": int(steps), "torch_profiler_with_stack": False}
    return ["--profiler-config", json.dumps(config, separators=(",", ":"))]


def _post(base_url: str, path: str, timeout_s: float) -> str | None:
    """POST to the server's root (base_url without /v1); None on success, else why not."""
    url = base_url.rstrip("/").removesuffix("/v1") + path
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=timeout_s) as r:
            return None if r.status == 200 else f"HTTP {r.status}"
    except Exception as e:  # noqa: BLE001 - a profile must never cost the benchmark
        return f"{type(e).__name__}: {e}"


def start(base_url: str) -> str | None:
    return _post(base_url, "/start_profile", 60.0)


def stop(base_url: str) -> str | None:
    """The engine writes the trace while this answers (vLLM waits for it), hence the long timeout."""
    return _post(base_url, "/stop_profile", 300.0)


def traces(trace_dir: Path) -> list[Path]:
    """Finished trace files, oldest first (a temporary file beside one, or one gone meanwhile, is none)."""
    found = []
    for p in Path(trace_dir).glob("*.pt.trace.json*"):
        if p.name.endswith((".pt.trace.json", ".pt.trace.json.gz")):
            with contextlib.suppress(OSError):
                found.append((p.stat().st_mtime, p))
    return [p for _, p in sorted(found)]


def wait_for_trace(trace_dir: Path, before: set[Path], timeout_s: float = 120.0) -> Path | None:
    """The trace file that appeared in trace_dir since `before` was listed, once its size holds."""
    deadline, size = time.monotonic() + timeout_s, -1
    while time.monotonic() < deadline:
        new = [p for p in traces(trace_dir) if p not in before]
        if new:
            now = new[-1].stat().st_size
            if now == size and now > 0:
                return new[-1]
            size = now
        time.sleep(0.5)
    return None


@dataclass
class Kernel:
    name: str
    us_per_step: float
    calls_per_step: float


@dataclass
class StepProfile:
    steps: int  # engine steps in the trace (its execute_* annotations)
    decode_steps: int  # of them, steps with no prompt tokens (context 0); -1: not annotated
    kernel_us_per_step: float  # GPU time of every kernel, copy and memset, over the steps
    gpu_step_us: float | None  # mean span of a step on the GPU's timeline, where the trace has it
    kernels: list[Kernel] = field(default_factory=list)  # by time per step, longest first

    def metrics(self) -> dict:
        return {"steps": self.steps, "decode_steps": self.decode_steps,
                "kernel_us_per_step": round(self.kernel_us_per_step, 2),
                "gpu_step_us": None if self.gpu_step_us is None else round(self.gpu_step_us, 2)}

    def samples(self) -> dict:
        return {"kernels": [asdict(k) for k in self.kernels]}


def load(path: Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        data = json.load(f)
    return data.get("traceEvents", []) if isinstance(data, dict) else data


def read_trace(path: Path, steps_asked: int | None = None) -> StepProfile:
    """Per-step kernel times of one trace: GPU time summed per kernel name over the trace, divided
    by its engine steps (the trace holds only the steps the profiler recorded). A trace without
    vLLM's step annotations counts the steps asked for (`steps_asked`), decode_steps then -1."""
    total: dict[str, list[float]] = {}
    steps = decode = 0
    spans = []
    for e in load(path):
        if e.get("ph") != "X":
            continue
        cat, name = e.get("cat"), str(e.get("name", ""))
        if cat in GPU_CATS:
            acc = total.setdefault(name, [0.0, 0])
            acc[0] += float(e.get("dur") or 0.0)
            acc[1] += 1
        elif (m := _STEP.match(name)) is not None:
            if cat == "user_annotation":
                steps += 1
                decode += int(m.group(2)) == 0
            elif cat == "gpu_user_annotation":
                spans.append(float(e.get("dur") or 0.0))
    if steps == 0:
        if not steps_asked or not total:
            raise ValueError(f"{path}: no engine steps (execute_* annotations) in the trace")
        steps, decode = int(steps_asked), -1
    kernels = sorted((Kernel(n, us / steps, calls / steps) for n, (us, calls) in total.items()),
                     key=lambda k: -k.us_per_step)
    return StepProfile(steps, decode, sum(k.us_per_step for k in kernels),
                       sum(spans) / len(spans) if spans else None, kernels)
