"""On the GPU machine: real vLLM servers, one per backend. Run there with
    python -m pytest tests/parity/test_gpu.py -m gpu -s
ATTNBENCH_PARITY_MODEL=/path/to/SmolLM2-135M-Instruct (a safetensors folder, see
attnbench.models.gguf) adds the real-weight run against the fp32 transformers reference."""

import os
import subprocess
import sys

import pytest

from attnbench.results import record

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
