"""`attnbench parity --backends`: every backend's server and the null pass's start side by side
(serving.fleet), each with its memory share; a crash of one leaves the others' results; every
server is stopped at the end and on Ctrl-C; --no-parallel-start keeps one server at a time. The
servers are the stand-in `vllm serve` (tests/serving/fake_vllm.py) on loopback."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnbench.records import record

from .logprob_server import VOCAB

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from test_server import FAKE, all_pids, alive  # noqa: E402

FLAGS = ["--num-prompts", "3", "--short-len", "6", "--long-len", "20", "--top-k", "4", "--max-tokens", "5",
         "--vocab-size", str(VOCAB)]


def checkpoint(tmp_path) -> str:
    """A local model folder whose config.json gives the KV cache size (the stand-in loads nothing)."""
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "vocab_size": VOCAB, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "torch_dtype": "bfloat16"}))
    return str(folder)


def env(tmp_path, **extra) -> dict:
    return {**os.environ, "ATTNBENCH_VLLM_CMD": f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} serve",
            "FAKE_VLLM_PIDS": str(tmp_path / "pids"), "FAKE_VLLM_ARGS": str(tmp_path / "args.jsonl"),
            "FAKE_VLLM_START_S": "0.4", "ATTNBENCH_GPU_MEMORY_GIB": "140", **extra}


def parity(tmp_path, *args, **extra):
    return subprocess.run([sys.executable, "-m", "attnbench", "parity", "--model", checkpoint(tmp_path),
                           "--hf-reference", "off", *FLAGS, *args], capture_output=True, text=True, timeout=300,
                          env=env(tmp_path, **extra))


def commands(tmp_path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "args.jsonl").read_text().splitlines()]


def share(cmd: list[str]) -> str:
    return cmd[cmd.index("--gpu-memory-utilization") + 1]


def attention(cmd: list[str]) -> list[str]:
    """The attention settings a server was started with (backend, FlashAttention version)."""
    return [cmd[i + 1] for i, a in enumerate(cmd) if a.startswith("--attention")]


def started_at(log: Path) -> float:
    return float(re.search(r"started at ([\d.]+)", log.read_text()).group(1))


def test_every_server_and_the_null_start_side_by_side_and_a_crash_leaves_the_others(tmp_path):
    out = tmp_path / "res"
    p = parity(tmp_path, "--backends", "fa2,fa3,flashinfer", "--result-dir", out,
               FAKE_VLLM_MODE_FLASH_ATTN2="shift:0.01", FAKE_VLLM_MODE_FLASHINFER="crash")
    assert p.returncode == 1, p.stderr  # flashinfer did not run
    assert "4 servers side by side" in p.stderr, p.stderr
    cmds = commands(tmp_path)
    assert len(cmds) == 4 and {share(c) for c in cmds} == {"0.225"}  # 0.90 / 4 each
    # all four were up before the first collection: their lifetimes overlap
    assert p.stderr.index("[fa2, fa3, flashinfer, fa3-null] started in") < p.stderr.index("[fa2] collected")
    logs = [out / "fa2" / "server.log", out / "fa3" / "server.log", out / "flashinfer" / "server.log",
            out / "fa3" / "server-null.log"]
    assert max(started_at(log) for log in logs) < (out / "collected" / "fa2.json.gz").stat().st_mtime
    # the null's server is a process of its own, not the reference's
    servers = [int(line.split()[0]) for line in (tmp_path / "pids").read_text().splitlines()]
    assert len(set(servers)) == 4
    recs = {r.backend: r for r in record.load(out)}
    assert recs["flashinfer"].status == "failed" and "exited with code 3" in recs["flashinfer"].error
    assert recs["fa2"].metrics["max_abs_dlogprob"] == pytest.approx(0.01) and recs["fa2"].metrics["decode_rescored"] == 1
    assert recs["fa3"].scenario["null"]["source"] == "fa3-null" and "null_max_abs_dlogprob" in recs["fa3"].metrics
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_no_parallel_start_keeps_one_server_at_a_time_and_the_null_restart_last(tmp_path):
    out = tmp_path / "res"
    p = parity(tmp_path, "--backends", "fa2,fa3", "--no-parallel-start", "--result-dir", out)
    assert p.returncode == 0, p.stderr
    assert "one server at a time (--no-parallel-start)" in p.stderr
    cmds = commands(tmp_path)
    assert len(cmds) == 3 and attention(cmds[0]) != attention(cmds[1]) == attention(cmds[2])  # fa2, fa3, fa3 again
    assert {share(c) for c in cmds} == {"0.8"}
    # fa2 was collected before fa3's server started, and fa3 before its null server
    order = ["[fa2] started in", "[fa2] collected", "[fa3] started in", "[fa3] collected", "[fa3-null] started in",
             "[fa3-null] collected"]
    assert [p.stderr.index(line) for line in order] == sorted(p.stderr.index(line) for line in order), p.stderr
    assert (out / "fa3" / "server-null.log").exists()
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_ctrl_c_stops_every_side_by_side_server_and_keeps_what_was_collected(tmp_path):
    out = tmp_path / "res"
    proc = subprocess.Popen([sys.executable, "-m", "attnbench", "parity", "--model", checkpoint(tmp_path),
                             "--hf-reference", "off", *FLAGS, "--backends", "fa2,fa3", "--result-dir", str(out)],
                            env=env(tmp_path, FAKE_VLLM_MODE_FLASH_ATTN3="shift:0.01", FAKE_VLLM_ITL="0.5"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (out / "collected" / "fa2.json.gz").exists():  # a state, not a time
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "3 servers side by side" in err
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]
    recs = {r.backend: r for r in record.load(out)}
    assert recs["fa3"].status == "failed" and "interrupted" in recs["fa3"].error
    assert (out / "collected" / "fa2.json.gz").exists()
