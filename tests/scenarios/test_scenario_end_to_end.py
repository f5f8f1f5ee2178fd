"""A scenario against scripted OpenAI-compatible servers, run by the real `python -m attnbench`:
scenario -> runs -> records -> `attnbench compare`, the loop a CI job goes through."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.records import record
from attnbench.scenarios import runner, spec
from attnbench.scenarios.cli import INCOMPLETE
from attnbench.serving.scripted_server import Reply, Script, ScriptedServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def servers():
    with ScriptedServer(Script(ttft_s=0.02, itl_s=0.002, model="tiny")) as a, \
         ScriptedServer(Script(ttft_s=0.06, itl_s=0.002, model="tiny")) as b:
        yield a, b


def endpoint_scenario(tmp_path, a, b, repeats=1):
    path = tmp_path / "e2e.toml"
    path.write_text(f'name = "e2e"\nrepeats = {repeats}\n[serve]\ninput = [16]\noutput = [4]\nnum_prompts = 8\n'
                    f'vocab_size = 500\nendpoints = {{ quick = "http://127.0.0.1:{a.port}", slow = "{b.base_url}" }}\n')
    return spec.load(path)


def test_endpoint_scenario_runs_and_compares(servers, tmp_path, monkeypatch):
    monkeypatch.delenv(runner.PREFIX_ENV, raising=False)
    study = endpoint_scenario(tmp_path, *servers)
    assert [(r.id, r.gpus) for r in study.runs] == [("serve-quick", 0), ("serve-slow", 0)]
    outcomes = runner.Runner(study, study.expand(), tmp_path / "out").run_local()
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.error for o in outcomes]
    recs = {r.backend: r for r in record.load(tmp_path / "out") if r.kind == "serve"}  # a measured pass each
    assert set(recs) == {"quick", "slow"} and recs["quick"].metrics["completed"] == 8
    quick, slow = recs["quick"].metrics["median_ttft_ms"], recs["slow"].metrics["median_ttft_ms"]
    # each record measured its own server: no TTFT below that server's scripted 20 / 60 ms (a loaded
    # machine only adds to them), and the slow one is the slower
    assert quick >= 20 and slow >= 60 and slow > quick, (quick, slow)
    assert json.loads((tmp_path / "out/manifest.json").read_text())["counts"]["ok"] == 2

    res = CliRunner().invoke(app, ["compare", str(tmp_path / "out"), str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "no regression over 2 matched record group(s)" in res.output


def test_cli_run_with_endpoints_in_dry_run_names_no_gpu(servers, tmp_path):
    study = endpoint_scenario(tmp_path, *servers)
    res = CliRunner().invoke(app, ["run", str(study.path), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "[0 GPU]" in res.stdout and shlex.quote(servers[1].base_url) in res.stdout


class StallsAfter(Script):
    """Answers the first `answered` measured requests, then holds every later one for an hour: a
    pass that cannot end by itself, whatever the machine's pace."""

    def __init__(self, answered: int, **kw):
        super().__init__(**kw)
        self.answered, self.seen = answered, 0

    def reply(self, path, body, n):
        if not body.get("ignore_eos"):  # serve-bench's probes
            return None
        self.seen += 1
        return None if self.seen <= self.answered else Reply([" tok"] * body["max_tokens"], delay_s=3600)


def test_a_spent_budget_stops_serve_bench_which_saves_the_pass_in_flight_labelled(tmp_path):
    """As the device job runs it, `attnbench run` in the background of a bash script (which starts
    it with SIGINT ignored): the study's budget stops the real serve-bench in its only pass, and the
    pass record keeps the requests that finished and says it was interrupted; the run is partial."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop(runner.PREFIX_ENV, None)
    out = tmp_path / "out"
    with ScriptedServer(StallsAfter(2, ttft_s=0.01, itl_s=0.002, model="tiny")) as s:
        path = tmp_path / "stall.toml"
        path.write_text(f'name = "stall"\nbudget_s = 30\n[serve]\ninput = 8\noutput = 4\nnum_prompts = 4\nrepeats = 1\n'
                        f'warmup = 0\nvocab_size = 500\nargs = ["--client-workers", "2"]\n'
                        f'endpoints = {{ scripted = "{s.base_url}" }}\n')
        job = f"{shlex.quote(sys.executable)} -m attnbench run {shlex.quote(str(path))} --result-dir {shlex.quote(str(out))} & wait $!"
        p = subprocess.run(["bash", "-c", job], env=env, capture_output=True, text=True, timeout=300)
        stalled = s.script.seen
    run_dir = out / "serve-scripted/rep0"
    log = (run_dir / runner.LOG_NAME).read_text()
    assert stalled == 4, log  # the budget ran out in the pass, not before it (a bound of 30 s for serve-bench's start)
    assert p.returncode == INCOMPLETE, p.stderr
    assert "serve-scripted/rep0: PARTIAL (stopped after" in p.stderr
    [o] = json.loads((out / "manifest.json").read_text())["runs"]
    assert o["status"] == "partial" and "the study's budget (30 s) was spent" in o["error"]
    [rec] = [x for x in record.load(run_dir) if x.kind == "serve"]
    assert rec.status == "failed" and "interrupted" in rec.error and "completed requests kept" in rec.error, log
    assert rec.metrics["completed"] == 2
    assert (run_dir / "summary.md").is_file() and "partial results (if any) were saved" in log
