"""How a kernel is timed: warm-up, then CUDA-graph replay timed with CUDA events, median of repeats.

One graph holds several back-to-back calls (so launch gaps and event resolution vanish into a
~1 ms replay); the reported time is per call. Cold L2: the graph rotates through several input
copies whose total size is a few times the L2 cache, so no call finds its K/V still cached.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable

TARGET_MS = 1.0  # aim for replays of about this long
MAX_CALLS = 64


@dataclass(frozen=True)
class Timing:
    us: float  # median per call, microseconds
    samples_us: list[float]  # per-call time of each repeat
    graph: bool  # CUDA-graph replay (False: eager launches, e.g. capture failed or CPU)
    calls_per_replay: int
    note: str = ""


def cold_copies(bytes_per_copy: int, l2_bytes: int, free_bytes: int, max_copies: int = 32) -> int:
    """Input copies to rotate so the working set is >= 3x the L2 (LRU leaves nothing useful)."""
    want = max(1, math.ceil(3 * l2_bytes / max(bytes_per_copy, 1)))
    fit = max(1, int(0.8 * free_bytes // max(bytes_per_copy, 1)))
    return min(want, fit, max_copies)


def time_calls(fns: list[Callable[[], None]], device: str, repeats: int = 20, warmup: int = 3) -> Timing:
    """Median time of one call; `fns` are the same kernel on different input copies (cold L2) or
    a single closure (warm)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    if not str(device).startswith("cuda"):
        return _time_cpu(fns, repeats, warmup)
    return _time_cuda(fns, repeats, warmup)


def _time_cpu(fns, repeats, warmup) -> Timing:
    for _ in range(warmup):
        fns[0]()
    samples = []
    for r in range(repeats):
        f = fns[r % len(fns)]
        t0 = time.perf_counter()
        f()
        samples.append((time.perf_counter() - t0) * 1e6)
    return Timing(statistics.median(samples), samples, graph=False, calls_per_replay=1)


def _time_cuda(fns, repeats, warmup) -> Timing:
    import torch

    def all_once():
        for f in fns:
            f()

    for _ in range(warmup):  # compiles JIT kernels, allocates workspaces
        all_once()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    all_once()
    end.record()
    end.synchronize()
    est_ms = max(start.elapsed_time(end), 1e-3)
    rounds = max(1, min(MAX_CALLS // len(fns) or 1, math.ceil(TARGET_MS / est_ms)))
    calls = rounds * len(fns)

    note = ""
    graph = None
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # capture wants one warm run on a side stream
            all_once()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(rounds):
                all_once()
        graph.replay()
        torch.cuda.synchronize()
        run = graph.replay
    except Exception as e:  # not capturable: time eager launches instead, and say so
        graph, note = None, f"CUDA graph capture failed ({type(e).__name__}: {str(e)[:120]}); eager launches timed"
        torch.cuda.synchronize()

        def run():
            for _ in range(rounds):
                all_once()

    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for s, e in events:
        s.record()
        run()
        e.record()
    torch.cuda.synchronize()
    samples = [s.elapsed_time(e) * 1e3 / calls for s, e in events]
    del graph
    return Timing(statistics.median(samples), samples, graph=note == "", calls_per_replay=calls, note=note)
