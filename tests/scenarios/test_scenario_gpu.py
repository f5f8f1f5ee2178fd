"""On the GPU machine: a tiny real study through vLLM, locally and as a Ray task on one GPU."""

import json

import pytest

from attnbench.backends import registry
from attnbench.records import record
from attnbench.scenarios import runner, spec

pytestmark = pytest.mark.gpu


def tiny(tmp_path, backend):
    path = tmp_path / "tiny.toml"
    path.write_text(f'name = "tiny"\nbackends = ["{backend}"]\n[serve]\ninput = [128]\noutput = [16]\nnum_prompts = 16\n')
    return spec.load(path)


@pytest.fixture
def backend():
    for name in ("fa3", "fa2", "flashinfer", "triton"):
        if registry.get(name).availability().ok:
            return name
    pytest.skip("no attention backend available")


def test_tiny_serve_study_locally(tmp_path, backend):
    study = tiny(tmp_path, backend)
    [o] = runner.Runner(study, study.expand(), tmp_path / "out", prefix=None).run_local()
    assert o.status == "ok", (tmp_path / "out" / o.result_dir / runner.LOG_NAME).read_text()[-3000:]
    [r] = [r for r in record.load(tmp_path / "out") if r.kind == "serve"]
    assert r.backend == backend and r.metrics["completed"] == 16


def test_tiny_serve_study_on_ray_gets_one_gpu(tmp_path, backend):
    ray = pytest.importorskip("ray")
    study = tiny(tmp_path, backend)
    ray.init(include_dashboard=False)
    try:
        [o] = runner.Runner(study, study.expand(), tmp_path / "out", prefix=None).run_ray()
    finally:
        ray.shutdown()
    assert o.status == "ok", o.error
    assert len(o.gpu_ids) == 1
    assert json.loads((tmp_path / "out/manifest.json").read_text())["mode"] == "ray"
    assert [r.metrics["completed"] for r in record.load(tmp_path / "out") if r.kind == "serve"] == [16]
