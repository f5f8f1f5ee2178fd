"""`attnbench parity --backends`: every backend's server and the null pass's start side by side
(serving.fleet), each with its memory share; a crash of one leaves the others' results; every
server is stopped at the end and on Ctrl-C; --no-parallel-start keeps one server at a time. The
servers are the stand-in `vllm serve` (tests/serving/fake_vllm.py) on loopback."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from attnbench.records import record

from .logprob_server import VOCAB

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from test_server import all_pids, alive, checkpoint, commands, fake_env, interrupt_when  # noqa: E402


def env(tmp_path, **extra) -> dict:
    return {**os.environ, **fake_env(tmp_path, **extra)}


FLAGS = ["--num-prompts", "3", "--short-len", "6", "--long-len", "20", "--top-k", "4", "--max-tokens", "5",
         "--vocab-size", str(VOCAB)]


def parity(tmp_path, *args, **extra):
    return subprocess.run([sys.executable, "-m", "attnbench", "parity", "--model", checkpoint(tmp_path, VOCAB),
                           "--hf-reference", "off", *FLAGS, *args], capture_output=True, text=True, timeout=300,
                          env=env(tmp_path, **extra))


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


def test_the_fp32_reference_runs_on_cpu_while_the_servers_start_and_joins_the_comparison(tmp_path, tiny_llama):
    """Its minutes on a GPU host overlap the servers' start instead of following them: with the
    stand-in servers taking 20 s to listen, the reference has answered prompts before they are up."""
    folder, _ = tiny_llama
    out = tmp_path / "res"
    p = subprocess.run([sys.executable, "-m", "attnbench", "parity", "--model", checkpoint(tmp_path, VOCAB),
                        "--hf-reference", str(folder), *FLAGS, "--backends", "fa2,fa3", "--result-dir", str(out)],
                       capture_output=True, text=True, timeout=300, env={**env(tmp_path), "FAKE_VLLM_START_S": "20"})
    assert "Traceback" not in p.stderr, p.stderr
    err = p.stderr
    assert "[hf-fp32] loading" in err and "beside the servers" in err
    assert err.index("[hf-fp32] parity prompt 1/3 on CPU") < err.index("[fa2, fa3, fa3-null] started in"), err
    assert err.index("[fa3-null] collected") < err.index("[hf-fp32] collected 3 prompts on CPU")  # joined last
    assert (out / "collected" / "hf-fp32.json.gz").exists()
    recs = {r.backend: r for r in record.load(out)}
    assert recs["fa2"].metrics["hf_max_abs_dlogprob"] > 0.5  # the scripted "model" is not the Llama
    assert recs["fa3"].scenario["fp32_reference"] == str(folder)
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_ctrl_c_stops_every_side_by_side_server_and_keeps_what_was_collected(tmp_path):
    out = tmp_path / "res"
    code, err = interrupt_when([sys.executable, "-m", "attnbench", "parity", "--model", checkpoint(tmp_path, VOCAB),
                                "--hf-reference", "off", *FLAGS, "--backends", "fa2,fa3", "--result-dir", str(out)],
                               env(tmp_path, FAKE_VLLM_MODE_FLASH_ATTN3="shift:0.01", FAKE_VLLM_ITL="1.0"),
                               lambda: (out / "collected" / "fa2.json.gz").exists())
    assert code == 130, err
    assert "3 servers side by side" in err
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]
    recs = {r.backend: r for r in record.load(out)}
    assert recs["fa3"].status == "failed" and "interrupted" in recs["fa3"].error
    assert (out / "collected" / "fa2.json.gz").exists()


def test_when_the_default_reference_crashes_beside_the_others_the_null_is_of_the_one_in_use(tmp_path):
    """The null server was planned for fa3; fa3 did not start, so fa2 is the reference, and a
    server of fa2 is started afterwards for its null pass."""
    out = tmp_path / "res"
    p = parity(tmp_path, "--backends", "fa3,fa2,flashinfer", "--result-dir", out,
               FAKE_VLLM_MODE_FLASH_ATTN3="crash", FAKE_VLLM_MODE_FLASHINFER="shift:0.01")
    assert p.returncode == 1 and "comparing with fa2 instead" in p.stderr, p.stderr
    assert "4 servers side by side" in p.stderr
    recs = {r.backend: r for r in record.load(out)}
    assert recs["fa3"].status == "failed" and recs["flashinfer"].scenario["reference"] == "fa2"
    assert recs["flashinfer"].metrics["max_abs_dlogprob"] == pytest.approx(0.01)
    assert recs["fa2"].scenario["null"]["source"] == "fa2-null" and (out / "fa2" / "server-null.log").exists()
    cmds = commands(tmp_path)
    assert len(cmds) == 5 and share(cmds[-1]) == "0.8"  # the four of the wave, then fa2's null alone
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_the_memory_a_parity_server_needs_by_hand():
    from attnbench.models import embedded
    from attnbench.parity.collect import Settings
    from attnbench.parity.prompts import PromptSet
    from attnbench.parity.run import LOGIT_COPIES, Parity, memory_need
    from attnbench.serving import fleet
    from attnbench.serving.run import model_shape

    _, cfg = embedded.resolve("qwen3-0.6b")
    settings = Settings(PromptSet(num_prompts=4, short_len=100, long_len=1000), max_tokens=10, concurrency=2)
    need, beside = memory_need(Parity(settings=settings, result_dir=Path(".")), cfg)
    # prompts 1000, 100, 1007, 107: the two longest in flight, each with its 10 greedy tokens (2027),
    # or two rescoring requests of the longest prompt + continuation, with their one token (2036)
    tokens = max((1007 + 10) + (1000 + 10), 2 * (1007 + 10 + 1))
    assert tokens == 2036
    assert need == pytest.approx(fleet.need_gib(cfg, model_shape(cfg, []), tokens))
    assert beside == pytest.approx(LOGIT_COPIES * (1007 + 10) * cfg["vocab_size"] * 4 / 2**30)
