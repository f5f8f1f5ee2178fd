"""The device jobs around `attnbench run` (scripts/device/): follow_logs.py streams the runs' logs
into the job's log while they run, and the jobs run the scenarios the results were made with."""

import importlib.util
import json
import os
import re
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
                                           ("frontend.sh", "h200-frontend"), ("microbench.sh", "h200-microbench"),
                                           ("noise.sh", "h200-noise"), ("agreement.sh", "h200-agreement"),
                                           ("flashinfer-pair.sh", "h200-flashinfer-pair")])
def test_the_jobs_run_their_scenarios(job, scenario):
    text = (DEVICE / job).read_text()
    assert f"python3 -m attnbench run scenarios/{scenario}.toml" in text
    assert (ROOT / "scenarios" / f"{scenario}.toml").is_file()
    assert "with_servers" not in text and not (DEVICE / "with_servers.py").exists()


JOB_SCENARIOS = ["seed-serve", "h200-accuracy", "h200-agreement", "h200-frontend", "h200-microbench", "h200-noise",
                 "h200-flashinfer-pair",
                 *(f"h200-kernels-{part}" for part in ("sanitize", "sweep", "grid"))]


@pytest.mark.parametrize("name", JOB_SCENARIOS)
def test_the_scenarios_the_jobs_run_name_only_files_and_modules_that_exist(name):
    """They run unattended on the GPU: a typo in a path costs a session."""
    from attnbench.scenarios import spec

    for run in spec.load(ROOT / "scenarios" / f"{name}.toml").runs:
        words = list(run.args)
        for w in words:
            if re.fullmatch(r"(?:tests|scenarios|scripts|benchmarks)/[\w/.-]+\.(?:py|toml|sh)", w):
                assert (ROOT / w).is_file(), f"{run.id}: {w}"
        for i, w in enumerate(words[:-1]):
            if w == "-m" and words[i + 1].startswith("attnbench"):
                module = ROOT / words[i + 1].replace(".", "/")
                assert module.with_suffix(".py").is_file() or (module / "__main__.py").is_file(), f"{run.id}: {words[i + 1]}"


# ---- the jobs' own logic, with stand-ins for python3 (and bash) that note how they were called ----

def stand_ins(tmp_path, *names: str) -> tuple[dict, Path]:
    """A PATH where `python3` (and each of `names`) only appends its arguments and a few of its
    environment variables to calls.jsonl; nvidia-smi does nothing."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    for name in ("python3", *names):
        (bin_dir / name).write_text(
            f"#!{sys.executable}\nimport json, os, sys\nwith open({str(calls)!r}, 'a') as f:\n"
            f"    f.write(json.dumps([{name!r}, *sys.argv[1:], os.environ.get('KERNELS_PARTS'), "
            f"os.environ.get('KERNELS_BUDGET_S')]) + '\\n')\n")
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    for p in bin_dir.iterdir():
        p.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, calls


def job(script: str, env: dict, calls: Path, *args: str) -> tuple[str, list[list]]:
    """The job's output, and the calls it made after env.sh's (pip install, the import check)."""
    p = subprocess.run(["/bin/bash", str(DEVICE / script), *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = calls.read_text().splitlines() if calls.exists() else []
    return p.stdout, [json.loads(line)[:-2] for line in lines if '"-m", "pip"' not in line and '"python3", "-"' not in line]


def test_kernels_runs_its_parts_in_order_each_with_the_budget_left(tmp_path):
    env, calls = stand_ins(tmp_path)
    out, ran = job("kernels.sh", {**env, "KERNELS_PARTS": "grid sanitize bogus", "KERNELS_BUDGET_S": "300"}, calls)
    assert "unknown part bogus" in out
    studies = [c for c in ran if c[1:3] == ["-m", "attnbench"]]
    assert [c[:8] for c in studies] == [
        ["python3", "-m", "attnbench", "run", f"scenarios/h200-kernels-{part}.toml", "--result-dir", f"/tmp/res/{folder}",
         "--budget-s"] for part, folder in (("sanitize", "sanitizer"), ("grid", "microbench-kernels"))]
    assert 200 <= float(studies[1][8]) <= float(studies[0][8]) <= 300  # what is left of KERNELS_BUDGET_S
    # each study in the background (so its stand-in may note itself after its follower), its logs followed
    assert sorted(c[2] for c in ran if c[1] == "scripts/device/follow_logs.py") == ["/tmp/res/microbench-kernels",
                                                                                   "/tmp/res/sanitizer"]


def test_kernels_skips_a_part_with_under_20_s_left(tmp_path):
    env, calls = stand_ins(tmp_path)
    out, ran = job("kernels.sh", {**env, "KERNELS_PARTS": "sanitize", "KERNELS_BUDGET_S": "15"}, calls)
    assert "budget spent, skipped: sanitize" in out and not [c for c in ran if "attnbench" in c]


def test_microbench_gives_its_scenario_the_budget_env_sh_left(tmp_path):
    env, calls = stand_ins(tmp_path)
    _, ran = job("microbench.sh", {**env, "MICROBENCH_BUDGET_S": "530"}, calls, str(tmp_path / "mb"))
    [study] = [c for c in ran if c[1:3] == ["-m", "attnbench"]]
    assert study[3:8] == ["run", "scenarios/h200-microbench.toml", "--result-dir", str(tmp_path / "mb"), "--budget-s"]
    assert 400 <= float(study[8]) <= 530


@pytest.mark.parametrize("job, budget, then", [("check-then-study.sh", "200", "serve-study.sh"),
                                               ("check-then-noise.sh", "330", "noise.sh")])
def test_a_check_then_job_checks_correctness_within_its_budget_then_runs_its_study(tmp_path, job, budget, then):
    """check-then-study: a small budget (the tests, no sanitizers); check-then-noise: the sanitizers too."""
    env, calls = stand_ins(tmp_path, "bash")  # the jobs it calls are noted, not run
    env.pop("KERNELS_BUDGET_S", None)
    p = subprocess.run(["/bin/bash", str(DEVICE / job)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert [json.loads(line) for line in calls.read_text().splitlines()] == [
        ["bash", "scripts/device/kernels.sh", "sanitize", budget], ["bash", f"scripts/device/{then}", None, None]]


def test_probe_only_runs_the_wide_gqa_probe_at_the_heads_asked_into_its_usual_folder(tmp_path):
    """For the minutes a lease has left after a study that went back early."""
    bin_dir, noted = tmp_path / "bin", tmp_path / "noted.json"
    bin_dir.mkdir()
    (bin_dir / "bash").write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                                  f"json.dump([sys.argv[1:], os.environ.get('HEADS'), os.environ.get('OUT')], "
                                  f"open({str(noted)!r}, 'w'))\n")
    (bin_dir / "bash").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PROBE_HEADS": "64/8/64"}
    p = subprocess.run(["/bin/bash", str(DEVICE / "probe-only.sh")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(noted.read_text()) == [["scripts/device/wide-gqa-probe.sh"], "64/8/64", "/tmp/res/wide-gqa"]


WAIT = DEVICE / "wait.sh"


def test_wait_on_a_fresh_machine_says_the_job_is_gone_at_once_instead_of_waiting_out_its_limit(tmp_path):
    began = time.monotonic()
    done = subprocess.run(["bash", str(WAIT), "300"], env={**os.environ, "JOB_DIR": str(tmp_path), "OUT": ""},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stdout.startswith("job: none on this machine")
    assert time.monotonic() - began < 60  # not the 300 s it was given


def test_wait_on_a_finished_job_reports_its_exit_and_brings_back_its_log(tmp_path):
    jobs, out = tmp_path / "jobs", tmp_path / "out"
    jobs.mkdir(), out.mkdir()
    (jobs / "job.log").write_text("=== step one\n=== done\n")
    (jobs / "job.done").write_text("0\n")
    done = subprocess.run(["bash", str(WAIT), "300"], env={**os.environ, "JOB_DIR": str(jobs), "OUT": str(out)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stdout.splitlines()[:3] == ["job: done, exit 0", "=== step one", "=== done"]
    assert (out / "job.log").read_text() == "=== step one\n=== done\n"
    assert (out / "results.tgz").exists()


def test_a_job_on_a_machine_without_the_staged_packages_stops_before_its_first_step(tmp_path):
    """A call that finds a fresh machine (1 of 8 parts received) must not spend minutes on steps
    that cannot import vLLM or CuTe DSL: env.sh's import check ends the job."""
    env, calls = stand_ins(tmp_path)
    python3 = tmp_path / "bin" / "python3"
    python3.write_text(python3.read_text().replace("import json, os, sys\n",
                                                   "import json, os, sys\nif sys.argv[1:] == ['-']: sys.exit(3)\n", 1))
    p = subprocess.run(["/bin/bash", str(DEVICE / "wide-gqa-probe.sh")], cwd=ROOT, capture_output=True, text=True,
                       env={**env, "OUT": str(tmp_path / "out")}, timeout=60)
    assert p.returncode == 3 and "staged packages are missing" in p.stdout
    ran = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    assert not [c for c in ran if "pytest" in c or "attnbench.microbench.fa4_sweep" in c]
