"""Contamination flags of a measured window, from a stand-in vLLM log, /metrics deltas, GPU clock
samples and client numbers."""

import json
import sys
import time

import pytest

from attnbench.serving import contamination as cm
from attnbench.serving import prometheus
from attnbench.serving.scripted_server import Script, ScriptedServer
from test_telemetry import FAKE_SMI

JIT = ("(EngineCore_DP0 pid=456) WARNING {stamp} [jit_monitor.py:135] CuTeDSL JIT compilation during inference: "
       "FlashAttentionForwardSm90. This causes a latency spike; consider extending warmup to cover this shape/config.")


def vllm_stamp(t: float) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(t))


def info(t: float, msg: str = "Avg prompt throughput: 1.0 tokens/s") -> str:
    return f"(APIServer pid=123) INFO {vllm_stamp(t)} [loggers.py:257] {msg}"


T0 = time.mktime((2026, 12, 1, 21, 40, 0, 0, 0, -1))  # a window of 30 s, in local time like vLLM's log
T1 = T0 + 30


def test_log_time_reads_vllm_and_flashinfer_stamps_in_local_time():
    assert cm.log_time(info(T0 + 5), near=T0) == T0 + 5
    assert cm.log_time("\x1b[1;33m(EngineCore pid=1) WARNING " + vllm_stamp(T0) + " [x.py:1] m\x1b[0m", near=T0) == T0
    fi = "(EngineCore pid=1319) 2026-12-01 21:40:03,361 - INFO - autotuner.py:651 - flashinfer.jit: [Autotuner]: ..."
    assert cm.log_time(fi) == pytest.approx(T0 + 3.361)
    assert cm.log_time("/site/cutlass/dsl.py:2214: UserWarning: Argument aux_data cannot be converted") is None
    # no year in vLLM's stamp: a 12-31 line read on 01-01 belongs to the year before
    new_year = time.mktime((2027, 1, 1, 0, 0, 5, 0, 0, -1))
    assert cm.log_time("(APIServer pid=1) INFO 12-31 23:59:58 [a.py:1] m", near=new_year) == new_year - 7


def write_log(path, lines):
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def test_jit_inside_the_window_is_flagged_by_offsets_and_by_time(tmp_path):
    log = tmp_path / "server.log"
    write_log(log, [info(T0 - 60, "Compiling a graph for compile range (1, 8192) takes 10.87 s"),  # startup: outside
                    info(T0 - 2)])
    w = cm.LogWindow(log)
    start = w.mark()
    write_log(log, [info(T0 + 3), JIT.format(stamp=vllm_stamp(T0 + 4)),
                    "/site/cutlass/base_dsl/dsl.py:2214: UserWarning: cannot be converted to a JitArgument",
                    JIT.format(stamp=vllm_stamp(T0 + 11))])
    end = w.mark()
    write_log(log, [JIT.format(stamp=vllm_stamp(T1 + 20))])  # after the window
    for offsets in [(start, end), None]:
        flags = cm.flags_for_window(T0, T1, log_path=log, log_offsets=offsets)
        assert [f.kind for f in flags] == ["jit"], offsets
        assert "FlashAttentionForwardSm90" in flags[0].evidence and "(+1 more)" in flags[0].evidence
        assert cm.contaminated(flags)
    quiet = cm.flags_for_window(T1 + 30, T1 + 60, log_path=log)
    assert quiet == []


def test_unstamped_lines_count_by_offset_and_late_flushed_old_lines_by_time(tmp_path):
    log = tmp_path / "server.log"
    w = cm.LogWindow(log)
    start = w.mark()  # the file does not exist yet: offset 0
    write_log(log, ["[1/3] /usr/local/cuda/bin/nvcc -c batch_decode.cu -o batch_decode.cuda.o"])
    end = w.mark()
    write_log(log, ["ninja: build stopped after the window"])
    flags = cm.flags_for_window(T0, T1, log_path=log, log_offsets=(start, end))
    assert len(flags) == 1 and "nvcc" in flags[0].evidence
    # a stamped compile line from long before the window, flushed into it, is not the window's
    log2 = tmp_path / "late.log"
    start = cm.LogWindow(log2).mark()
    write_log(log2, [info(T0 - 300, "Compiling a graph for compile range (1, 512) takes 3.1 s")])
    assert cm.flags_for_window(T0, T1, log_path=log2, log_offsets=(start, None)) == []
    assert cm.flags_for_window(T0, T1, log_path=tmp_path / "missing.log") == []


def test_preemptions_and_a_full_kv_cache_are_flagged():
    flags = cm.metrics_flags({"server_metrics": "ok", "server_preemptions": 3}, kv_usage_max=0.995)
    assert [f.kind for f in flags] == ["preemption", "kv_cache_full"]
    assert "3 preemptions" in flags[0].evidence and "99.5%" in flags[1].evidence
    assert cm.metrics_flags({"server_metrics": "ok", "server_preemptions": 0}, kv_usage_max=0.7) == []


def test_gpu_clock_dip_is_judged_against_the_runs_median():
    steady, dipped = [1980.0] * 20, [1980.0] * 5 + [1700.0] * 15
    flags = cm.clock_flags([steady, steady, dipped, steady])
    assert [bool(f) for f in flags] == [False, False, True, False]
    assert flags[2][0].kind == "gpu_clock" and "1700 MHz" in flags[2][0].evidence
    assert cm.clock_flags([[1900.0] * 10, [1850.0] * 10]) == [[], []]  # 2.6% apart: within 5%
    # per backend: a backend that always runs at a lower clock is not a dip
    low = [1700.0] * 10
    assert cm.clock_flags([steady, low, steady, low], groups=["a", "b", "a", "b"]) == [[], [], [], []]
    assert cm.clock_flags([[], steady]) == [[], []]  # no samples: nothing to say


def test_client_saturation():
    flags = cm.client_flags(loop_lag_p99_ms=35.0, worker_cpu_pct=97.0)
    assert [f.kind for f in flags] == ["client_saturated"] * 2
    assert cm.client_flags(loop_lag_p99_ms=3.0, worker_cpu_pct=40.0) == []
    assert cm.client_flags() == []


def test_client_and_server_disagreement():
    server = {"server_metrics": "ok", "server_mean_ttft_ms": 700.0, "server_mean_tpot_ms": 15.0,
              "server_requests": 256, "server_generation_tokens": 256000}
    agree = {"mean_ttft_ms": 718.0, "mean_tpot_ms": 15.4, "completed": 256, "total_output_tokens": 256000}
    assert cm.agreement_flags(agree, server) == []
    slow = {**agree, "mean_ttft_ms": 1254.0, "mean_tpot_ms": 19.9}
    flags = cm.agreement_flags(slow, server)
    assert len(flags) == 2 and "TTFT client 1254.0 ms vs server 700.0 ms" in flags[0].evidence
    assert "TPOT" in flags[1].evidence
    # a small absolute gap is not flagged even when relatively large
    assert cm.agreement_flags({"mean_ttft_ms": 4.0}, {"server_metrics": "ok", "server_mean_ttft_ms": 1.0}) == []
    extra = cm.agreement_flags({**agree, "completed": 250}, server)
    assert len(extra) == 1 and "requests: client 250 vs server 256" in extra[0].evidence
    assert cm.agreement_flags(slow, {"server_metrics": "absent"}) == []


def test_flags_are_json_and_a_broken_input_never_raises(tmp_path):
    flags = cm.flags_for_window(T0, T1, server={"server_metrics": "ok", "server_preemptions": "lots"},
                                client={"mean_ttft_ms": None}, loop_lag_p99_ms=float("nan"),
                                sm_clock_mhz=[1500.0], run_sm_clock_mhz=1900.0)
    kinds = [f.kind for f in flags]
    assert "gpu_clock" in kinds and "unknown" in kinds
    unknown = next(f for f in flags if f.kind == "unknown")
    assert not unknown.contaminates
    assert json.loads(json.dumps([f.to_dict() for f in flags]))[0]["kind"] == flags[0].kind


def test_scripted_preemptions_reach_the_flags_through_real_metrics():
    import urllib.request

    with ScriptedServer(Script(ttft_s=0.01, itl_s=0.001, preemptions={0: 2})) as s:
        before = prometheus.scrape(s.base_url)
        body = json.dumps({"model": "scripted", "prompt": [1, 2, 3], "max_tokens": 4}).encode()
        req = urllib.request.Request(s.base_url + "/completions", body, {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        after = prometheus.scrape(s.base_url)
    server = prometheus.window_delta(before, after)
    assert server["server_requests"] == 1 and server["server_preemptions"] == 2
    flags = cm.flags_for_window(0, 1, server=server)
    assert [f.kind for f in flags] == ["preemption"]


def test_a_full_kv_cache_seen_by_the_poller_during_the_window_is_flagged():
    with ScriptedServer(Script(kv_cache_usage=0.99)) as s:
        poller = prometheus.GaugePoller(s.base_url, interval_s=0.05).start()
        wait_for_scrapes = time.monotonic() + 30
        while poller.scrapes < 2 and time.monotonic() < wait_for_scrapes:
            time.sleep(0.02)
        gauges = poller.stop()
    assert gauges["server_gauge_scrapes"] >= 2 and gauges["server_kv_cache_usage_max"] == 0.99
    assert "server_num_waiting_max" not in gauges  # the scripted server has no queue
    flags = cm.flags_for_window(0, 1, server={"server_metrics": "ok", **gauges})
    assert [f.kind for f in flags] == ["kv_cache_full"] and "99.0%" in flags[0].evidence


def test_a_date_inside_a_message_is_not_the_lines_stamp():
    line = "(APIServer pid=1) INFO " + vllm_stamp(T0) + " [a.py:1] resuming from checkpoint of 2025-01-01 10:00:00"
    assert cm.log_time(line, near=T0) == T0
    assert cm.jit_flags(["(EngineCore pid=1) INFO 12-01 21:40:00 [x.py:1] ninja: no work to do."]) == []


def test_scripted_hangs_and_mid_stream_failures_are_not_counted_as_successes():
    import urllib.request

    with ScriptedServer(Script(ttft_s=0.0, itl_s=0.001, error_after={0: 2})) as s:
        body = json.dumps({"model": "scripted", "prompt": [1], "max_tokens": 5, "stream": True}).encode()
        req = urllib.request.Request(s.base_url + "/completions", body, {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()
        d = prometheus.window_delta(prometheus.parse(""), prometheus.scrape(s.base_url))
    assert d.get("server_requests", 0) == 0 and d["server_generation_tokens"] == 2


def test_measured_window_end_to_end_on_a_real_server_and_log(tmp_path):
    from attnbench.serving import client, metrics, telemetry, workload

    log = tmp_path / "server.log"
    write_log(log, [info(time.time() - 100, "Compiling a graph for compile range (1, 8192) takes 10.87 s")])
    gpu = telemetry.GpuSampler(command=[sys.executable, "-c", FAKE_SMI]).start()
    try:
        with ScriptedServer(Script(ttft_s=0.02, itl_s=0.002, preemptions={1: 1})) as s:
            w = cm.MeasuredWindow(s.base_url, log_path=log, gpu=gpu, poll_s=0.05).start()
            write_log(log, [JIT.format(stamp=vllm_stamp(time.time()))])
            reqs = [client.Request(p, 10, 0.0) for p in workload.prompts(4, 16, 1000, 0)]
            m = metrics.compute(client.run(client.ClientConfig(s.base_url, "scripted", workers=1), reqs))
            report = w.finish(m)
    finally:
        gpu.stop()
    fields = report.record_fields()
    assert fields["server_metrics"] == "ok" and fields["server_requests"] == 4 == m["completed"]
    assert fields["server_kv_cache_usage_max"] == 0.0 and fields["server_gauge_scrapes"] >= 1
    kinds = {f["kind"] for f in fields["flags"]}
    # a loaded test machine may delay the client's chunks past the agreement tolerance: that flag may come too
    assert {"jit", "preemption"} <= kinds <= {"jit", "preemption", "server_disagrees"}
    assert fields["contaminated"] is True
    assert json.loads(json.dumps(fields))["window_t1"] >= fields["window_t0"]
    n = len(report.flags)
    cm.add_clock_flags([report, report])  # same clocks: no dip
    assert len(report.flags) == n


def test_measured_window_without_server_metrics_or_log_still_reports():
    with ScriptedServer(Script(metrics=False)) as s:
        report = cm.MeasuredWindow(s.base_url, log_path="/nonexistent/dir/server.log").start().finish({"completed": 0})
    assert report.server == {"server_metrics": "absent"} and report.flags == []
    assert cm.MeasuredWindow(None).start().finish(None).record_fields()["contaminated"] is False


def test_a_busy_api_server_is_a_warning_with_its_cpu_figure():
    assert cm.frontend_flags(84.9) == [] and cm.frontend_flags(None) == []
    [f] = cm.frontend_flags(93.0)
    assert f.kind == "frontend_bound" and not f.contaminates and "93% of a core" in f.evidence


def gc_line(t: float, ms: float, proc: str = "EngineCore pid=456") -> str:
    return (f"({proc}) INFO {vllm_stamp(t)} [gc_utils.py:84] GC took {ms:.3f}ms to complete. "
            "Collected 12 objects (out of 3400) in GC generation 2.")


def test_engine_core_gc_pauses_are_counted_and_other_processes_ignored():
    lines = [gc_line(T0, 12.5), "\x1b[32m" + gc_line(T0 + 1, 40.25) + "\x1b[0m",
             gc_line(T0 + 2, 99.0, proc="ApiServer_0 pid=7"), info(T0 + 3, "GC took 5.000ms to complete.")]
    assert cm.gc_pauses(lines) == {"server_gc_count": 2, "server_gc_ms": 52.75, "server_gc_max_ms": 40.25}
    assert cm.gc_pauses([info(T0)]) == {}  # VLLM_GC_DEBUG unset: nothing logged, nothing claimed


def test_a_windows_gc_pauses_come_from_the_log_written_during_it(tmp_path):
    log = tmp_path / "server.log"
    write_log(log, [gc_line(time.time() - 100, 500.0)])  # before the window: not its pause
    with ScriptedServer(Script()) as s:
        w = cm.MeasuredWindow(s.base_url, log_path=log, poll_s=None).start()
        write_log(log, [gc_line(time.time(), 30.0), gc_line(time.time(), 10.0)])
        fields = w.finish({"completed": 0}).record_fields()
    assert (fields["server_gc_count"], fields["server_gc_ms"], fields["server_gc_max_ms"]) == (2, 40.0, 30.0)
    assert fields["server_metrics"] == "ok"  # the /metrics delta beside it
