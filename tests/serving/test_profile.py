"""Kernel time per engine step from vLLM's torch-profiler traces, and the profiler's HTTP
endpoints on the scripted server."""

import gzip
import json

import pytest

from attnbench.serving import profile
from attnbench.serving.scripted_server import Script, ScriptedServer, write_trace


def step(name, ts, dur, cat="user_annotation"):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur}


def test_kernels_are_summed_per_name_and_divided_by_the_engine_steps(tmp_path):
    decode, mixed = "execute_context_0(0)_generation_256(256)", "execute_context_2(8192)_generation_10(10)"
    events = [
        step(decode, 0, 900), step(decode, 0, 1000, "gpu_user_annotation"),
        step(mixed, 1000, 900), step(mixed, 1000, 3000, "gpu_user_annotation"),
        step("flash_fwd_kernel", 0, 400, "kernel"), step("flash_fwd_kernel", 1000, 2000, "kernel"),
        step("gemm", 400, 300, "kernel"), step("gemm", 2400, 300, "kernel"), step("gemm", 2700, 300, "kernel"),
        step("Memcpy HtoD (Pinned -> Device)", 3000, 10, "gpu_memcpy"),
        step("cudaGraphLaunch", 0, 20, "cuda_runtime"),  # CPU side: not GPU time
        {"ph": "i", "cat": "kernel", "name": "instant", "ts": 5},  # not a complete event
    ]
    path = tmp_path / "w.pt.trace.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)
    p = profile.read_trace(path)
    assert (p.steps, p.decode_steps) == (2, 1)
    by = {k.name: k for k in p.kernels}
    assert by["flash_fwd_kernel"].us_per_step == 1200 and by["gemm"].us_per_step == 450
    assert by["gemm"].calls_per_step == 1.5 and "cudaGraphLaunch" not in by
    assert [k.name for k in p.kernels][:2] == ["flash_fwd_kernel", "gemm"]  # longest first
    assert p.kernel_us_per_step == pytest.approx(1200 + 450 + 5)
    assert p.gpu_step_us == 2000  # the mean of the steps' GPU spans


def test_a_trace_without_step_annotations_counts_the_steps_asked_for_or_is_refused(tmp_path):
    path = tmp_path / "x.pt.trace.json"
    path.write_text(json.dumps([step("gemm", 0, 5, "kernel"), step("gemm", 9, 5, "kernel")]))  # a bare list too
    with pytest.raises(ValueError, match="no engine steps"):
        profile.read_trace(path)
    p = profile.read_trace(path, steps_asked=2)
    assert (p.steps, p.decode_steps, p.kernel_us_per_step) == (2, -1, 5.0)
    empty = tmp_path / "empty.pt.trace.json"
    empty.write_text("[]")
    with pytest.raises(ValueError):  # nothing recorded at all is no profile, whatever was asked
        profile.read_trace(empty, steps_asked=2)


def test_server_args_ask_vllm_for_a_delayed_bounded_gpu_trace(tmp_path):
    flag, value = profile.server_args(tmp_path / "prof", 20)
    cfg = json.loads(value)
    assert flag == "--profiler-config" and cfg["profiler"] == "torch" and cfg["max_iterations"] == 20
    assert cfg["delay_iterations"] == profile.DELAY_STEPS
    assert cfg["torch_profiler_dir"] == str((tmp_path / "prof").resolve())
    assert cfg["ignore_frontend"] is True and cfg["torch_profiler_with_stack"] is False


def test_the_scripted_servers_profiler_writes_a_trace_between_start_and_stop(tmp_path):
    folder = tmp_path / "prof"
    with ScriptedServer(Script(profile_dir=str(folder), profile_steps=4, profile_kernels=(("k", 10.0),))) as s:
        before = set(profile.traces(folder))
        assert profile.start(s.base_url) is None
        assert profile.stop(s.base_url) is None
        trace = profile.wait_for_trace(folder, before, timeout_s=10)
    assert trace is not None and trace.name.endswith(".pt.trace.json.gz")
    p = profile.read_trace(trace)
    assert p.steps == 4 and p.kernels[0].us_per_step == 10.0 and p.gpu_step_us == 10.0
    assert profile.wait_for_trace(folder, {trace}, timeout_s=1) is None  # nothing newer


def test_a_server_without_the_profiler_says_so():
    with ScriptedServer(Script()) as s:
        assert "404" in profile.start(s.base_url)


def test_write_trace_is_what_read_trace_reads(tmp_path):
    p = profile.read_trace(write_trace(tmp_path, 3, (("a", 1.0), ("b", 2.0))))
    assert p.steps == 3 and p.decode_steps == 3 and p.kernel_us_per_step == 3.0


def test_traces_are_the_finished_files_only(tmp_path):
    done = write_trace(tmp_path, 1, (("k", 1.0),))
    (tmp_path / f".{done.name}.abc123.tmp").write_bytes(b"half")  # an atomic write in progress
    (tmp_path / "profiler_out_0.txt").write_text("table")  # vLLM's key_averages table beside it
    assert profile.traces(tmp_path) == [done]
