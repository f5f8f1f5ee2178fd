"""The runner with a stand-in attnbench (fake_attnbench.py through $ATTNBENCH_RUN_PREFIX):
runs one after another, failures stay with their run, manifest.json says what happened."""

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnbench import procs
from attnbench.cli import app
from attnbench.errors import UserError
from attnbench.records import record
from attnbench.scenarios import runner, spec
from attnbench.scenarios.cli import INCOMPLETE

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
    assert manifest["counts"] == {"ok": 2, "failed": 4, "partial": 0, "skipped": 0, "pending": 0}
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
    assert o.status == "partial" and o.exit_code == 124 and "timed out" in o.error and not r.complete


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
    assert json.loads((tmp_path / "bad/manifest.json").read_text())["counts"] == {"ok": 2, "failed": 1, "partial": 0, "skipped": 0, "pending": 0}


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
    assert json.loads((out / "manifest.json").read_text())["counts"] == {"ok": 3, "failed": 0, "partial": 0, "skipped": 0, "pending": 0}


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


# ---- time limits: a run's timeout_s and the study's budget_s ------------------------------------

def slow_study(tmp_path, text="", backends='["fa3"]'):
    path = tmp_path / "slow.toml"
    path.write_text(f'name = "slow"\nbackends = {backends}\n{text}\n[serve]\ninput = 10\noutput = 2\n')
    return spec.load(path)


def test_a_run_past_its_timeout_is_stopped_with_its_group_and_keeps_its_partial_results(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLOW", "fa3")  # sleeps 60 s, with a child in its process group
    study = slow_study(tmp_path, "timeout_s = 5")
    assert study.runs[0].timeout_s == 5
    [o] = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX).run_local()
    assert o.status == "partial" and o.exit_code == 124 and o.error == "timed out after 5 s"
    assert o.duration_s < 55  # stopped, not slept out
    run_dir = tmp_path / "out" / o.result_dir
    assert (run_dir / "terminated").read_text() == "SIGINT\n"  # asked to stop first, as Ctrl-C, so it could save
    assert record.load(run_dir)[0].backend == "fa3"  # what it had written is kept
    pgid, _ = map(int, (run_dir / "pids").read_text().split())
    assert not procs.group_alive(pgid)  # the child it started went with it
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["runs"][0]["error"] == "timed out after 5 s" and manifest["counts"]["partial"] == 1


def test_a_run_that_ignores_sigint_and_sigterm_is_killed_after_the_grace(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLOW", "fa3")
    monkeypatch.setenv("FAKE_IGNORE_TERM", "1")
    study = slow_study(tmp_path, "timeout_s = 5")
    [o] = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX, grace_s=1).run_local()
    assert o.exit_code == 124 and o.duration_s < 55
    pgid, _ = map(int, (tmp_path / "out" / o.result_dir / "pids").read_text().split())
    assert not procs.group_alive(pgid)


def test_the_command_line_timeout_replaces_the_scenarios(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLOW", "fa3")
    study = slow_study(tmp_path, "timeout_s = 3000")
    r = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX, timeout_s=2)
    [o] = r.run_local()
    assert o.error == "timed out after 2 s"


def test_a_spent_budget_stops_the_run_in_flight_and_skips_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLOW", "fa3,fa4")
    study = slow_study(tmp_path, "budget_s = 10", '["fa2", "fa3", "fa4"]')  # fa2 is quick, fa3 and fa4 sleep
    done = []
    r = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX, on_done=lambda o: done.append(o.id))
    fa2, fa3, fa4 = r.run_local()
    assert done == ["serve-fa2", "serve-fa3", "serve-fa4"]
    assert fa2.status == "ok"
    assert fa3.status == "partial" and fa3.exit_code == 124 and "the study's budget (10 s) was spent" in fa3.error
    assert fa3.duration_s < 55 and (tmp_path / "out" / fa3.result_dir / "terminated").is_file()
    assert record.load(tmp_path / "out" / fa3.result_dir)[0].backend == "fa3"  # what it saved before the stop
    assert fa4.status == "skipped" and fa4.error == "budget spent (10 s)" and fa4.exit_code is None
    assert not (tmp_path / "out" / fa4.result_dir).exists() and not r.complete
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["counts"] == {"ok": 1, "failed": 0, "partial": 1, "skipped": 1, "pending": 0}
    assert manifest["budget_s"] == 10 and [x["status"] for x in manifest["runs"]] == ["ok", "partial", "skipped"]


def test_a_budget_that_suffices_changes_nothing(tmp_path):
    study = slow_study(tmp_path, "budget_s = 600\ntimeout_s = 600", '["fa2", "fa3"]')
    r = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX)
    assert [o.status for o in r.run_local()] == ["ok", "ok"] and r.complete


def test_cli_budget_exit_code_says_the_study_is_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv(runner.PREFIX_ENV, shlex.join(PREFIX))
    monkeypatch.setenv("FAKE_SLOW", "fa3")
    study = slow_study(tmp_path, backends='["fa3", "fa4"]')
    res = CliRunner().invoke(app, ["run", str(study.path), "--budget-s", "2", "--result-dir", str(tmp_path / "out")])
    assert res.exit_code == INCOMPLETE == 3, res.output
    assert "serve-fa3/rep0: PARTIAL (stopped after 2 s: the study's budget (2 s) was spent; what it saved is kept)" in res.output
    assert "serve-fa4/rep0: skipped: budget spent (2 s)" in res.output
    assert ("0/2 runs ok; INCOMPLETE: 1 stopped by a time limit (partial), 1 skipped, the budget (2 s) was spent"
            in res.output)


def test_cli_dry_run_shows_each_runs_time_limit(tmp_path):
    study = slow_study(tmp_path, "budget_s = 7200\n[parity]\ntimeout_s = 90")
    res = CliRunner().invoke(app, ["run", str(study.path), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0].startswith("[1 GPU] ") and res.stdout.splitlines()[1].startswith("[1 GPU, 90 s] ")
    assert "2 runs within a budget of 7200 s" in res.output


@pytest.mark.parametrize("flag, value", [("--budget-s", "0"), ("--run-timeout", "-1")])
def test_cli_time_limits_must_be_positive(study, flag, value):
    res = CliRunner().invoke(app, ["run", str(study.path), flag, value, "--dry-run"])
    assert res.exit_code != 0 and f"{flag} must be > 0 seconds" in str(res.exception or res.output)


# ---- --resume ----------------------------------------------------------------------------------

def test_resume_keeps_ok_runs_and_reruns_failed_ones_in_a_clean_directory(study, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_RECORD_FAIL", "fa4")  # exits 0 with a failed record
    out = tmp_path / "out"
    runner.Runner(study, study.expand(1), out, prefix=PREFIX).run_local()
    monkeypatch.delenv("FAKE_RECORD_FAIL")
    started = []
    r = runner.Runner(study, study.expand(1), out, prefix=PREFIX, resume=True, on_start=lambda o: started.append(o.id))
    outcomes = r.run_local()
    assert started == ["serve-fa4"] and [o.status for o in outcomes] == ["ok", "ok", "ok"]
    # the earlier attempt's failed record is gone (it would fail the new one), its log kept aside
    assert [x.status for x in record.load(out / "serve-fa4/rep0")] == ["ok"]
    assert "fake attnbench" in (out / "serve-fa4/rep0.earlier.log").read_text()
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert [x["reused"] for x in runs] == [True, True, False]


def test_resume_runs_a_changed_command_again_and_says_how_it_changed(study, tmp_path):
    out = tmp_path / "out"
    runner.Runner(study, study.expand(1), out, prefix=PREFIX).run_local()
    study.path.write_text(study.path.read_text().replace("output = 2", "output = 2\nnum_prompts = 8"))
    changed = spec.load(study.path)
    started = []
    r = runner.Runner(changed, changed.expand(1), out, prefix=PREFIX, resume=True, on_start=lambda o: started.append(o.id))
    assert not r.done and set(r.changed.values()) == {"(nothing) -> --num-prompts 8"}
    r.run_local()
    assert started == ["serve-fa2", "serve-fa3", "serve-fa4"]
    assert "--num-prompts 8" in (out / "serve-fa2/rep0/run.log").read_text()


def test_resume_reruns_an_ok_run_whose_directory_is_gone_and_starts_afresh_without_a_manifest(study, tmp_path):
    import shutil

    out = tmp_path / "out"
    r = runner.Runner(study, study.expand(1), out, prefix=PREFIX, resume=True)  # nothing to resume yet
    assert not r.done and all(o.status == "ok" for o in r.run_local())
    shutil.rmtree(out / "serve-fa3")
    r = runner.Runner(study, study.expand(1), out, prefix=PREFIX, resume=True)
    assert r.done == {0, 2}


def test_resume_refuses_an_unreadable_manifest(study, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/manifest.json").write_text('{"runs": [')
    with pytest.raises(UserError, match="manifest.json is unreadable .*remove it to run everything again"):
        runner.Runner(study, study.expand(1), tmp_path / "out", prefix=PREFIX, resume=True)


def test_cli_resume_after_a_timeout_runs_only_that_run(tmp_path, monkeypatch):
    monkeypatch.setenv(runner.PREFIX_ENV, shlex.join(PREFIX))
    monkeypatch.setenv("FAKE_SLOW", "fa3")
    path = slow_study(tmp_path, backends='["fa2", "fa3", "fa4"]').path
    out = str(tmp_path / "out")
    cli = CliRunner()
    res = cli.invoke(app, ["run", str(path), "--run-timeout", "4", "--result-dir", out])
    assert res.exit_code == INCOMPLETE and "serve-fa3/rep0: PARTIAL (timed out after 4 s; what it saved" in res.output, res.output
    res = cli.invoke(app, ["run", str(path), "--result-dir", out])  # the same tree without --resume
    assert res.exit_code != 0 and "holds a study already (manifest.json): pass --resume" in str(res.exception)
    monkeypatch.delenv("FAKE_SLOW")
    res = cli.invoke(app, ["run", str(path), "--result-dir", out, "--resume"])
    assert res.exit_code == 0, res.output
    assert "resuming: 2 of 3 runs ok in an earlier run, kept" in res.output
    assert "serve-fa3/rep0: running" in res.output and "serve-fa2/rep0: running" not in res.output
    assert not (tmp_path / "out/serve-fa3/rep0/terminated").exists()  # a clean directory, not the stopped one's
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert [x["reused"] for x in manifest["runs"]] == [True, False, True] and manifest["counts"]["ok"] == 3


def test_cli_resume_says_which_commands_changed(study, tmp_path, monkeypatch):
    monkeypatch.setenv(runner.PREFIX_ENV, shlex.join(PREFIX))
    out = str(tmp_path / "out")
    assert CliRunner().invoke(app, ["run", str(study.path), "--repeats", "1", "--result-dir", out]).exit_code == 0
    res = CliRunner().invoke(app, ["run", str(study.path), "--repeats", "1", "--backends", "fa3", "--result-dir", out, "--resume"])
    assert res.exit_code == 0 and "resuming: 1 of 1 runs" in res.output, res.output
    study.path.write_text(study.path.read_text().replace("input = 10", "input = 12"))
    res = CliRunner().invoke(app, ["run", str(study.path), "--repeats", "1", "--backends", "fa3", "--result-dir", out, "--resume"])
    assert res.exit_code == 0, res.output
    assert "serve-fa3/rep0: command changed since its earlier ok run (10 -> 12); running it again" in res.output


def test_command_changes_names_the_words_that_differ():
    assert runner.command_changes("a --x 1 --y", "a --x 2 --y --z 'q r'") == "1 -> 2; (nothing) -> --z 'q r'"
    assert runner.command_changes("a b", "a") == "b -> (nothing)"


def test_cli_dry_run_of_the_seed_study_prints_the_device_command(tmp_path):
    seed = Path(__file__).resolve().parents[2] / "scenarios/seed-serve.toml"
    res = CliRunner().invoke(app, ["run", str(seed), "--dry-run", "--result-dir", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    line, explain = res.stdout.splitlines()
    assert line.startswith("[1 GPU, 1440 s] ")
    assert explain.startswith("[1 GPU, 300 s] ") and f"explain {tmp_path / 'r/serve/rep0'} --shape 1000x1000" in explain
    assert ("serve-bench --backends fa3,attnbench-fa4,flashinfer,fa4 --input 1000,8000 --output 1000,1 "
            f"--num-prompts 256 --repeats 3 --target-ci 0.03 --max-repeats 10 --result-dir {tmp_path / 'r/serve/rep0'}") in line


# ---- final steps and shared folders -------------------------------------------------------------

def steps_study(tmp_path, text):
    path = tmp_path / "steps.toml"
    path.write_text(f'name = "steps"\n{text}\n')
    return spec.load(path)


def test_a_final_step_runs_once_the_budget_stopped_the_others_which_stop_early_by_its_time(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLOW", "fa3")  # sleeps a minute
    study = steps_study(tmp_path, 'budget_s = 40\n'
                        '[[step]]\nid = "slow"\nargs = ["serve-bench", "--backends", "fa3"]\n'
                        '[[step]]\nid = "later"\nargs = ["serve-bench", "--backends", "fa2"]\n'
                        '[[step]]\nid = "last"\nargs = ["serve-bench", "--backends", "fa4"]\ntimeout_s = 30\nfinal = true\n')
    assert [r.final for r in study.runs] == [False, False, True]
    r = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX)
    slow, later, last = r.run_local()
    budget = "the study's budget (40 s, 30 s of it kept for the final steps) was spent"
    assert slow.status == "partial" and budget in slow.error and slow.duration_s < 35  # stopped 30 s before the budget's end
    assert later.status == "skipped" and later.error == "budget spent (40 s, 30 s of it kept for the final steps)"
    assert last.status == "ok" and record.load(tmp_path / "out" / last.result_dir)[0].backend == "fa4"
    assert not r.complete


def test_a_final_step_keeps_its_own_time_limit_after_the_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLOW", "fa3,fa4")
    study = steps_study(tmp_path, 'budget_s = 5\n'
                        '[[step]]\nid = "slow"\nargs = ["serve-bench", "--backends", "fa3"]\n'
                        '[[step]]\nid = "last"\nargs = ["serve-bench", "--backends", "fa4"]\ntimeout_s = 3\nfinal = true\n')
    slow, last = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX).run_local()
    assert slow.status == "partial" and "budget" in slow.error
    assert last.status == "partial" and last.error == "timed out after 3 s"  # its own limit, not the spent budget
    assert (tmp_path / "out" / last.result_dir / "terminated").read_text() == "SIGINT\n"


@pytest.mark.parametrize("steps, message", [
    ('[[step]]\nargs = ["explain", "x"]\nfinal = true\n', "is final (it runs even once the budget is spent): give it a timeout_s"),
    ('[[step]]\nargs = ["explain", "x"]\ntimeout_s = 9\nfinal = true\n[[step]]\nargs = ["explain", "y"]\n',
     "[[step]] 2 comes after a final step"),
    ('[[step]]\nid = "a"\nargs = ["explain", "x"]\n[[step]]\ncommand = ["ls", "{shared:a}"]\n',
     "step-2 writes {shared:a}, but 'a' is a run's id"),
    ('[[step]]\ncommand = ["ls", "{shared:a b}"]\n', "'a b' must be letters, digits"),
])
def test_final_steps_and_shared_folders_are_checked_at_load(tmp_path, steps, message):
    with pytest.raises(UserError, match=re.escape(message)):
        steps_study(tmp_path, steps)


def test_steps_write_one_shared_folder_which_a_resumed_step_does_not_empty(tmp_path, monkeypatch):
    text = ''.join(f'[[step]]\nid = "{b}"\nargs = ["serve-bench", "--backends", "{b}", "--result-dir", "{{shared:both}}"]\n'
                   for b in ("fa2", "fa3"))
    text += '[[step]]\nid = "list"\ncommand = ["ls", "{shared:both}"]\n'
    study = steps_study(tmp_path, text)
    out = tmp_path / "out"
    assert study.runs[0].argv(out / "fa2" / "rep0")[-2:] == ["--result-dir", str(out / "both" / "rep0")]  # none appended
    monkeypatch.setenv("FAKE_EXIT_FAIL", "fa3")
    assert [o.status for o in runner.Runner(study, study.expand(), out, prefix=PREFIX).run_local()] == ["ok", "failed", "ok"]
    assert (out / "list" / "rep0" / "run.log").read_text().splitlines()[1:] == ["fa2"]  # a later step reads it
    monkeypatch.delenv("FAKE_EXIT_FAIL")
    r = runner.Runner(study, study.expand(), out, prefix=PREFIX, resume=True)
    assert r.done == {0, 2}
    assert [o.status for o in r.run_local()] == ["ok", "ok", "ok"]
    assert sorted(x.backend for x in record.load(out / "both" / "rep0")) == ["fa2", "fa3"]  # fa2's from the first run
    assert (out / "fa3" / "rep0" / "run.log").read_text().startswith("$ ")  # each step's log in its own directory


def test_final_steps_and_shared_folders_are_refused_on_ray(tmp_path):
    study = steps_study(tmp_path, '[[step]]\nargs = ["explain", "x"]\ntimeout_s = 9\nfinal = true\n')
    with pytest.raises(UserError, match="final step .* drop --ray"):
        runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX).run_ray()
