"""Random real weights for an embedded architecture: written once, seeded, loadable by the fp32
reference, and served instead of vLLM's dummy weights with --random-weights."""

import json
import sys
from pathlib import Path

import pytest

from attnbench.backends import registry
from attnbench.models import embedded
from attnbench.parity import random_weights, reference, run
from attnbench.parity.collect import Settings
from attnbench.parity.prompts import PromptSet

TINY_QWEN3 = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "intermediate_size": 64,
              "vocab_size": 300, "max_position_embeddings": 256, "tie_word_embeddings": True,
              "initializer_range": 0.02, "bos_token_id": 1, "eos_token_id": 2}


@pytest.fixture
def tiny_embedded(monkeypatch):
    pytest.importorskip("torch")  # the weights are written with torch
    pytest.importorskip("transformers")
    monkeypatch.setitem(embedded.EMBEDDED, "tiny-qwen3", "none.json")
    real = embedded.config
    monkeypatch.setattr(embedded, "config", lambda name: dict(TINY_QWEN3) if name == "tiny-qwen3" else real(name))
    return "tiny-qwen3"


def test_written_once_seeded_and_loadable(tiny_embedded):
    import safetensors.torch

    a = random_weights.materialize(tiny_embedded, seed=0)
    assert reference.unusable(a) is None and (a / "tokenizer.json").exists()
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    assert random_weights.materialize(tiny_embedded, seed=0) == a
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp  # not written again
    b = random_weights.write(TINY_QWEN3, a.with_name("again"), seed=0)
    c = random_weights.write(TINY_QWEN3, a.with_name("other"), seed=1)
    wa, wb, wc = (safetensors.torch.load_file(f / "model.safetensors") for f in (a, b, c))
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert any((wa[k] != wc[k]).any() for k in wa)
    assert json.loads((a / "config.json").read_text())["model_type"] == "qwen3"


def test_random_weights_are_served_and_compared_with_fp32(tiny_embedded, tmp_path, monkeypatch):
    fake = Path(__file__).parents[1] / "serving" / "fake_vllm.py"
    monkeypatch.setenv("ATTNBENCH_VLLM_CMD", f"{sys.executable} {fake} serve")
    monkeypatch.setenv("FAKE_VLLM_ARGS", str(tmp_path / "args.jsonl"))
    settings = Settings(PromptSet(num_prompts=2, short_len=6, long_len=20, vocab_size=300), top_k=4, max_tokens=5)
    records = run.run(run.Parity(settings=settings, result_dir=tmp_path / "res", model=tiny_embedded,
                                 backends=registry.parse_names("fa3,fa2"), random_weights=True))
    recs = {r.backend: r for r in records}
    assert recs["fa2"].metrics["max_abs_dlogprob"] == 0.0  # the same scripted server twice
    assert recs["fa3"].metrics["hf_max_abs_dlogprob"] is not None  # the fp32 reference ran on the weights
    assert recs["fa3"].scenario["fp32_reference"].endswith("tiny-qwen3-random-s0-t1")
    commands = [json.loads(line) for line in (tmp_path / "args.jsonl").read_text().splitlines()]
    assert all("--load-format" not in cmd and cmd[1].endswith("tiny-qwen3-random-s0-t1") for cmd in commands)
