"""Servers side by side: how many fit, the memory each gets, a staggered start, interleaved passes,
and every server stopped on a crash of one and on Ctrl-C (against the stand-in `vllm serve`)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnbench.backends import registry
from attnbench.models import embedded
from attnbench.records import record
from attnbench.serving import fleet
from attnbench.serving.run import model_shape

sys.path.insert(0, str(Path(__file__).parent))
from test_server import all_pids, alive, fake_env, interrupt_when  # noqa: E402

B = [registry.get(n) for n in ("fa3", "flashinfer", "fa4", "attnbench-fa4")]


def qwen3():
    _, cfg = embedded.resolve("qwen3-0.6b")
    return cfg, model_shape(cfg, [])


def test_kv_cache_and_weights_of_qwen3_by_hand():
    cfg, shape = qwen3()
    # 2 (K, V) x 28 layers x 8 KV heads x 128 dims x 2 bytes
    assert fleet.kv_bytes_per_token(shape) == 2 * 28 * 8 * 128 * 2 == 114_688
    assert 1.1e9 < fleet.weight_bytes(cfg) < 1.3e9  # "0.6B" parameters in bf16, tied embedding once
    # 256 requests x (1000 + 1000) tokens in flight
    need = fleet.need_gib(cfg, shape, 256 * 2000)
    assert need == pytest.approx((fleet.weight_bytes(cfg) + 512_000 * 114_688) / 2**30 + fleet.OVERHEAD_GIB)
    assert 58 < need < 61


def test_two_of_four_servers_fit_an_h200_for_1000_by_1000_at_256():
    cfg, shape = qwen3()
    p = fleet.plan(B, fleet.need_gib(cfg, shape, 512_000), 139.8)
    assert [[b.name for b in w] for w in p.waves] == [["fa3", "flashinfer"], ["fa4", "attnbench-fa4"]]
    assert p.memory_share == 0.45 and p.side_by_side and "2 servers side by side" in p.reason


def test_side_by_side_servers_get_a_fixed_kv_cache_that_holds_the_load():
    """Their share less what a server holds besides its KV cache: at least what the load needs,
    so vLLM need not profile memory, and the servers can start together."""
    cfg, shape = qwen3()
    kv_need = 512_000 * fleet.kv_bytes_per_token(shape) / fleet.GIB
    p = fleet.plan(B, fleet.need_gib(cfg, shape, 512_000), 139.8, resident_gib=fleet.resident_gib(cfg))
    assert kv_need <= p.kv_cache_gib <= 0.45 * 139.8 - fleet.resident_gib(cfg)
    assert f"a {p.kv_cache_gib:.1f} GiB KV cache each" in p.reason
    assert fleet.plan(B, fleet.need_gib(cfg, shape, 512_000), 139.8).kv_cache_gib is None  # not asked
    mine = fleet.plan(B, fleet.need_gib(cfg, shape, 512_000), 139.8, serve_args=["--kv-cache-memory-bytes=50G"],
                      resident_gib=fleet.resident_gib(cfg))
    assert mine.side_by_side and mine.kv_cache_gib is None  # the user's own KV cache size stands


def test_one_at_a_time_when_none_fits_beside_another_or_when_asked():
    cfg, shape = qwen3()
    need = fleet.need_gib(cfg, shape, 512_000)
    small = fleet.plan(B, need, 80.0)
    assert all(len(w) == 1 for w in small.waves) and small.memory_share is None
    assert "each needs" in small.reason and "80 GiB" in small.reason
    assert not fleet.plan(B, need, 139.8, parallel=False).side_by_side
    assert "unknown" in fleet.plan(B, need, None).reason
    assert not fleet.plan(B, need, 139.8, serve_args=["--gpu-memory-utilization", "0.3"]).side_by_side
    assert not fleet.plan(B, need, 139.8, serve_args=["--gpu-memory-utilization=0.3"]).side_by_side  # either form
    assert len(fleet.plan(B, 10.0, 139.8).waves) == 1  # all four fit: one wave of four
    # --parallel-start that cannot be honoured says why; asked or not, a plan that can says nothing
    assert fleet.unmet(small, True) == f"--parallel-start asked, but {small.reason}"
    assert fleet.unmet(small, None) is None and fleet.unmet(fleet.plan(B, 10.0, 139.8, parallel=True), True) is None


def test_a_servers_memory_share_is_given_to_vllm_unless_the_user_set_it():
    """The one place serve-bench, gpqa and parity take --gpu-memory-utilization from."""
    assert fleet.memory_args(0.45) == ["--gpu-memory-utilization", "0.45"]
    assert fleet.memory_args(None) == []  # alone: vLLM's default
    assert fleet.memory_args(None, alone=0.8) == ["--gpu-memory-utilization", "0.8"]  # a command's own default
    assert fleet.memory_args(0.3, alone=0.8) == ["--gpu-memory-utilization", "0.3"]  # side by side: the share
    assert fleet.memory_args(0.3, ["--max-num-seqs", "8"]) == ["--gpu-memory-utilization", "0.3"]
    # the user's own value, in either form, is the one the server gets
    assert fleet.memory_args(0.3, ["--gpu-memory-utilization", "0.5"], alone=0.8) == []
    assert fleet.memory_args(None, ["--gpu-memory-utilization=0.5"], alone=0.8) == []
    assert fleet.memory_args(0.3, ["--gpu-memory-utilizations", "1"]) == ["--gpu-memory-utilization", "0.3"]
    # side by side with a fixed KV cache, in bytes, unless the user gave one
    assert fleet.memory_args(0.45, kv_cache_gib=58.0) == ["--gpu-memory-utilization", "0.45",
                                                         "--kv-cache-memory-bytes", str(58 * 2**30)]
    assert fleet.memory_args(0.45, ["--kv-cache-memory-bytes", "9G"], kv_cache_gib=58.0) == [
        "--gpu-memory-utilization", "0.45"]


def test_the_client_keeps_four_cores_on_big_machines():
    servers, client = fleet.cpu_split(16)
    if servers is None:
        pytest.skip("this process may use fewer than 16 cores")
    assert len(client) == 4 and not set(servers) & set(client)
    assert fleet.cpu_split(4) == (None, None)


def test_a_load_benchmark_spreads_vllms_frontend_over_four_processes_unless_told_otherwise():
    """One API-server process saturated at 256 streams on the H200 and set the pace (fleet.API_SERVERS)."""
    assert fleet.frontend_args([], n_cpus=16) == ["--api-server-count", "4"]
    assert fleet.frontend_args(["--api-server-count=1"], n_cpus=16) == []
    assert fleet.frontend_args(["--max-num-seqs", "8", "--api-server-count", "2"], n_cpus=16) == []
    assert fleet.frontend_args([], n_cpus=4) == []  # too few cores to give each process one


def test_the_api_server_count_a_record_states_is_the_one_the_server_ran():
    assert fleet.api_server_count([], n_cpus=16) == fleet.API_SERVERS == 4
    assert fleet.api_server_count([], n_cpus=2) == 1
    assert fleet.api_server_count(["--api-server-count=2"], n_cpus=2) == 2
    assert fleet.api_server_count(["--api-server-count", "8"], n_cpus=16) == 8
    assert fleet.api_server_count(["--api-server-count=2", "--api-server-count", "3"], n_cpus=16) == 3  # as argparse


def test_a_flag_is_read_in_both_of_vllms_forms():
    assert fleet.flag_value(["--block-size", "128"], "--block-size") == "128"
    assert fleet.flag_value(["--block-size=128"], "--block-size") == "128"
    assert fleet.flag_value(["--block-sizes", "1"], "--block-size") is None
    assert fleet.flag_value(["--block-size"], "--block-size") is None


def test_each_server_starts_once_the_one_before_has_taken_its_memory(tmp_path, monkeypatch):
    import re

    from attnbench.serving.server import ServerSpec

    for k, v in fake_env(tmp_path, FAKE_VLLM_START_S="1.0").items():
        monkeypatch.setenv(k, v)
    specs = [ServerSpec(model="m", backend=registry.get(n), served_model_name="tiny", log_path=tmp_path / f"{n}.log")
             for n in ("fa3", "flashinfer", "fa4")]
    with fleet.running(specs) as servers:
        assert all(hasattr(s, "base_url") for s in servers)
    logs = [(tmp_path / f"{n}.log").read_text() for n in ("fa3", "flashinfer", "fa4")]
    started = [float(re.search(r"started at ([\d.]+)", t).group(1)) for t in logs]
    taken = [float(re.search(r"KV cache size: \d+ tokens \(at ([\d.]+)", t).group(1)) for t in logs]
    assert started[1] >= taken[0] and started[2] >= taken[1]
    assert started[1] < taken[0] + 0.5 + 5  # ... but not after the first was ready (it overlaps)
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_servers_with_a_fixed_kv_cache_start_together(tmp_path, monkeypatch):
    """vLLM skips memory profiling with --kv-cache-memory-bytes: nothing to wait for between starts."""
    import re

    from attnbench.serving.server import ServerSpec

    for k, v in fake_env(tmp_path, FAKE_VLLM_START_S="2.0").items():
        monkeypatch.setenv(k, v)
    specs = [ServerSpec(model="m", backend=registry.get(n), served_model_name="tiny", log_path=tmp_path / f"{n}.log",
                        extra_args=["--kv-cache-memory-bytes=8G"]) for n in ("fa3", "flashinfer")]
    with fleet.running(specs) as servers:
        assert all(hasattr(s, "base_url") for s in servers)
    logs = [(tmp_path / f"{n}.log").read_text() for n in ("fa3", "flashinfer")]
    started = [float(re.search(r"started at ([\d.]+)", t).group(1)) for t in logs]
    taken = [float(re.search(r"KV cache size: \d+ tokens \(at ([\d.]+)", t).group(1)) for t in logs]
    assert started[1] < taken[0]  # the second did not wait for the first's memory
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_on_a_fresh_machine_the_first_server_starts_alone_and_the_rest_together(tmp_path, monkeypatch):
    """With an empty vLLM compile cache, servers starting together would each compile the same
    kernels: the first goes alone until it has taken its memory (by then it has filled the cache),
    then the others start at once."""
    import re

    from attnbench.serving.server import ServerSpec

    for k, v in fake_env(tmp_path, FAKE_VLLM_START_S="2.0", warm=False).items():
        monkeypatch.setenv(k, v)
    assert fleet.compile_cache_cold()
    names = ("fa3", "flashinfer", "fa4")
    specs = [ServerSpec(model="m", backend=registry.get(n), served_model_name="tiny", log_path=tmp_path / f"{n}.log",
                        extra_args=["--kv-cache-memory-bytes=8G"]) for n in names]
    with fleet.running(specs) as servers:
        assert all(hasattr(s, "base_url") for s in servers)
    logs = [(tmp_path / f"{n}.log").read_text() for n in names]
    started = [float(re.search(r"started at ([\d.]+)", t).group(1)) for t in logs]
    taken = [float(re.search(r"KV cache size: \d+ tokens \(at ([\d.]+)", t).group(1)) for t in logs]
    assert started[1] >= taken[0] and started[2] >= taken[0]  # the first went alone ...
    assert started[2] < taken[1]  # ... the others together
    assert not fleet.compile_cache_cold()  # the first left its cache, as vLLM does
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_a_compile_cache_is_looked_for_where_vllm_keeps_it(tmp_path):
    assert fleet.compile_cache_cold({"VLLM_CACHE_ROOT": str(tmp_path / "none")})
    (tmp_path / "xdg" / "vllm" / "torch_compile_cache" / "abc").mkdir(parents=True)
    assert not fleet.compile_cache_cold({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    (tmp_path / "root" / "torch_compile_cache").mkdir(parents=True)  # there, but empty
    assert fleet.compile_cache_cold({"VLLM_CACHE_ROOT": str(tmp_path / "root")})


def attnbench(*args, env=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "attnbench", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_side_by_side_servers_get_their_share_and_passes_are_interleaved(tmp_path):
    out = tmp_path / "res"
    p = attnbench("serve-bench", "--backends", "fa3,fa4", "--input", "8", "--output", "3", "--num-prompts", "4",
                  "--repeats", "2", "--max-warmup-passes", "2", "--result-dir", out, env=fake_env(tmp_path))
    assert p.returncode == 0, p.stderr
    assert "2 servers side by side" in p.stderr and "interleaved" in p.stderr
    for name in ("fa3", "fa4"):
        log = (out / name / "server.log").read_text()
        assert "--gpu-memory-utilization 0.45" in log and "--kv-cache-memory-bytes" in log
    assert "GiB KV cache each (--kv-cache-memory-bytes, so none profiles memory)" in p.stderr
    passes = [r for r in record.load(out) if r.kind == "serve"]
    assert len(passes) == 4 and all(r.scenario["interleaved"] and r.scenario["side_by_side"] for r in passes)
    assert {r.scenario["wave"] for r in passes} == {0}  # one wave: their ratios pair pass with pass
    count = fleet.api_server_count([])  # this machine's: 4 from 8 cores up, else vLLM's one
    assert {r.scenario["api_server_count"] for r in passes} == {count}
    assert ("--api-server-count 4" in (out / "fa3" / "server.log").read_text()) == (count == 4)
    order = [(r.backend, r.scenario["repeat"]) for r in sorted(passes, key=lambda r: r.samples["observation"]["window_t0"])]
    assert order == [("fa3", 0), ("fa4", 0), ("fa3", 1), ("fa4", 1)]
    assert "side by side" in (out / "summary.md").read_text()
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_serve_bench_says_when_a_fresh_machine_makes_the_first_server_start_alone(tmp_path):
    p = attnbench("serve-bench", "--backends", "fa3,fa4", "--input", "8", "--output", "3", "--num-prompts", "4",
                  "--repeats", "1", "--max-warmup-passes", "1", "--result-dir", tmp_path / "res",
                  env=fake_env(tmp_path, warm=False))
    assert p.returncode == 0, p.stderr
    assert "vLLM's compile cache is empty (a fresh machine): the first server starts alone" in p.stderr


def test_a_crash_of_one_side_by_side_server_leaves_the_other_measured_and_nothing_running(tmp_path):
    out = tmp_path / "res"
    p = attnbench("serve-bench", "--backends", "fa3,flashinfer", "--input", "8", "--output", "3", "--num-prompts",
                  "4", "--repeats", "1", "--warmup", "0", "--result-dir", out,
                  env=fake_env(tmp_path, FAKE_VLLM_MODE_FLASHINFER="crash"))
    assert p.returncode == 0, p.stderr
    recs = {r.backend: r for r in record.load(out) if r.kind == "serve"}
    assert recs["fa3"].status == "ok" and recs["fa3"].metrics["completed"] == 4
    assert recs["flashinfer"].status == "failed" and "exited with code 3" in recs["flashinfer"].error
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_ctrl_c_stops_every_side_by_side_server_and_keeps_what_was_measured(tmp_path):
    out = tmp_path / "res"
    env = {**os.environ, **fake_env(tmp_path, FAKE_VLLM_ITL="0.05")}
    code, err = interrupt_when([sys.executable, "-m", "attnbench", "serve-bench", "--backends", "fa3,fa4", "--input", "8",
                                "--output", "40", "--num-prompts", "4", "--repeats", "50", "--warmup", "0",
                                "--result-dir", str(out)], env, lambda: (out / "fa4" / "serve-8x40-r0.json").exists(), 120, 90)
    assert code == 130, err
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]
    passes = [r for r in record.load(out) if r.kind == "serve"]
    assert {("fa3", 0), ("fa4", 0)} <= {(r.backend, r.scenario["repeat"]) for r in passes}
    assert (out / "summary.md").exists()
    assert json.loads((out / "fa3" / "serve-8x40-r0.json").read_text())["status"] == "ok"


def test_a_one_token_shape_needs_only_its_prefill_budget_resident():
    from attnbench.serving.run import ServeBench, tokens_in_flight
    from attnbench.serving.workload import Workload

    load = Workload(input_len=1000, output_len=1000, num_prompts=256)
    decode = ServeBench(shapes=[(1000, 1000)], load=load)
    assert tokens_in_flight(decode) == 256 * 2000
    prefill = ServeBench(shapes=[(8000, 1)], load=load)
    assert tokens_in_flight(prefill) == (3 + 1) * 8001  # ceil(16384 / 8000) = 3 prompts per step, plus one
    both = ServeBench(shapes=[(1000, 1000), (8000, 1)], load=load)
    assert tokens_in_flight(both) == 512_000  # the decode shape decides
    cfg, shape = qwen3()
    # the seed study on an H200: two servers side by side
    assert fleet.plan(B, fleet.need_gib(cfg, shape, tokens_in_flight(both)), 140.4).memory_share == 0.45


def test_an_interrupt_cuts_the_stop_grace_and_is_heard_first(tmp_path, monkeypatch):
    """A server that ignores SIGTERM, a 120 s grace, Ctrl-C in the run: with interrupt_grace_s the
    servers are SIGKILLed after that instead, once on_interrupt has been told."""
    from attnbench.serving.server import ServerSpec

    for k, v in fake_env(tmp_path, FAKE_VLLM_MODE="ignore-term").items():
        monkeypatch.setenv(k, v)
    specs = [ServerSpec(model="m", backend=registry.get(n), log_path=tmp_path / f"{n}.log", stop_grace_s=120.0)
             for n in ("fa3", "fa4")]
    heard = []
    with pytest.raises(KeyboardInterrupt):
        with fleet.running(specs, interrupt_grace_s=0.5, on_interrupt=heard.append) as servers:
            assert all(isinstance(s, fleet.VllmServer) for s in servers)
            pids = all_pids(tmp_path / "pids")
            assert pids and all(alive(p) for p in pids)
            t0 = time.monotonic()
            raise KeyboardInterrupt
    assert time.monotonic() - t0 < 60  # far below the 120 s grace the servers were given
    assert len(heard) == 1 and isinstance(heard[0], KeyboardInterrupt)
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_the_page_size_explain_uses_is_the_servers_block_size_in_either_form():
    cfg, shape = qwen3()
    assert shape["block_size"] == 16  # vLLM's default
    assert model_shape(cfg, ["--block-size", "128"])["block_size"] == 128
    assert model_shape(cfg, ["--block-size=128"])["block_size"] == 128


def test_memory_a_server_takes_beside_its_share_is_left_free():
    """parity's prompt logits are outside what vLLM profiles: each share shrinks by them, and
    fewer servers fit."""
    assert fleet.plan(B, 30.0, 140.0).memory_share == 0.225  # four fit: 4 x 30 <= 126
    p = fleet.plan(B, 30.0, 140.0, outside_gib=5.0)
    assert [len(w) for w in p.waves] == [3, 1] and "5.0 GiB beside its share" in p.reason
    assert p.memory_share == round(0.90 / 3 - 5.0 / 140.0, 3)
    assert p.memory_share * 140.0 >= 30.0 and 3 * (p.memory_share * 140.0 + 5.0) <= 0.90 * 140.0 + 0.1
    assert fleet.tokens_in_flight(64, [(100, 10)]) == 64 * 110
