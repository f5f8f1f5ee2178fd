"""What the machine was doing during a measured window: GPU clocks, power, temperature and
utilization sampled in the background, and host and per-process CPU use (the API server, the
engine core, the client's workers). Identical runs differ by tens of percent; these samples say
whether the GPU throttled or the engine starved on the CPU side.

Both samplers run for a whole benchmark; `summary(samples, t0, t1)` cuts out one window (unix
times). Without nvidia-smi (or NVML) or /proc they record nothing and summaries are {}.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from attnbench import procs

QUERY = "timestamp,index,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu"


@dataclass
class GpuSample:
    t: float
    gpu: int
    sm_mhz: float | None
    mem_mhz: float | None
    power_w: float | None
    temp_c: float | None
    util_pct: float | None


def _num(s: str) -> float | None:
    try:
        return float(s.strip())
    except ValueError:  # "[N/A]", "N/A", "[Unknown Error]"
        return None


def parse_gpu_line(line: str, now: float | None = None) -> GpuSample | None:
    """One line of `nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`. The line's own
    stamp (local time, ms) is used when it is at most 2 minutes before `now`, so a pipe that
    delivers lines late does not shift them; otherwise (another time zone, no stamp) the reading
    time."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 7:
        return None
    now = time.time() if now is None else now
    try:
        t = datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        t = t if -120 < t - now < 2 else now
    except ValueError:
        t = now
    gpu = _num(parts[1])
    if gpu is None:
        return None
    sm, mem, power, temp, util = (_num(p) for p in parts[2:])
    return GpuSample(t, int(gpu), sm, mem, power, temp, util)


class _Sampler:
    """What both samplers share: samples appended by a background thread under a lock, a stop
    event, and start/stop as a context manager. A subclass's start() launches `_thread`."""

    def __init__(self):
        self.samples: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _add(self, s) -> None:
        if s is not None:
            with self._lock:
                self.samples.append(s)

    def _spawn(self, target, name: str) -> None:
        self._thread = threading.Thread(target=target, daemon=True, name=name)
        self._thread.start()

    def start(self):
        raise NotImplementedError

    def _halt(self) -> None:
        """Stop what feeds the thread (a subprocess), before the thread is joined."""

    def stop(self) -> list:
        self._stop.set()
        self._halt()
        if self._thread is not None:
            self._thread.join(timeout=3)
        return self.snapshot()

    def snapshot(self) -> list:
        with self._lock:
            return list(self.samples)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class GpuSampler(_Sampler):
    """nvidia-smi in loop mode on a pipe (or NVML polled on a thread when there is no nvidia-smi).
    `command` replaces the nvidia-smi command line; anything printing QUERY's CSV lines will do.
    `source` picks "nvidia-smi" or "nvml" instead of the first one present."""

    def __init__(self, interval_ms: int = 200, gpus: list[int] | None = None, command: list[str] | None = None,
                 source: str = "auto"):
        self.interval_ms = interval_ms
        self.gpus = gpus
        self.command = command
        self.want = source
        self.error: str | None = None
        self.source = "none"
        self._proc: subprocess.Popen | None = None
        super().__init__()

    def _nvidia_smi(self) -> list[str] | None:
        if self.command is not None:
            return self.command
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return None
        cmd = [exe, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits", f"--loop-ms={self.interval_ms}"]
        if self.gpus:
            cmd.append("--id=" + ",".join(str(g) for g in self.gpus))
        stdbuf = shutil.which("stdbuf")  # line-buffered, so samples arrive as they are taken
        return [stdbuf, "-oL", *cmd] if stdbuf else cmd

    def start(self) -> "GpuSampler":
        cmd = self._nvidia_smi() if self.want != "nvml" else None
        try:
            if cmd is not None:
                self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                              stdin=subprocess.DEVNULL, text=True, bufsize=1)
                self.source, target = "nvidia-smi", self._read_pipe
            elif self.want != "nvidia-smi":
                import pynvml  # noqa: F401 - only to know it is there

                self.source, target = "nvml", self._poll_nvml
            else:
                raise FileNotFoundError("nvidia-smi not found")
        except Exception as e:  # noqa: BLE001 - no GPU telemetry is a fact to record, not an error
            self.source, self.error = "none", f"{type(e).__name__}: {e}"
            return self
        self._spawn(target, "gpu-sampler")
        return self

    def _read_pipe(self) -> None:
        try:
            for line in self._proc.stdout:
                self._add(parse_gpu_line(line))
        except (OSError, ValueError):
            pass

    def _poll_nvml(self) -> None:
        import pynvml as nv

        try:
            nv.nvmlInit()
            n = nv.nvmlDeviceGetCount()
            handles = [(i, nv.nvmlDeviceGetHandleByIndex(i)) for i in (self.gpus or range(n))]
            while not self._stop.is_set():
                now = time.time()
                for i, h in handles:
                    self._add(GpuSample(now, i, nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
                                        nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
                                        nv.nvmlDeviceGetPowerUsage(h) / 1000,
                                        nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
                                        nv.nvmlDeviceGetUtilizationRates(h).gpu))
                self._stop.wait(self.interval_ms / 1000)
        except Exception as e:  # noqa: BLE001 - keep what was sampled so far
            self.error = f"{type(e).__name__}: {e}"
        finally:
            try:
                nv.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass

    def _halt(self) -> None:
        if self._proc is not None:
            procs.stop(self._proc, grace_s=3)


def window(samples: list, t0: float | None = None, t1: float | None = None) -> list:
    return [s for s in samples if (t0 is None or s.t >= t0) and (t1 is None or s.t <= t1)]


def _vals(samples, attr) -> list[float]:
    return [getattr(s, attr) for s in samples if getattr(s, attr) is not None]


def gpu_summary(samples: list[GpuSample], t0: float | None = None, t1: float | None = None) -> dict:
    """Flat `gpu_*` keys over the samples inside [t0, t1] (all GPUs together); {} when none."""
    w = window(samples, t0, t1)
    if not w:
        return {}
    out: dict = {"gpu_samples": len(w)}
    sm, mem = _vals(w, "sm_mhz"), _vals(w, "mem_mhz")
    power, temp, util = _vals(w, "power_w"), _vals(w, "temp_c"), _vals(w, "util_pct")
    if sm:
        out.update(gpu_sm_clock_median_mhz=statistics.median(sm), gpu_sm_clock_min_mhz=min(sm))
    if mem:
        out["gpu_mem_clock_median_mhz"] = statistics.median(mem)
    if power:
        out["gpu_power_mean_w"] = statistics.fmean(power)
    if temp:
        out["gpu_temp_max_c"] = max(temp)
    if util:
        out.update(gpu_util_mean_pct=statistics.fmean(util), gpu_util_min_pct=min(util))
    return out


def sm_clocks(samples: list[GpuSample], t0: float | None = None, t1: float | None = None) -> list[float]:
    """The window's SM clock readings, for contamination.clock_flags."""
    return _vals(window(samples, t0, t1), "sm_mhz")


# ---------------------------------------------------------------- host CPU

@dataclass
class CpuSample:
    t: float
    host_busy_pct: float | None
    procs: dict[str, float] = field(default_factory=dict)  # name -> CPU % (100 = one core)
    cores: dict[str, int] = field(default_factory=dict)  # name -> the CPU it last ran on


def read_host(proc: str = "/proc") -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from the first line of /proc/stat."""
    try:
        with open(f"{proc}/stat") as f:
            fields = f.readline().split()
        vals = [int(x) for x in fields[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    total = sum(vals[:8])  # guest time is already inside user
    return total - idle, total


def read_proc(pid: int, proc: str = "/proc") -> tuple[int, int] | None:
    """(utime + stime jiffies, last CPU) of one process, all its threads included."""
    try:
        with open(f"{proc}/{pid}/stat") as f:
            data = f.read()
        rest = data[data.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
        return int(rest[11]) + int(rest[12]), int(rest[36])
    except (OSError, ValueError, IndexError):
        return None


def group_pids(pgid: int, proc: str = "/proc") -> dict[str, int]:
    """The processes of one process group (a server started in its own session), by name:
    vLLM names its processes (VLLM::APIServer, VLLM::EngineCore), so these tell them apart."""
    out: dict[str, int] = {}
    for pid, (name, _) in sorted(procs.group_members(pgid, proc).items()):
        out[name if name not in out else f"{name}:{pid}"] = pid
    return out


class CpuSampler(_Sampler):
    """Host CPU busy % and per-process CPU % every `interval_s`, from /proc."""

    def __init__(self, pids: dict[str, int] | None = None, interval_s: float = 0.5, proc: str = "/proc"):
        super().__init__()
        self.pids = dict(pids or {})
        self.interval_s = interval_s
        self.proc = proc
        self._tck = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def watch(self, name: str, pid: int) -> None:
        """Add a process while running (e.g. once the server is up)."""
        with self._lock:
            self.pids[name] = pid

    def _read(self):
        with self._lock:
            pids = dict(self.pids)
        return time.time(), read_host(self.proc), {n: read_proc(p, self.proc) for n, p in pids.items()}

    def _run(self) -> None:
        prev = self._read()
        while not self._stop.wait(self.interval_s):
            cur = self._read()
            self._add(sample_between(prev, cur, self._tck))
            prev = cur

    def start(self) -> "CpuSampler":
        if read_host(self.proc) is not None:  # no /proc: nothing to sample
            self._spawn(self._run, "cpu-sampler")
        return self


def sample_between(prev, cur, clk_tck: int = 100) -> CpuSample:
    """CPU use between two readings (t, host (busy, total), {name: (jiffies, cpu)})."""
    (t0, h0, p0), (t1, h1, p1) = prev, cur
    host = None
    if h0 and h1 and h1[1] > h0[1]:
        host = 100 * (h1[0] - h0[0]) / (h1[1] - h0[1])
    procs, cores = {}, {}
    dt = t1 - t0
    for name, now in p1.items():
        before = p0.get(name)
        if now is None:
            continue
        cores[name] = now[1]
        if before is not None and dt > 0:
            procs[name] = 100 * (now[0] - before[0]) / clk_tck / dt
    return CpuSample(t1, host, procs, cores)


def cpu_summary(samples: list[CpuSample], t0: float | None = None, t1: float | None = None) -> dict:
    """Host busy % (mean, max) and each process's mean and max CPU % inside [t0, t1]; {} if none."""
    w = window(samples, t0, t1)
    if not w:
        return {}
    out: dict = {"cpu_samples": len(w)}
    host = _vals(w, "host_busy_pct")
    if host:
        out.update(host_cpu_busy_mean_pct=statistics.fmean(host), host_cpu_busy_max_pct=max(host))
    names = sorted({n for s in w for n in s.procs})
    if names:
        out["proc_cpu_mean_pct"] = {n: statistics.fmean([s.procs[n] for s in w if n in s.procs]) for n in names}
        out["proc_cpu_max_pct"] = {n: max(s.procs[n] for s in w if n in s.procs) for n in names}
        out["proc_cores"] = {n: sorted({s.cores[n] for s in w if n in s.cores}) for n in names}
    return out
