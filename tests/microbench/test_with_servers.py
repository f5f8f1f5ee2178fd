"""scripts/device/with_servers.py against the stand-in `vllm serve` (tests/serving/fake_vllm.py):
commands naming a server that did not come up are skipped, and SIGTERM (what `timeout` sends)
stops every server it started, engine processes included, before `timeout -k 10` would SIGKILL."""

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "device" / "with_servers.py"
FAKE = ROOT / "tests" / "serving" / "fake_vllm.py"
PY = shlex.quote(sys.executable)


def test_the_stand_in_server_is_there():
    """Nothing here skips: the stand-in `vllm serve` is part of the repository."""
    assert FAKE.is_file() and SCRIPT.is_file()


def _env(tmp_path, **extra):
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "ATTNBENCH_VLLM_CMD": f"{PY} {shlex.quote(str(FAKE))} serve", "FAKE_VLLM_PIDS": str(tmp_path / "pids"),
            "FAKE_VLLM_START_S": "0.3", **extra}


def _cmd(tmp_path, backends, *commands, grace="20"):
    args = [sys.executable, str(SCRIPT), "--model", str(tmp_path / "m"), "--backends", backends,
            "--log-dir", str(tmp_path / "logs"), "--ready-timeout", "60", "--stop-grace", grace, "--"]
    for i, c in enumerate(commands):
        args += ([";;"] if i else []) + shlex.split(c)
    return args


def _pids(tmp_path):
    f = tmp_path / "pids"
    return [int(p) for line in f.read_text().splitlines() for p in line.split()] if f.exists() else []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _echo(tag):
    return f"{PY} -c 'import sys; print(\"RAN {tag}\", sys.argv[1:])'"


def test_commands_for_a_server_that_failed_are_skipped_not_run_with_the_placeholder(tmp_path):
    r = subprocess.run(_cmd(tmp_path, "fa3,flashinfer",
                            f"{_echo('one')} {{endpoint:fa3}}",
                            f"{_echo('two')} --endpoint {{endpoint:flashinfer}}",
                            f"{_echo('three')} {{endpoints}} --model {{model}}",
                            f"{_echo('four')} {{endpoint:fa4}}"),
                       env=_env(tmp_path, FAKE_VLLM_MODE_FLASHINFER="crash"), capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "RAN one ['http://127.0.0.1:" in out
    ran = [line for line in out.splitlines() if line.startswith("RAN ")]
    assert [line.split()[1] for line in ran] == ["one", "three"]  # never run with a literal {endpoint:...}
    assert "skipped (server flashinfer did not come up)" in out
    assert "skipped (server fa4 is not in --backends)" in out
    three = ran[1]
    assert "fa3=http://127.0.0.1:" in three and "flashinfer" not in three and "'m'" in three
    assert "did not come up: flashinfer" in out
    assert _pids(tmp_path) and not any(_alive(p) for p in _pids(tmp_path))


@pytest.mark.parametrize("mode", ["ok", "ignore-term"])
def test_sigterm_stops_every_server_and_engine(tmp_path, mode):
    """As `timeout -k 10 360 with_servers.py ...` does when time runs out mid-command; a server
    that ignores SIGTERM is SIGKILLed after the short grace, well within the 10 s."""
    proc = subprocess.Popen(_cmd(tmp_path, "fa3,flashinfer", f"{PY} -c 'import time; print(\"SLEEPING\", flush=True); time.sleep(600)'"),
                            env=_env(tmp_path, FAKE_VLLM_MODE_FLASH_ATTN=mode), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("SLEEPING") or time.monotonic() > deadline:
            break
    pids = _pids(tmp_path)
    assert len(pids) == 4 and all(_alive(p) for p in pids), "".join(lines)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    out = "".join(lines) + rest
    assert time.monotonic() - t0 < 9, out
    assert proc.returncode != 0 and "SIGTERM: stopping the servers" in out, out
    end = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < end:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), out


def test_one_backend_runs_twice_under_two_labels_each_with_its_own_arguments(tmp_path):
    """`--backends fa3,fa3-api4=fa3`: two servers of one backend, each with its own log and
    arguments, addressable by label."""
    args = _cmd(tmp_path, "fa3,fa3-api4=fa3", f"{_echo('x')} {{endpoint:fa3-api4}}")
    args[args.index("--"):args.index("--")] = ["--serve-arg-for", "fa3-api4=--api-server-count=4"]
    r = subprocess.run(args, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").glob("*.log")}
    assert set(logs) == {"m-fa3.log", "m-fa3-api4.log"}
    assert "--api-server-count=4" in logs["m-fa3-api4.log"] and "--api-server-count" not in logs["m-fa3.log"]
    assert "fa3-api4=http://127.0.0.1:" in r.stdout


def test_serve_arg_for_an_unknown_label_is_refused_naming_the_labels(tmp_path):
    args = _cmd(tmp_path, "fa3", f"{_echo('x')}")
    args[args.index("--"):args.index("--")] = ["--serve-arg-for", "fa4=--x"]
    r = subprocess.run(args, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "LABEL one of fa3" in r.stderr
    assert not (tmp_path / "logs").exists()
