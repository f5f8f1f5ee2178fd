"""A scenario against scripted OpenAI-compatible servers, run by the real `python -m attnbench`:
scenario -> runs -> records -> `attnbench compare`, the loop a CI job goes through."""

import json
import shlex

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.records import record
from attnbench.scenarios import runner, spec
from attnbench.serving.scripted_server import Script, ScriptedServer


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
