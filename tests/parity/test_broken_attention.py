"""The test-only broken attention (broken_attention/sitecustomize.py) changes the softmax scale
that reaches the backend, and only when asked; here against a stand-in vllm package on disk."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BROKEN = Path(__file__).with_name("broken_attention")


@pytest.mark.parametrize("factor, expected", [("1.01", 0.125 * 1.01), (None, 0.125)])
def test_scale_is_changed_only_when_asked(tmp_path, factor, expected):
    layer = tmp_path / "vllm" / "attention"
    layer.mkdir(parents=True)
    (tmp_path / "vllm" / "__init__.py").write_text("")
    (layer / "__init__.py").write_text("")
    (layer / "layer.py").write_text("class Attention:\n    def __init__(self, num_heads, head_size, scale, **kw):\n"
                                    "        self.scale = scale\n")
    env = {**os.environ, "PYTHONPATH": f"{BROKEN}{os.pathsep}{tmp_path}"}
    env.pop("ATTNBENCH_BROKEN_SCALE", None)
    if factor:
        env["ATTNBENCH_BROKEN_SCALE"] = factor
    p = subprocess.run([sys.executable, "-c", "from vllm.attention.layer import Attention; "
                        "print(repr(Attention(8, 64, 0.125).scale))"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert float(p.stdout) == pytest.approx(expected, rel=1e-12)
    assert ("softmax scale x 1.01" in p.stderr) == bool(factor)
