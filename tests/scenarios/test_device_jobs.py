"""The device jobs around `attnbench run` (scripts/device/): follow_logs.py streams the runs' logs
into the job's log while they run, and the jobs run the scenarios the results were made with."""

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEVICE = ROOT / "scripts" / "device"
FOLLOW = DEVICE / "follow_logs.py"

# a stand-in run: progress bars, then a line, then waits for `go` before its last lines
RUN = """
import sys, time
from pathlib import Path
root = Path(sys.argv[1])
log = root / "serve" / "rep0" / "run.log"
log.parent.mkdir(parents=True)
with open(log, "w") as f:
    f.write("$ serve-bench ...\\n[fa3] run 1/3  10%\\r[fa3] run 1/3  90%\\r"); f.flush()
    f.write("pass 1 done\\nhalf a line"); f.flush()
    while not (root / "go").exists():
        time.sleep(0.05)
    f.write(", ended\\n\\n[fa3] run 2/3  50%\\rlast words")
"""


def read_until(stream, wanted: str, timeout_s: float = 60.0) -> list[str]:
    """Lines from `stream` up to the one equal to `wanted` (a state to wait for, with a generous bound)."""
    seen, end = [], time.monotonic() + timeout_s
    while time.monotonic() < end:
        line = stream.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if seen[-1] == wanted:
            return seen
    raise AssertionError(f"never printed {wanted!r}; printed {seen}")


def test_follow_logs_prints_each_line_while_the_run_goes_and_the_rest_when_it_ends(tmp_path):
    run = subprocess.Popen([sys.executable, "-c", RUN, str(tmp_path)])
    follow = subprocess.Popen([sys.executable, str(FOLLOW), str(tmp_path), "--while", str(run.pid),
                               "--drop", r"^\s*$|^\[", "--every", "0.1"], stdout=subprocess.PIPE, text=True)
    try:
        # while the run still waits: its lines so far, progress bars dropped, not the unfinished line
        assert read_until(follow.stdout, "pass 1 done") == ["$ serve-bench ...", "pass 1 done"]
        assert run.poll() is None
        (tmp_path / "go").touch()
        assert run.wait(timeout=60) == 0
        # the run has exited (a zombie until reaped: the follower does not wait for that), the rest comes
        rest, _ = follow.communicate(timeout=60)
    finally:
        for p in (run, follow):
            if p.poll() is None:
                p.kill()
    assert rest.splitlines() == ["half a line, ended", "last words"] and follow.returncode == 0


def test_follow_logs_starts_again_on_a_log_that_was_set_aside(tmp_path, capsys):
    """--resume moves an earlier attempt's run.log aside: the new one is read from its start."""
    spec = importlib.util.spec_from_file_location("follow_logs", FOLLOW)
    follow_logs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(follow_logs)
    log = tmp_path / "serve" / "rep0" / "run.log"
    log.parent.mkdir(parents=True)
    log.write_text("first attempt, a long line\n")
    follower = follow_logs.Follower(tmp_path, None)
    follower.look()
    assert capsys.readouterr().out == "first attempt, a long line\n"
    log.write_text("again\n")
    follower.look(final=True)
    assert capsys.readouterr().out == "again\n"


@pytest.mark.parametrize("job", sorted(p.name for p in DEVICE.glob("*.sh")))
def test_every_device_script_parses(job):
    p = subprocess.run(["bash", "-n", str(DEVICE / job)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("job, scenario", [("serve-study.sh", "seed-serve"), ("accuracy.sh", "h200-accuracy"),
                                           ("frontend.sh", "h200-frontend")])
def test_the_jobs_run_their_scenarios(job, scenario):
    text = (DEVICE / job).read_text()
    assert f"python3 -m attnbench run scenarios/{scenario}.toml" in text
    assert (ROOT / "scenarios" / f"{scenario}.toml").is_file()
    assert "with_servers" not in text and not (DEVICE / "with_servers.py").exists()
