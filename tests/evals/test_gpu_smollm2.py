"""On the GPU: `attnbench gpqa` on real weights (SmolLM2-135M-Instruct, see
scripts/device/smollm2.sh) across the available backends, through vLLM's chat API. The score
is near chance; the point is real serving, the statistics and cross-backend parity. SmolLM2 has
no reasoning, hence --effort none."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODEL = Path(os.environ.get("ATTNBENCH_SMOLLM2", "/tmp/models/smollm2"))


@pytest.mark.gpu
def test_gpqa_mini_on_smollm2_across_backends(tmp_path):
    if not (MODEL / "config.json").exists():
        pytest.skip(f"{MODEL} missing: source scripts/device/smollm2.sh first")
    from attnbench.backends import registry

    names = [n for n in ("fa3", "fa4", "flashinfer", "attnbench-fa4") if registry.BACKENDS.get(n)
             and registry.BACKENDS[n].availability().ok]
    if not names:
        pytest.skip("no attention backend available here")
    out = tmp_path / "gpqa"
    p = subprocess.run(
        [sys.executable, "-m", "attnbench", "gpqa", "--backends", ",".join(names), "--model", str(MODEL),
         "--dataset", "mini", "--api", "chat", "--effort", "none", "--repeats", "4", "--max-tokens", "256", "--temperature", "0",
         "--serve-arg=--max-model-len", "--serve-arg=2048", "--result-dir", str(out)],
        capture_output=True, text=True, timeout=1800)
    assert p.returncode == 0, p.stderr[-3000:]
    for name in names:
        rec = json.loads((out / name / "gpqa.json").read_text())
        assert rec["status"] == "ok", rec["error"]
        assert rec["n_samples"] == rec["n_expected"] == 80 and rec["failed_requests"] == 0
    comp = json.loads((out / "comparison.json").read_text())
    assert len(comp) == len(names) - 1
    print(p.stdout)
