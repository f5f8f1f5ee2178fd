"""A scenario's [servers] and [[step]]s: validated at load, the servers started (serve-bench's
servers, through fleet.running) before the runs and stopped after them, on a spent budget and on
Ctrl-C/SIGTERM of `attnbench run`, against the stand-in `vllm serve` (tests/serving/fake_vllm.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.errors import UserError
from attnbench.records import record
from attnbench.scenarios import runner, spec
from attnbench.serving import fleet

sys.path.insert(0, str(Path(__file__).parents[1] / "serving"))
from test_server import all_pids, alive, fake_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
START_S = 0.3  # the stand-in's start; a scenario's servers plan no memory, so none is given

# a step that fetches a server's /models into its own directory
FETCH = ["python3", "-c", "import sys, urllib.request; open(sys.argv[2] + '/models.json', 'wb')"
         ".write(urllib.request.urlopen(sys.argv[1] + '/models').read())"]
# a step that writes its pid once it runs, then sleeps until it is stopped
SLEEP = ["python3", "-c", "import os, sys, time; open(sys.argv[1] + '/running', 'w').write(str(os.getpid())); time.sleep(600)"]


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    monkeypatch.delenv(runner.PREFIX_ENV, raising=False)  # the real attnbench runs the attnbench steps
    for k, v in fake_env(tmp_path, start_s=START_S, memory_gib=None).items():
        monkeypatch.setenv(k, v)
    return tmp_path / "pids"


def gone(pid_list: list[int], timeout_s: float = 30.0) -> bool:
    """Every process gone, waiting for that state (not a fixed time)."""
    end = time.monotonic() + timeout_s
    while any(alive(p) for p in pid_list) and time.monotonic() < end:
        time.sleep(0.1)
    return not any(alive(p) for p in pid_list)


def toml_list(words: list[str]) -> str:
    return json.dumps(words)  # a JSON list of strings is a TOML array


def scenario(tmp_path, body: str, head: str = "", name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'name = "srv"\n{head}\n[servers]\nmodel = "m"\n'
                    'api1 = { backend = "fa3", serve_args = ["--api-server-count=1"] }\n'
                    'api4 = { backend = "fa3", serve_args = ["--api-server-count=4"] }\n' + body)
    return path


# ---- load ------------------------------------------------------------------------------------------

def test_servers_and_steps_load_into_runs_that_keep_their_placeholders(tmp_path):
    study = spec.load(scenario(tmp_path, f'[[step]]\nid = "models"\ncommand = {toml_list([*FETCH, "{endpoint:api1}", "{result_dir}"])}\n'
                                         '[[step]]\nargs = ["serve-bench", "--endpoint", "{endpoint:api4}"]\ntimeout_s = 30\n'))
    plan = study.servers
    assert [(s.label, s.backend, s.serve_args) for s in plan.servers] == [
        ("api1", "fa3", ("--api-server-count=1",)), ("api4", "fa3", ("--api-server-count=4",))]
    assert plan.model == "m" and plan.memory_share is None
    assert plan.share() == round(fleet.USABLE / 2, 3) == 0.45  # fleet's split for two side by side
    models, bench = study.runs
    assert (models.id, models.gpus, models.external) == ("models", 0, True)
    assert models.argv("/r")[-2:] == ["{endpoint:api1}", "/r"]  # a command gets no --result-dir, {result_dir} is its own
    assert (bench.id, bench.gpus, bench.external, bench.timeout_s) == ("step-2", 0, False, 30)
    assert bench.argv("/r") == ["serve-bench", "--endpoint", "{endpoint:api4}", "--result-dir", "/r"]


def test_serve_endpoints_may_name_a_declared_server(tmp_path):
    study = spec.load(scenario(tmp_path, '[serve]\ninput = 8\noutput = 2\nendpoints = { fast = "{endpoint:api4}" }\n'))
    [run] = study.runs
    assert run.gpus == 0 and run.args[:5] == ("serve-bench", "--endpoint", "{endpoint:api4}", "--name", "fast")


@pytest.mark.parametrize("body, message", [
    ('[[step]]\nargs = ["serve-bench", "--endpoint", "{endpoint:api2}"]\n',
     "step-1 names {endpoint:api2}, but [servers] declares api1, api4"),
    ('[serve]\ninput = 8\noutput = 2\nendpoints = { x = "{endpoint:fa3}" }\n', "serve-x names {endpoint:fa3}, but"),
    ('[serve]\nbackends = ["fa3"]\ninput = 8\noutput = 2\n',
     "serve-fa3 (serve-bench) would start its own vLLM server beside the 2 of [servers]"),
    ('[[step]]\nargs = ["gpqa", "--backends", "fa3"]\n', "step-1 (gpqa) would start its own vLLM server"),
    ('memory_share = 0.6\n', "memory_share = 0.6 for 2 servers side by side is 1.20 of the GPU's memory"),
    ('api5 = "fa3"\n', "[servers].api5 must be a table"),
    ('api5 = { backend = "fa9" }\n', "[servers].api5.backend"),
    ('api5 = { backend = "fa3", args = ["x"] }\n', "unknown key 'args' in [servers].api5"),
    ('[[step]]\nargs = ["x"]\ncommand = ["y"]\n', "[[step]] 1 needs args = [...]"),
    ('[[step]]\nid = "a/b"\nargs = ["x"]\n', "[[step]] 1 id 'a/b' must be letters"),
    ('[[step]]\nid = "x"\nargs = ["a"]\n[[step]]\nid = "x"\nargs = ["b"]\n', "two runs share an id (x)"),
])
def test_bad_server_use_is_refused_at_load_in_one_line(tmp_path, body, message):
    if body.startswith(("memory_share", "api5")):  # keys of [servers] itself
        path = scenario(tmp_path, body + '[[step]]\nargs = ["x"]\n')
    else:
        path = scenario(tmp_path, body)
    with pytest.raises(UserError) as e:
        spec.load(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_placeholder_without_servers_is_refused(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[step]]\ncommand = ["curl", "{endpoint:fa3}/models"]\n')
    with pytest.raises(UserError, match=r"names \{endpoint:fa3\}, but the scenario has no \[servers\]"):
        spec.load(path)


def test_the_frontend_study_is_the_device_jobs_part_one():
    """scenarios/h200-frontend.toml: the servers and commands scripts/device/frontend.sh ran with
    with_servers.py, and the job now runs the scenario."""
    study = spec.load(ROOT / "scenarios/h200-frontend.toml")
    plan = study.servers
    assert {s.label: (s.backend, s.serve_args) for s in plan.servers} == {
        "fa3-api1": ("fa3", ("--api-server-count=1",)), "fa3-api4": ("fa3", ("--api-server-count=4",))}
    assert plan.share() == 0.45 and plan.model == "qwen3-0.6b"
    assert [r.id for r in study.runs] == ["warm-fa3-api4", "fa3-api4", "warm-fa3-api1", "fa3-api1"]
    warm4, peers4, _, peers1 = study.runs
    assert warm4.args[:3] == ("serve-bench", "--endpoint", "{endpoint:fa3-api4}") and "--warmup" in warm4.args
    assert peers4.external and peers4.args[1] == "benchmarks/peer_clients.py"
    assert "vllm,attnbench,attnbench-text" in peers4.args and "vllm,attnbench" in peers1.args
    assert "{endpoint:fa3-api1}" in peers1.args and "{model_path}" in peers1.args
    job = (ROOT / "scripts/device/frontend.sh").read_text()
    assert "attnbench run scenarios/h200-frontend.toml" in job and "with_servers.py" not in job


# ---- running -----------------------------------------------------------------------------------------

def test_two_servers_serve_two_steps_end_to_end_then_stop(fake_vllm, tmp_path):
    # --keep-flagged: on a loaded machine the one short pass may be flagged client_saturated, which
    # is serve-bench's to say and not what this test is about
    path = scenario(tmp_path, f'[[step]]\nid = "models"\ncommand = {toml_list([*FETCH, "{endpoint:api1}", "{result_dir}"])}\n'
                              '[[step]]\nid = "bench"\nargs = ["serve-bench", "--endpoint", "{endpoint:api4}", "--input", "16", '
                              '"--output", "4", "--num-prompts", "8", "--vocab-size", "500", "--repeats", "1", '
                              '"--keep-flagged"]\n')
    study = spec.load(path)
    out = tmp_path / "out"
    lines = []
    r = runner.Runner(study, study.expand(), out, say=lines.append)
    outcomes = r.run_local()
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.error for o in outcomes]
    assert json.loads((out / "models/rep0/models.json").read_text())["data"][0]["id"] == "m"
    [rec] = [x for x in record.load(out / "bench/rep0") if x.kind == "serve"]
    assert rec.metrics["completed"] == 8
    manifest = json.loads((out / "manifest.json").read_text())
    urls = {s["label"]: s["url"] for s in manifest["servers"]}
    assert [s["status"] for s in manifest["servers"]] == ["up", "up"] and urls["api1"] != urls["api4"]
    # the manifest keeps the placeholder (a port is no part of the command); the run's log has the URL
    assert "{endpoint:api4}" in manifest["runs"][1]["command"]
    assert f"--endpoint {urls['api4']}" in (out / "bench/rep0/run.log").read_text().splitlines()[0]
    logs = {s: (out / "servers" / f"{s}.log").read_text() for s in ("api1", "api4")}
    assert "--api-server-count=4" in logs["api4"] and "--api-server-count=4" not in logs["api1"]
    assert "--gpu-memory-utilization 0.45" in logs["api1"]
    started = all_pids(fake_vllm)
    assert len(started) == 4 and gone(started, 0)  # two servers and their engines, gone when run_local returned
    assert lines[-1] == "stopping the servers"

    # --resume with every run ok starts no server
    again = runner.Runner(study, study.expand(), out, resume=True)
    assert len(again.done) == 2 and [o.status for o in again.run_local()] == ["ok", "ok"]
    assert all_pids(fake_vllm) == started


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to split")
def test_the_steps_run_on_the_client_cores_off_the_servers(fake_vllm, tmp_path, monkeypatch):
    """As serve-bench places its own client: a step against the scenario's servers (a load
    generator, vLLM's client) shares no core with them."""
    from attnbench.serving import fleet

    server_core, client_core = sorted(os.sched_getaffinity(0))[:2]
    monkeypatch.setattr(fleet, "cpu_split", lambda n_cpus=None: ((server_core,), (client_core,)))
    where = ["python3", "-c", "import os, sys; open(sys.argv[1] + '/cpus', 'w').write(str(sorted(os.sched_getaffinity(0))))",
             "{result_dir}"]
    path = scenario(tmp_path, f'[[step]]\nid = "where"\ncommand = {toml_list(where)}\n')
    study = spec.load(path)
    out = tmp_path / "out"
    outcomes = runner.Runner(study, study.expand(), out).run_local()
    assert [o.status for o in outcomes] == ["ok"], [o.error for o in outcomes]
    assert (out / "where/rep0/cpus").read_text() == str([client_core])


def test_a_step_naming_a_server_that_did_not_come_up_fails_the_others_run(fake_vllm, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE_FLASHINFER", "crash")
    path = tmp_path / "s.toml"
    path.write_text(f'[servers]\nmodel = "m"\nok = {{ backend = "fa3" }}\nbad = {{ backend = "flashinfer" }}\n'
                    f'[[step]]\nid = "bad"\ncommand = {toml_list([*FETCH, "{endpoint:bad}", "{result_dir}"])}\n'
                    f'[[step]]\nid = "ok"\ncommand = {toml_list([*FETCH, "{endpoint:ok}", "{result_dir}"])}\n')
    study = spec.load(path)
    bad, ok = runner.Runner(study, study.expand(), tmp_path / "out").run_local()
    assert ok.status == "ok" and bad.status == "failed" and bad.exit_code is None
    assert bad.error.startswith("server bad did not come up: bad: vllm serve exited with code 3")
    assert "not run: server bad did not come up" in (tmp_path / "out/bad/rep0/run.log").read_text()
    servers = json.loads((tmp_path / "out/manifest.json").read_text())["servers"]
    assert [(s["label"], s["status"]) for s in servers] == [("ok", "up"), ("bad", "failed")]
    assert gone(all_pids(fake_vllm), 0)


def test_a_spent_budget_stops_the_step_and_the_servers(fake_vllm, tmp_path):
    path = scenario(tmp_path, f'[[step]]\nid = "sleep"\ncommand = {toml_list([*SLEEP, "{result_dir}"])}\n'
                              f'[[step]]\nid = "later"\ncommand = {toml_list([*FETCH, "{endpoint:api1}", "{result_dir}"])}\n',
                    head="budget_s = 8")
    study = spec.load(path)
    sleep, later = runner.Runner(study, study.expand(), tmp_path / "out", grace_s=5).run_local()
    assert (tmp_path / "out/sleep/rep0/running").exists()  # it ran, and was stopped
    assert sleep.status == "partial" and "the study's budget (8 s) was spent" in sleep.error
    assert later.status == "skipped"
    assert len(all_pids(fake_vllm)) == 4 and gone(all_pids(fake_vllm), 0)


def test_dry_run_lists_the_servers_and_ray_is_refused(tmp_path):
    path = scenario(tmp_path, '[[step]]\nargs = ["serve-bench", "--endpoint", "{endpoint:api4}"]\n')
    res = CliRunner().invoke(app, ["run", str(path), "--dry-run", "--result-dir", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    first, second, step = res.stdout.splitlines()
    assert first == "[server api1: fa3, m, 0.45 of the GPU, --api-server-count=1]"
    assert second.startswith("[server api4: ") and step.startswith("[0 GPU] ") and "'{endpoint:api4}'" in step
    res = CliRunner().invoke(app, ["run", str(path), "--ray"])
    assert res.exit_code != 0 and "a scenario with [servers] runs here" in str(res.exception)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_terminating_attnbench_run_stops_the_step_and_every_server(tmp_path, sig):
    """As `timeout` (SIGTERM) or Ctrl-C (SIGINT) ends `attnbench run` mid-step: the step's process
    group and both servers with their engines are gone once it exits."""
    path = scenario(tmp_path, f'[[step]]\nid = "sleep"\ncommand = {toml_list([*SLEEP, "{result_dir}"])}\n')
    env = {**os.environ, **fake_env(tmp_path, start_s=START_S, memory_gib=None),
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop(runner.PREFIX_ENV, None)
    out = tmp_path / "out"
    proc = subprocess.Popen([PY, "-m", "attnbench", "run", str(path), "--result-dir", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 120
        running = out / "sleep/rep0/running"
        while not (running.exists() and running.read_text()) and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        assert proc.poll() is None and running.read_text(), "the step did not start"
        step = int(running.read_text())
        servers = all_pids(tmp_path / "pids")
        assert len(servers) == 4 and all(alive(p) for p in servers)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, output
    assert ("SIGTERM" if sig == signal.SIGTERM else "interrupted") + ": stopping the servers" in output, output
    assert gone([step, *servers]), output


def test_a_step_reads_an_earlier_runs_directory_of_the_same_repeat(tmp_path):
    """{run_dir:ID}: how explain reads the serve run before it (scenarios/seed-serve.toml)."""
    write = ["python3", "-c", "import sys; open(sys.argv[1] + '/out.txt', 'w').write('made')", "{result_dir}"]
    read = ["python3", "-c", "import sys; open(sys.argv[2] + '/seen.txt', 'w').write(open(sys.argv[1] + '/out.txt').read())",
            "{run_dir:make}", "{result_dir}"]
    study = tmp_path / "s.toml"
    study.write_text(f"repeats = 2\n[[step]]\nid = 'make'\ncommand = {json.dumps(write)}\n"
                     f"[[step]]\nid = 'use'\ncommand = {json.dumps(read)}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(study), "--result-dir", str(out)])
    assert res.exit_code == 0, res.output
    assert [(out / "use" / f"rep{k}" / "seen.txt").read_text() for k in (0, 1)] == ["made", "made"]
    for body, message in ((f"[[step]]\nid = 'use'\ncommand = {json.dumps(read)}\n", "no run before it has that id"),
                          (f"[[step]]\nid = 'use'\ncommand = {json.dumps(read)}\n[[step]]\nid = 'make'\n"
                           f"command = {json.dumps(write)}\n", "earlier: none")):
        study.write_text(body)
        with pytest.raises(UserError, match=message):
            spec.load(study)
