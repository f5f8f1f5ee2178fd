"""`attnbench gpqa --backends`: the backends' servers start side by side (serving.fleet), each
with its memory share, each backend is asked through its own, the records land in one folder and
pair; a crash of one leaves the others; every server is stopped at the end and on Ctrl-C;
--no-parallel-start starts one at a time. The servers are the stand-in `vllm serve`
(tests/serving/fake_vllm.py), whose scripted answers grade as wrong but answered."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from attnbench.records import record

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from test_server import all_pids, alive, checkpoint, commands, fake_env, interrupt_when  # noqa: E402


def env(tmp_path, **extra) -> dict:
    return {**os.environ, **fake_env(tmp_path, **extra)}


FLAGS = ["--api", "chat", "--effort", "none", "--dataset", "mini", "--repeats", "1", "--max-tokens", "8",
         "--retry-time", "5"]


def gpqa_argv(tmp_path, *args) -> list[str]:
    return [sys.executable, "-m", "attnbench", "gpqa", "--model", checkpoint(tmp_path, 300), *FLAGS, *map(str, args)]


def gpqa(tmp_path, *args, **extra):
    return subprocess.run(gpqa_argv(tmp_path, *args), capture_output=True, text=True, timeout=300,
                          env=env(tmp_path, **extra))


def port(url_or_log: str) -> str:
    return re.search(r"(?:--port |127\.0\.0\.1:)(\d+)", url_or_log).group(1)


def test_the_backends_servers_start_side_by_side_and_each_is_asked_through_its_own(tmp_path):
    out = tmp_path / "res"
    p = gpqa(tmp_path, "--backends", "fa3,fa4,flashinfer", "--result-dir", out, FAKE_VLLM_MODE_FLASHINFER="crash")
    assert p.returncode == 0, p.stderr
    assert "3 servers side by side" in p.stderr, p.stderr
    cmds = commands(tmp_path)
    assert len(cmds) == 3 and all(c[c.index("--gpu-memory-utilization") + 1] == "0.3" for c in cmds)
    assert len({int(line.split()[0]) for line in (tmp_path / "pids").read_text().splitlines()}) == 3
    recs = {r.backend: r for r in record.load(out) if r.kind == "gpqa"}
    assert recs["flashinfer"].status == "failed" and "exited with code 3" in recs["flashinfer"].error
    for name in ("fa3", "fa4"):
        rec = recs[name]
        assert rec.status == "ok" and rec.metrics["n_answered"] == 20
        assert port(rec.provenance["endpoint"]) == port((out / name / "server.log").read_text())
    assert recs["fa3"].provenance["endpoint"] != recs["fa4"].provenance["endpoint"]
    pairs = json.loads((out / "comparison.json").read_text())
    assert any("fa4" in pair["verdict"] and "fa3" in pair["verdict"] for pair in pairs)
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_no_parallel_start_starts_one_server_at_a_time_with_vllms_default_memory(tmp_path):
    out = tmp_path / "res"
    p = gpqa(tmp_path, "--backends", "fa3,fa4", "--no-parallel-start", "--result-dir", out)
    assert p.returncode == 0, p.stderr
    assert "one server at a time (--no-parallel-start)" in p.stderr
    assert all("--gpu-memory-utilization" not in c for c in commands(tmp_path))
    recs = {r.backend: r for r in record.load(out) if r.kind == "gpqa"}
    assert recs["fa3"].metrics["duration_s"] >= 0 and recs["fa4"].status == "ok"
    # fa4's server started after fa3 was asked everything
    started = float(re.search(r"started at ([\d.]+)", (out / "fa4" / "server.log").read_text()).group(1))
    assert (out / "fa3" / "gpqa.json").stat().st_mtime <= started
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]


def test_ctrl_c_stops_every_side_by_side_server_and_keeps_the_answers(tmp_path):
    out = tmp_path / "res"
    cache = out / "cache.jsonl"
    code, err = interrupt_when(gpqa_argv(tmp_path, "--backends", "fa3,fa4", "--result-dir", out, "--concurrency", "2"),
                               env(tmp_path, FAKE_VLLM_ITL="0.2"), lambda: cache.exists() and cache.read_text().strip())
    assert code == 130, err
    assert "2 servers side by side" in err
    assert not [pid for pid in all_pids(tmp_path / "pids") if alive(pid)]
    first = json.loads((out / "fa3" / "gpqa.json").read_text())
    assert first["status"] == "failed" and "interrupted" in first["error"]
