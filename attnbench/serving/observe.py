"""What happened around each measured window besides the client's own view: the server's
/metrics before and after, the server log written during it, the GPU's clocks and power, the
CPU use of the server's processes, and the contamination flags that follow from them (JIT
compilation, preemptions, clock dips, a saturated client, client and server disagreeing).
The pieces live in prometheus.py, telemetry.py and contamination.py; this is their one user."""

from __future__ import annotations

from attnbench.serving import contamination, telemetry


class Observer:
    """One per serve-bench run: the GPU and CPU samplers run for the whole run, each window cuts
    its part out. Never lets an observation fail a benchmark (the modules it uses never raise)."""

    def __init__(self) -> None:
        self.gpu = telemetry.GpuSampler().start()
        self.cpu = telemetry.CpuSampler().start()
        self._watched: set[int] = set()
        self._clocks: dict[float, tuple[str, list[float]]] = {}  # window t0 -> (backend, SM clock samples)

    def _watch(self, target) -> None:
        """CPU use of the server's processes (API server, engine core), by target name."""
        server = getattr(target, "server", None)
        proc = getattr(server, "proc", None)
        if proc is None or proc.pid in self._watched:
            return
        self._watched.add(proc.pid)
        for name, pid in telemetry.group_pids(proc.pid).items():
            self.cpu.watch(f"{target.name}/{name}", pid)

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
        self._clocks[report.t0] = (name, report.sm_clock_mhz)
        return {**report.record_fields(), **({"client": stats} if stats else {})}

    def finish(self, passes) -> bool:
        """Flag the passes whose SM clock sat more than 5% below the median of their backend's
        windows in this run; True when a flag was added."""
        obs = [(r, r.samples.get("observation") or {}) for r in passes]
        known = [(r, o) for r, o in obs if o.get("window_t0") in self._clocks]
        if not known:
            return False
        names = [self._clocks[o["window_t0"]][0] for _, o in known]
        clocks = [self._clocks[o["window_t0"]][1] for _, o in known]
        changed = False
        for (r, o), new in zip(known, contamination.clock_flags(clocks, names)):
            if new:
                o.setdefault("flags", []).extend(f.to_dict() for f in new)
                o["contaminated"] = o.get("contaminated") or any(f.contaminates for f in new)
                changed = True
        return changed

    def stop(self) -> None:
        self.gpu.stop()
        self.cpu.stop()


def flags(record) -> list[dict]:
    """The contamination flags of a serve record that keep it out of the statistics (checks
    that could not decide are stored too, but do not count)."""
    obs = record.samples.get("observation") or {}
    return [f for f in obs.get("flags") or [] if f.get("contaminates", True)]
