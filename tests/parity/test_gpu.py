"""On the GPU machine: real vLLM servers, one per backend. Run there with
    python -m pytest tests/parity/test_gpu.py -m gpu -s
ATTNBENCH_PARITY_MODEL=/path/to/SmolLM2-135M-Instruct (a safetensors folder, see
attnbench.models.gguf) adds the real-weight run against the fp32 transformers reference."""

import os
import subprocess
import sys

import pytest

from attnbench.records import record

pytestmark = pytest.mark.gpu

SMALL = ["--num-prompts", "2", "--long-len", "1100", "--max-tokens", "16"]


def _parity(tmp_path, *args):
    pytest.importorskip("vllm")
    p = subprocess.run([sys.executable, "-m", "attnbench", "parity", "--result-dir", str(tmp_path), *SMALL, *args],
                       capture_output=True, text=True, timeout=1800)
    print(p.stdout, p.stderr[-3000:])
    return p, {r.backend: r for r in record.load(tmp_path)}


def test_fa2_matches_fa3_on_the_dummy_model(tmp_path):
    p, recs = _parity(tmp_path, "--backends", "fa3,fa2")
    assert recs["fa3"].status == "ok" and recs["fa2"].status == "ok", p.stderr[-2000:]
    m = recs["fa2"].metrics
    assert m["prefill_positions"] == 1100 - 1 + 64 - 1 and m["max_abs_dlogprob"] is not None


def test_random_weights_fa2_matches_fa3_and_fp32(tmp_path):
    p, recs = _parity(tmp_path, "--backends", "fa3,fa2", "--random-weights")
    assert recs["fa2"].status == "ok" and recs["fa3"].status == "ok", p.stderr[-2000:]
    assert recs["fa2"].metrics["mean_abs_dlogprob"] > 0 or recs["fa2"].metrics["max_abs_dlogprob"] == 0
    assert recs["fa3"].metrics["hf_max_abs_dlogprob"] is not None
    assert recs["fa2"].metrics["passed"] == 1, recs["fa2"].samples["threshold_failures"]


@pytest.mark.skipif(not os.environ.get("ATTNBENCH_PARITY_MODEL"), reason="set ATTNBENCH_PARITY_MODEL to a real-weight folder")
def test_real_weights_against_fp32_transformers(tmp_path):
    p, recs = _parity(tmp_path, "--backends", "fa3,fa2", "--model", os.environ["ATTNBENCH_PARITY_MODEL"])
    assert recs["fa3"].metrics["hf_max_abs_dlogprob"] is not None, p.stderr[-2000:]
    assert recs["fa2"].metrics["passed"] == 1, recs["fa2"].samples["threshold_failures"]


def test_broken_attention_fails_parity_and_passes_against_itself(tmp_path):
    """fa3 with its softmax scale off by 1% (tests/parity/broken_attention) against plain fa3 must
    fail; broken fa3 against broken fa2 must pass. Needs real weights (ATTNBENCH_PARITY_MODEL)."""
    import os
    from pathlib import Path

    from attnbench.parity.collect import Collection

    model = os.environ.get("ATTNBENCH_PARITY_MODEL")
    if not model:
        pytest.skip("ATTNBENCH_PARITY_MODEL (a real-weight folder, e.g. SmolLM2) is not set")
    broken_env = {**os.environ, "ATTNBENCH_BROKEN_SCALE": "1.01",
                  "PYTHONPATH": f"{Path(__file__).with_name('broken_attention')}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    common = ["--model", model, "--hf-reference", "off", *SMALL]

    def collect(out, backends, env=None):
        p = subprocess.run([sys.executable, "-m", "attnbench", "parity", "--backends", backends, "--result-dir",
                            str(out), *common], capture_output=True, text=True, timeout=1800, env=env)
        print(p.stdout, p.stderr[-3000:])
        return p

    assert collect(tmp_path / "good", "fa3,fa2").returncode == 0
    p = collect(tmp_path / "broken", "fa3,fa2", broken_env)
    assert p.returncode == 0, "broken fa3 vs broken fa2 must pass parity"
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name, src in (("fa3", tmp_path / "good"), ("fa3-broken", tmp_path / "broken")):
        c = Collection.load(src / "collected" / "fa3.json.gz")
        c.name = name
        c.save(mixed / f"{name}.json.gz")
    p = subprocess.run([sys.executable, "-m", "attnbench", "parity", "--from-collected", str(mixed), "--reference", "fa3",
                        "--result-dir", str(tmp_path / "judged")], capture_output=True, text=True, timeout=600)
    print(p.stdout)
    assert p.returncode == 1 and "FAIL" in p.stdout, "a 1% softmax scale error must fail parity"
