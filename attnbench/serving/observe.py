"""What happened around each measured window besides the client's own view: the server's
/metrics before and after, the server log written during it, the GPU's clocks and power, the
CPU use of the server's processes, and the contamination flags that follow from them (JIT
compilation, preemptions, clock dips, a saturated client, client and server disagreeing).
The pieces live in prometheus.py, telemetry.py and contamination.py; this is their one user."""

from __future__ import annotations

from attnbench.serving import contamination, telemetry


def reflag_clocks(passes, drop: float = 0.05) -> bool:
    """gpu_clock flags from the records alone: a pass whose median SM clock sits more than `drop`
    below the median over the passes of the same backend and shape (a prefill-bound shape runs at
    lower clocks than a decode-bound one, and backends draw different power, so neither is mixed).
    Replaces earlier gpu_clock flags; True when any flag changed."""
    by: dict[tuple, list] = {}
    for r in passes:
        obs = r.samples.get("observation") or {}
        if obs.get("gpu_sm_clock_median_mhz") is not None:
            by.setdefault((r.backend, r.scenario.get("input_len"), r.scenario.get("output_len")), []).append(obs)
    changed = False
    for group in by.values():
        median = contamination.run_median([o["gpu_sm_clock_median_mhz"] for o in group])
        for o in group:
            old = [f for f in o.get("flags") or [] if f.get("kind") == "gpu_clock"]
            new = [f.to_dict() for f in contamination.clock_flag([o["gpu_sm_clock_median_mhz"]], median, drop)]
            if old != new:
                o["flags"] = [f for f in o.get("flags") or [] if f.get("kind") != "gpu_clock"] + new
                o["contaminated"] = any(f.get("contaminates", True) for f in o["flags"])
                changed = True
    return changed


class Observer:
    """One per serve-bench run: the GPU and CPU samplers run for the whole run, each window cuts
    its part out. Never lets an observation fail a benchmark (the modules it uses never raise)."""

    def __init__(self) -> None:
        self.gpu = telemetry.GpuSampler().start()
        self.cpu = telemetry.CpuSampler().start()
        self._watched: set[int] = set()

    def _watch(self, target) -> None:
        """CPU use of the server's processes (API server, engine core), by target name."""
        server = getattr(target, "server", None)
        proc = getattr(server, "proc", None)
        if proc is None or proc.pid in self._watched:
            return
        self._watched.add(proc.pid)
        for name, pid in telemetry.group_pids(proc.pid).items():
            self.cpu.watch(_api_server(target.name) if pid == proc.pid else f"{target.name}/{name}", pid)

    def open(self, target) -> tuple:
        self._watch(target)
        server = getattr(target, "server", None)
        log = server.spec.log_path if server is not None else None
        window = contamination.MeasuredWindow(target.base_url, log, target.model, gpu=self.gpu, cpu=self.cpu)
        return target.name, window.start()

    def close(self, opened: tuple, client_metrics: dict, client_stats: dict | None = None) -> dict:
        """The window's observation as a record stores it: server_*, gpu_* and CPU keys, the
        window's unix times (window_t0, window_t1) and the flags."""
        name, window = opened
        stats = client_stats or {}
        report = window.finish(client_metrics, stats.get("loop_lag_p99_ms"), stats.get("worker_cpu_pct"))
        fields = report.record_fields()
        api = _busiest_api_server(fields.get("proc_cpu_mean_pct") or {}, name)
        fields["flags"] += [f.to_dict() for f in contamination.frontend_flags(api)]
        return {**fields, **({"client": stats} if stats else {})}

    def stop(self) -> None:
        self.gpu.stop()
        self.cpu.stop()


def _api_server(target_name: str) -> str:
    """The CPU sampler's name for the process `vllm serve` itself runs in: its API server."""
    return f"{target_name}/api-server"


def _busiest_api_server(cpu_pct: dict, target_name: str) -> float | None:
    """With --api-server-count N, `vllm serve` itself only supervises N VLLM::APIServer children;
    the busiest of them (or the one process) is what sets the pace."""
    mine = [v for k, v in cpu_pct.items()
            if k == _api_server(target_name) or k.startswith(f"{target_name}/VLLM::APIServer")]
    return max(mine, default=None)


def flags(record) -> list[dict]:
    """The contamination flags of a serve record that keep it out of the statistics (checks
    that could not decide are stored too, but do not count)."""
    obs = record.samples.get("observation") or {}
    return [f for f in obs.get("flags") or [] if f.get("contaminates", True)]
