"""GPU and CPU samplers: a stand-in nvidia-smi printing CSV lines, real /proc readings of real
processes, and the window summaries' arithmetic on constructed samples."""

import os
import subprocess
import sys
import time

import pytest

from attnbench.serving import telemetry
from attnbench.serving.telemetry import CpuSample, GpuSample


def wait_for(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


FAKE_SMI = r"""
import sys, time
from datetime import datetime
for i in range(6):
    stamp = datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
    sm = 1980 if i < 3 else 1700
    print(f"{stamp}, 0, {sm}, 2619, {600 + i}.50, {40 + i}, {90 + i}", flush=True)
    time.sleep(0.02)
print("2026/12/01 21:40:03.123, 0, [N/A], 2619, [N/A], 45, 100", flush=True)  # stamp far off: reading time
print("garbage line", flush=True)
time.sleep(60)
"""


def test_gpu_sampler_reads_a_stand_in_nvidia_smi_line_by_line():
    before = time.time()
    with telemetry.GpuSampler(command=[sys.executable, "-c", FAKE_SMI]) as g:
        wait_for(lambda: len(g.snapshot()) >= 7)
        samples = g.stop()  # also ends the stand-in, which would sleep for a minute
    after = time.time()
    assert g.source == "nvidia-smi" and len(samples) == 7
    assert all(before - 1 <= s.t <= after + 1 for s in samples)
    assert [s.sm_mhz for s in samples] == [1980, 1980, 1980, 1700, 1700, 1700, None]
    assert samples[0] == GpuSample(samples[0].t, 0, 1980.0, 2619.0, 600.5, 40.0, 90.0)
    assert samples[-1].power_w is None and samples[-1].util_pct == 100
    summary = telemetry.gpu_summary(samples)
    assert summary["gpu_samples"] == 7
    assert summary["gpu_sm_clock_median_mhz"] == 1840 and summary["gpu_sm_clock_min_mhz"] == 1700
    assert summary["gpu_power_mean_w"] == pytest.approx(603.0)
    assert summary["gpu_temp_max_c"] == 45 and summary["gpu_util_min_pct"] == 90


def test_gpu_sampler_is_a_no_op_without_a_gpu_tool(tmp_path):
    g = telemetry.GpuSampler(command=[str(tmp_path / "no-such-nvidia-smi")]).start()
    assert g.source == "none" and g.stop() == []
    assert telemetry.gpu_summary([]) == {}


def test_parse_gpu_line():
    now = time.mktime((2026, 12, 1, 21, 40, 3, 0, 0, -1))
    s = telemetry.parse_gpu_line("2026/12/01 21:40:03.250, 1, 1965, 2619, 692.13, 51, 100\n", now=now + 0.5)
    assert s == GpuSample(now + 0.25, 1, 1965.0, 2619.0, 692.13, 51.0, 100.0)
    assert telemetry.parse_gpu_line("1, 1965, 2619", now=now) is None
    assert telemetry.parse_gpu_line("x, [N/A], 1, 2, 3, 4, 5", now=now) is None  # no GPU index


def test_summaries_cut_out_one_window():
    g = [GpuSample(float(t), 0, 1900.0 + t, 2619.0, 600.0, 40.0, 100.0) for t in range(10)]
    assert telemetry.gpu_summary(g, 2, 4)["gpu_samples"] == 3
    assert telemetry.sm_clocks(g, 2, 4) == [1902.0, 1903.0, 1904.0]
    c = [CpuSample(1.0, 50.0, {"api": 100.0}, {"api": 3}), CpuSample(2.0, 70.0, {"api": 60.0, "engine": 99.0},
                                                                     {"api": 5, "engine": 1})]
    s = telemetry.cpu_summary(c)
    assert s["host_cpu_busy_mean_pct"] == 60.0 and s["host_cpu_busy_max_pct"] == 70.0
    assert s["proc_cpu_mean_pct"] == {"api": 80.0, "engine": 99.0}
    assert s["proc_cores"] == {"api": [3, 5], "engine": [1]}
    assert telemetry.cpu_summary(c, 5, 6) == {}


def fake_proc(root, busy, total, procs):
    """A /proc with one aggregate CPU line and `procs` {pid: (name, pgrp, utime, stime, cpu)}."""
    idle = total - busy
    (root / "stat").write_text(f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n")
    for pid, (name, pgrp, ut, st, cpu) in procs.items():
        d = root / str(pid)
        d.mkdir(exist_ok=True)
        fields = ["S", "1", str(pgrp), str(pgrp)] + ["0"] * 7 + [str(ut), str(st)] + ["0"] * 23 + [str(cpu), "0"]
        (d / "stat").write_text(f"{pid} ({name}) " + " ".join(fields) + "\n")


def test_cpu_arithmetic_from_proc_readings(tmp_path):
    procs = {10: ("VLLM::APIServer", 10, 100, 50, 2), 11: ("VLLM::EngineCor", 10, 400, 0, 3),
             12: ("bash (x)", 99, 0, 0, 0)}
    fake_proc(tmp_path, busy=1000, total=4000, procs=procs)
    assert telemetry.group_pids(10, proc=str(tmp_path)) == {"VLLM::APIServer": 10, "VLLM::EngineCor": 11}
    assert telemetry.read_host(str(tmp_path)) == (1000, 4000)
    assert telemetry.read_proc(12, str(tmp_path)) == (0, 0)  # a name with a space and parentheses
    pids = {"api": 10, "engine": 11}

    def reading(t):
        return t, telemetry.read_host(str(tmp_path)), {n: telemetry.read_proc(p, str(tmp_path)) for n, p in pids.items()}

    prev = reading(0.0)
    procs[10] = ("VLLM::APIServer", 10, 150, 100, 2)  # +100 jiffies in 2 s: 50% of a core
    procs[11] = ("VLLM::EngineCor", 10, 600, 0, 7)  # +200: a full core, now on CPU 7
    fake_proc(tmp_path, busy=1600, total=5000, procs=procs)
    cur = reading(2.0)
    s = telemetry.sample_between(prev, cur, clk_tck=100)
    assert s.host_busy_pct == pytest.approx(60.0)  # 600 busy of 1000
    assert s.procs == {"api": pytest.approx(50.0), "engine": pytest.approx(100.0)}
    assert s.cores == {"api": 2, "engine": 7}


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
def test_cpu_sampler_sees_a_busy_process_and_an_idle_one():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with telemetry.CpuSampler({"busy": busy.pid, "idle": idle.pid}, interval_s=0.2) as c:
            wait_for(lambda: sum("busy" in s.procs for s in c.snapshot()) >= 5)
            samples = c.stop()
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
    s = telemetry.cpu_summary(samples)
    # on a loaded 2-core machine a spinning process still gets a good share of a core
    assert s["proc_cpu_mean_pct"]["busy"] > 20
    assert samples[-1].procs["idle"] < 5  # asleep once its interpreter has started
    assert s["proc_cpu_mean_pct"]["idle"] < s["proc_cpu_mean_pct"]["busy"] / 2
    assert 0 < s["host_cpu_busy_mean_pct"] <= 100


@pytest.mark.gpu
@pytest.mark.parametrize("source", ["nvidia-smi", "nvml"])
def test_gpu_sampler_on_a_real_gpu(source):
    g = telemetry.GpuSampler(interval_ms=100, source=source).start()
    try:
        wait_for(lambda: len(g.snapshot()) >= 3, timeout=20)  # samples arrive while it runs
    finally:
        samples = g.stop()
    assert g.source == source and g.error is None
    s = telemetry.gpu_summary(samples)
    assert s["gpu_sm_clock_median_mhz"] > 100 and s["gpu_power_mean_w"] > 10
    assert all(abs(x.t - time.time()) < 60 for x in samples)
