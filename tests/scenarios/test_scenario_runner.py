"""The runner with a stand-in attnbench (fake_attnbench.py through $ATTNBENCH_RUN_PREFIX):
runs one after another, failures stay with their run, manifest.json says what happened."""

import json
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.results import record
from attnbench.scenarios import runner, spec

FAKE = Path(__file__).with_name("fake_attnbench.py")
PREFIX = [sys.executable, str(FAKE)]


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('name = "study"\nbackends = ["fa2", "fa3", "fa4"]\nrepeats = 2\n[serve]\ninput = 10\noutput = 2\n')
    return spec.load(path)


def test_runs_sequentially_and_isolates_failures(study, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT_FAIL", "fa2")
    monkeypatch.setenv("FAKE_RECORD_FAIL", "fa4")
    seen = []
    r = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX, on_done=lambda o: seen.append(o.result_dir))
    outcomes = r.run_local()
    assert seen == ["serve-fa2/rep0", "serve-fa3/rep0", "serve-fa4/rep0", "serve-fa2/rep1", "serve-fa3/rep1", "serve-fa4/rep1"]
    by = {o.result_dir: o for o in outcomes}
    assert by["serve-fa3/rep1"].status == "ok" and by["serve-fa3/rep1"].exit_code == 0
    assert by["serve-fa2/rep0"].status == "failed" and by["serve-fa2/rep0"].exit_code == 3
    assert "server would not start" in by["serve-fa2/rep0"].error
    assert by["serve-fa4/rep0"].status == "failed" and "engine died" in by["serve-fa4/rep0"].error  # exit 0, failed record
    # every run left its records and its log in its own directory
    recs = record.load(tmp_path / "out")
    assert sorted((r.backend, r.status) for r in recs) == [("fa3", "ok")] * 2 + [("fa4", "failed")] * 2
    assert "fake attnbench: serve-bench --backends fa3" in (tmp_path / "out/serve-fa3/rep0/run.log").read_text()

    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["scenario"] == "study" and manifest["mode"] == "local"
    assert manifest["counts"] == {"ok": 2, "failed": 4, "pending": 0}
    first = manifest["runs"][0]
    assert first["command"] == shlex.join([*PREFIX, "serve-bench", "--backends", "fa2", "--input", "10", "--output", "2",
                                           "--result-dir", str(tmp_path / "out/serve-fa2/rep0")])
    assert first["duration_s"] >= 0 and first["result_dir"] == "serve-fa2/rep0" and first["gpus"] == 1
    assert "git_sha" in manifest["provenance"]


def test_a_missing_program_fails_its_run_only(study, tmp_path):
    r = runner.Runner(study, study.expand(1)[:1], tmp_path / "out", prefix=[str(tmp_path / "no-such-program")])
    [o] = r.run_local()
    assert o.status == "failed" and o.exit_code == 127 and "cannot start" in o.error


def test_timeout_stops_a_run(study, tmp_path):
    slow = [sys.executable, "-c", "import time; time.sleep(30)"]
    r = runner.Runner(study, study.expand(1)[:1], tmp_path / "out", prefix=slow, timeout_s=0.5)
    [o] = r.run_local()
    assert o.status == "failed" and o.exit_code == 124 and "timed out" in o.error


def test_cli_run_exit_code_and_dry_run(study, tmp_path, monkeypatch):
    monkeypatch.setenv(runner.PREFIX_ENV, shlex.join(PREFIX))
    cli = CliRunner()
    res = cli.invoke(app, ["run", str(study.path), "--dry-run", "--result-dir", str(tmp_path / "dry"), "--repeats", "1"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("serve-bench --backends") == 3 and not (tmp_path / "dry").exists()

    res = cli.invoke(app, ["run", str(study.path), "--backends", "fa3", "--result-dir", str(tmp_path / "ok")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "ok/manifest.json").read_text())["counts"]["ok"] == 2

    monkeypatch.setenv("FAKE_EXIT_FAIL", "fa2")
    res = cli.invoke(app, ["run", str(study.path), "--repeats", "1", "--result-dir", str(tmp_path / "bad")])
    assert res.exit_code == 1
    assert json.loads((tmp_path / "bad/manifest.json").read_text())["counts"] == {"ok": 2, "failed": 1, "pending": 0}


def test_resume_reruns_only_what_did_not_finish_ok(study, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_EXIT_FAIL", "fa2")
    out = tmp_path / "out"
    runner.Runner(study, study.expand(1), out, prefix=PREFIX).run_local()
    monkeypatch.delenv("FAKE_EXIT_FAIL")
    started = []
    r = runner.Runner(study, study.expand(1), out, prefix=PREFIX, resume=True, on_start=lambda o: started.append(o.id))
    assert len(r.done) == 2
    outcomes = r.run_local()
    assert started == ["serve-fa2"] and all(o.status == "ok" for o in outcomes)
    assert json.loads((out / "manifest.json").read_text())["counts"] == {"ok": 3, "failed": 0, "pending": 0}


def test_cli_resume_needs_the_result_dir(study):
    res = CliRunner().invoke(app, ["run", str(study.path), "--resume"])
    assert res.exit_code != 0 and "--resume continues an earlier run" in str(res.exception or res.output)


@pytest.mark.parametrize("log, cause", [
    ("$ cmd\nstarting\nattnbench: error: --input must be >= 1 (got -5)\nattnbench: results in /r\n",
     "attnbench: error: --input must be >= 1 (got -5)"),
    ("$ cmd\nTraceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    boom()\n"
     "RuntimeError: CUDA out of memory\nattnbench: results in /r\n", "RuntimeError: CUDA out of memory"),
    ("$ cmd\nfa3: server would not start\nattnbench: results in /r\n", "fa3: server would not start"),
    ("$ cmd\n", None),
])
def test_the_root_cause_of_a_failed_run_is_not_its_last_line(log, cause):
    assert runner.root_cause(log) == cause


def test_a_failed_run_shows_its_failed_record_before_the_last_line(tmp_path):
    rec = {"schema_version": 1, "kind": "serve", "backend": "fa3", "status": "failed",
           "error": "every request failed; first error: HTTP 500", "scenario": {}, "provenance": {}}
    (tmp_path / "fa3").mkdir()
    (tmp_path / "fa3" / "serve-1x1.json").write_text(json.dumps(rec))
    cause = runner.root_cause("$ cmd\nattnbench: results in /r\n", tmp_path)
    assert "every request failed; first error: HTTP 500" in cause
