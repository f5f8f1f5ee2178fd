"""Scale-out: the same stand-in runs as Ray tasks on a local Ray instance (2 CPUs, 2 declared GPUs):
each task gets its own GPU, failures stay with their run, results land in one tree."""

import json
import shlex
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnbench.records import record
from attnbench.scenarios import runner, spec

ray = pytest.importorskip("ray")

FAKE = Path(__file__).with_name("fake_attnbench.py")
PREFIX = [sys.executable, str(FAKE)]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"FAKE_EXIT_FAIL": "fa2"}})
    yield
    ray.shutdown()


def test_ray_runs_gather_into_one_tree(local_ray, tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('name = "study"\nbackends = ["fa2", "fa3", "fa4"]\nrepeats = 2\n[serve]\ninput = 10\noutput = 2\n')
    study = spec.load(path)
    r = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX)
    outcomes = r.run_ray()
    by = {o.result_dir: o for o in outcomes}
    assert by["serve-fa2/rep1"].status == "failed" and by["serve-fa2/rep1"].exit_code == 3
    assert all(by[f"serve-{b}/rep{k}"].status == "ok" for b in ("fa3", "fa4") for k in (0, 1))
    assert all(len(o.gpu_ids) == 1 for o in outcomes)  # each task asked for, and got, one GPU

    recs = record.load(tmp_path / "out")
    assert sorted(r.backend for r in recs) == ["fa3", "fa3", "fa4", "fa4"]
    # the subprocess saw the GPU Ray gave its task
    assert all(r.provenance["cuda_visible_devices"] in ("0", "1") for r in recs)
    assert (tmp_path / "out/serve-fa2/rep0/run.log").is_file()  # a failed run's log comes back too
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["mode"] == "ray" and manifest["counts"] == {"ok": 4, "failed": 2, "partial": 0, "skipped": 0, "pending": 0}


def test_cli_ray_flag_joins_the_running_instance(local_ray, tmp_path, monkeypatch):
    from attnbench.cli import app

    monkeypatch.setenv(runner.PREFIX_ENV, shlex.join(PREFIX))
    path = tmp_path / "study.toml"
    path.write_text('name = "study"\nbackends = ["fa3", "fa4"]\n[serve]\n')
    res = CliRunner().invoke(app, ["run", str(path), "--ray", "--result-dir", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out/manifest.json").read_text())["mode"] == "ray"


def test_a_run_needing_more_gpus_than_the_cluster_has_fails_at_once(local_ray, tmp_path):
    path = tmp_path / "tp.toml"
    path.write_text('name = "tp"\nbackends = ["fa3"]\n[serve]\nserve_args = ["--tensor-parallel-size", "4"]\n')
    study = spec.load(path)
    [o] = runner.Runner(study, study.expand(), tmp_path / "out", prefix=PREFIX).run_ray()
    assert o.status == "failed" and "needs 4 GPUs; the Ray cluster has 2" in o.error


def test_ray_tasks_drive_scripted_servers_with_the_real_attnbench(local_ray, tmp_path):
    from attnbench.serving.scripted_server import Script, ScriptedServer

    with ScriptedServer(Script(ttft_s=0.02, itl_s=0.002, model="tiny")) as a, \
         ScriptedServer(Script(ttft_s=0.02, itl_s=0.002, model="tiny")) as b:
        path = tmp_path / "e2e.toml"
        # --keep-flagged: two clients at once on two loaded cores lag (client_saturated), which is
        # serve-bench's to flag and not what this test is about
        path.write_text(f'name = "e2e"\n[serve]\ninput = [16]\noutput = [4]\nnum_prompts = 8\nvocab_size = 500\n'
                        f'args = ["--keep-flagged"]\nendpoints = {{ a = "{a.base_url}", b = "{b.base_url}" }}\n')
        study = spec.load(path)
        outcomes = runner.Runner(study, study.expand(), tmp_path / "out").run_ray()  # worker's python -m attnbench
    assert [o.status for o in outcomes] == ["ok", "ok"], [o.error for o in outcomes]
    recs = record.load(tmp_path / "out")
    passes = sorted((r.backend, r.scenario["repeat"], r.metrics["completed"]) for r in recs if r.kind == "serve")
    assert passes == [(x, i, 8) for x in ("a", "b") for i in range(3)]  # serve-bench's 3 passes each
    assert sorted(r.backend for r in recs if r.kind == "serve-aggregate") == ["a", "b"]
    assert (tmp_path / "out/serve-a/rep0/a/serve-16x4.json").is_file()
