"""scripts/device/pin_engine.py on stand-in processes named as vLLM names its own: the engine core
gets a core of its own, the API server is moved off it, and restore puts both back."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "device" / "pin_engine.py"
spec = importlib.util.spec_from_file_location("pin_engine", SCRIPT)
pin_engine = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pin_engine)


def named(name: str) -> subprocess.Popen:
    """A process whose /proc comm is `name` (as vLLM's setproctitle makes it), with two threads."""
    code = (f"import threading, time\nopen('/proc/self/comm', 'w').write({name!r})\n"
            "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\nprint('up', flush=True)\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "up"
    return p


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to move a process off one")
def test_pin_gives_the_engine_core_its_own_core_and_restore_undoes_it(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    engine, api = named("VLLM::EngineCor"), named("VLLM::APIServer")
    try:
        found = pin_engine.vllm_processes()
        assert found.get(engine.pid) == "VLLM::EngineCor" and found.get(api.pid) == "VLLM::APIServer"
        save = tmp_path / "affinity.json"
        assert pin_engine.main(["pin", "--cores", str(cores[-1]), "--save", str(save)]) == 0
        time.sleep(0.1)
        for tid in pin_engine.threads(engine.pid):
            assert os.sched_getaffinity(tid) == {cores[-1]}  # every thread of it
        for tid in pin_engine.threads(api.pid):
            assert cores[-1] not in os.sched_getaffinity(tid)
        assert pin_engine.main(["restore", "--save", str(save)]) == 0
        assert os.sched_getaffinity(engine.pid) == set(cores) and os.sched_getaffinity(api.pid) == set(cores)
    finally:
        for p in (engine, api):
            p.kill()
            p.wait()


def test_more_engines_than_cores_is_refused():
    with pytest.raises(SystemExit, match="2 engine-core processes but 1 cores"):
        pin_engine.plan({1: "VLLM::EngineCor", 2: "VLLM::EngineCor"}, [3], {})
