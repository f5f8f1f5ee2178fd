"""Server orchestration against a stand-in `vllm serve` (tests/serving/fake_vllm.py) that starts
slowly, crashes, hangs or ignores SIGTERM, and spawns an engine child like vLLM does."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnbench.backends import registry
from attnbench.serving import endpoint
from attnbench.serving.fleet import serving
from attnbench.serving.server import ServerFailed, ServerSpec, root_cause

FAKE = Path(__file__).with_name("fake_vllm.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_vllm(monkeypatch, tmp_path):
    pids = tmp_path / "pids"
    monkeypatch.setenv("ATTNBENCH_VLLM_CMD", f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} serve")
    monkeypatch.setenv("FAKE_VLLM_PIDS", str(pids))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def all_pids(pids_file: Path) -> list[int]:
    return [int(p) for line in pids_file.read_text().splitlines() for p in line.split()]


def fake_env(tmp_path, start_s: float = 0.4, memory_gib: float | None = 140, warm: bool = True, **extra) -> dict:
    """The variables that make a command start the stand-in for `vllm serve` (pids and argv noted
    under tmp_path) after `start_s`, with room for `memory_gib` of GPU memory (None: left to
    nvidia-smi, for a command that plans no memory), on a machine whose vLLM compile cache is
    `warm` (else empty, a fresh machine's)."""
    cache = tmp_path / "vllm-cache"
    if warm:
        (cache / "torch_compile_cache" / "earlier").mkdir(parents=True, exist_ok=True)
    env = {"ATTNBENCH_VLLM_CMD": f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} serve",
           "FAKE_VLLM_PIDS": str(tmp_path / "pids"), "FAKE_VLLM_ARGS": str(tmp_path / "args.jsonl"),
           "FAKE_VLLM_START_S": f"{start_s:g}", "VLLM_CACHE_ROOT": str(cache)}
    if memory_gib is not None:
        env["ATTNBENCH_GPU_MEMORY_GIB"] = f"{memory_gib:g}"
    return {**env, **extra}


def commands(tmp_path) -> list[list[str]]:
    """The argv of every stand-in server started under fake_env(tmp_path), in start order."""
    return [json.loads(line) for line in (tmp_path / "args.jsonl").read_text().splitlines()]


def checkpoint(tmp_path, vocab_size: int) -> str:
    """A local model folder whose config.json gives the KV cache size (the stand-in loads nothing)."""
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "torch_dtype": "bfloat16"}))
    return str(folder)


def interrupt_when(argv: list[str], env: dict, ready, timeout_s: float = 180, stop_s: float = 120) -> tuple[int, str]:
    """Start `argv`, wait until `ready()` (a state, not a time; at most timeout_s), send it Ctrl-C
    and give it stop_s to exit; (exit code, stderr)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=stop_s)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err


def spec(tmp_path, backend="fa3", **kw):
    return ServerSpec(model="m", backend=registry.get(backend), served_model_name="tiny",
                      log_path=tmp_path / "server.log", **kw)


def test_starts_waits_until_ready_and_leaves_no_process(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_START_S", "1.0")
    lines = []
    with serving(spec(tmp_path), status=lines.append) as server:
        assert endpoint.served_models(server.base_url) == ["tiny"]
        assert server.model_name == "tiny"
        assert "--attention-backend FLASH_ATTN --attention-config.flash_attn_version 3" in " ".join(server.command())
        assert "--host 127.0.0.1" in " ".join(server.command())
    assert lines and "[fa3] starting vllm" in lines[0]
    assert all_pids(fake_vllm) and not any(alive(p) for p in all_pids(fake_vllm))
    assert "Application startup complete" in (tmp_path / "server.log").read_text()


def test_a_crash_while_starting_is_reported_with_the_log(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "crash")
    with pytest.raises(ServerFailed) as e:
        with serving(spec(tmp_path)):
            pass
    assert "exited with code 3" in e.value.reason
    assert e.value.reason.endswith("CUDA error: no kernel image is available for execution on the device")
    assert any("no kernel image" in line for line in e.value.log_tail)
    assert not any(alive(p) for p in all_pids(fake_vllm))


def test_a_server_that_never_becomes_healthy_times_out_and_is_killed(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "hang")
    t0 = time.monotonic()
    with pytest.raises(ServerFailed) as e:
        with serving(spec(tmp_path, ready_timeout_s=2.0)):
            pass
    assert "not healthy after 2 s" in e.value.reason
    assert time.monotonic() - t0 < 20
    assert not any(alive(p) for p in all_pids(fake_vllm))


def test_a_server_ignoring_sigterm_is_killed_after_the_grace_period(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "ignore-term")
    t0 = time.monotonic()
    with serving(spec(tmp_path, stop_grace_s=1.0)):
        pass
    assert not any(alive(p) for p in all_pids(fake_vllm))
    assert time.monotonic() - t0 < 20


def test_ctrl_c_inside_the_run_still_stops_the_server(fake_vllm, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with serving(spec(tmp_path)):
            raise KeyboardInterrupt
    assert not any(alive(p) for p in all_pids(fake_vllm))


def test_the_server_and_its_engine_die_with_a_killed_parent(fake_vllm, tmp_path):
    """SIGKILL the process that started the server: nothing it started may live on (on the H100 an
    orphaned engine kept 10 GiB of GPU memory and the next server could not start)."""
    parent = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1])\n"
        "from pathlib import Path\n"
        "from attnbench.backends import registry\n"
        "from attnbench.serving.server import ServerSpec, VllmServer\n"
        "s = VllmServer(ServerSpec(model='m', backend=registry.get('fa3'), log_path=Path(sys.argv[2])))\n"
        "s.start(); s.wait_ready(); print('ready', flush=True); time.sleep(600)"),
        str(ROOT), str(tmp_path / "server.log")], stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "ready"
    pids = all_pids(fake_vllm)
    assert len(pids) == 2 and all(alive(p) for p in pids)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)


def test_a_failed_start_names_the_root_cause_from_the_log():
    # lines as vLLM 0.26.0 wrote them on the H100 when another process held GPU memory
    log = [
        "(EngineCore pid=3990) ERROR 11-24 15:44:36 [core.py:1330]     raise ValueError(",
        "(EngineCore pid=3990) ERROR 11-24 15:44:36 [core.py:1330] ValueError: Free memory on device cuda:0 "
        "(68.84/79.18 GiB) on startup is less than desired GPU memory utilization (0.92, 72.84 GiB).",
        "(APIServer pid=3803)     raise RuntimeError(",
        "(APIServer pid=3803) RuntimeError: Engine core initialization failed. See root cause above. "
        "Failed core proc(s): {}",
    ]
    assert root_cause(log) == ("ValueError: Free memory on device cuda:0 (68.84/79.18 GiB) on startup is less "
                               "than desired GPU memory utilization (0.92, 72.84 GiB).")
    assert root_cause(["INFO all good"]) is None
