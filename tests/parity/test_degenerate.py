"""A model whose weights were not (all) loaded: constant logits, every logprob -ln(vocab) on
every backend. The first SmolLM2 run on an H100 (a GGUF folder converted with safetensors'
save_model: the tied matrix stored only as lm_head.weight, which vLLM skips) gave exactly this:
two backends bitwise equal and both 'wrong' against the fp32 reference. Parity must say why."""

import math

import pytest

from attnbench.parity import reference, run
from attnbench.parity.collect import Collection, Positions, PromptResult, Settings
from attnbench.parity.metrics import degenerate, flat_fraction
from attnbench.parity.prompts import PromptSet
from attnbench.parity.thresholds import Thresholds

VOCAB = 300  # as the tiny_llama fixture (conftest.py)
SETTINGS = Settings(PromptSet(num_prompts=2, short_len=5, long_len=12, vocab_size=VOCAB, seed=1), top_k=4, max_tokens=3)


def _collection(name: str, logprob_of) -> Collection:
    """Scripted answers: logprob_of(position, token) for the top tokens 0..k-1 and the actual one."""
    out = Collection(name, "m", SETTINGS, source=f"http://{name}")
    for prompt in SETTINGS.prompts.prompts():
        prefill, decode = Positions(), Positions()
        for pos, token in enumerate(prompt[1:]):
            prefill.append(token, logprob_of(pos, token), {t: logprob_of(pos, t) for t in range(SETTINGS.top_k)})
        for step in range(SETTINGS.max_tokens):
            decode.append(0, logprob_of(step, 0), {t: logprob_of(step, t) for t in range(SETTINGS.top_k)})
        out.results.append(PromptResult(prompt, prefill, decode, "length"))
    return out


def uniform(pos, token):
    return -math.log(49152)


def peaked(pos, token):
    return -0.1 - 0.7 * token - 0.01 * pos


def test_flat_fraction_and_the_reason():
    assert flat_fraction(_collection("a", uniform)) == 1.0
    assert flat_fraction(_collection("b", peaked)) == 0.0
    why = degenerate(_collection("a", uniform), max_flat=0.01)
    assert "degenerate output" in why and "100.0% of positions" in why and "-ln 49152" in why
    assert degenerate(_collection("b", peaked), max_flat=0.01) is None
    # vLLM's dummy weights: near-ties a few fp32 ulps apart, not constant logits; not degenerate
    dummy = _collection("d", lambda pos, token: -11.931 - 9.5e-7 * token)
    assert flat_fraction(dummy) == 0.0 and degenerate(dummy, Thresholds().max_flat_fraction) is None


def test_two_uniform_backends_agree_bitwise_and_both_fail(tmp_path):
    """The H100 symptom: flashinfer and attnbench-fa4 at max |Δlp| 0 with each other. Before,
    the second one passed against the first; now both fail, with the reason."""
    collected = tmp_path / "collected"
    for name in ("flashinfer", "attnbench-fa4"):
        _collection(name, uniform).save(collected / f"{name}.json.gz")
    records = {r.backend: r for r in run.rejudge(collected, tmp_path / "res", "flashinfer", Thresholds())}
    fa4 = records["attnbench-fa4"]
    assert fa4.metrics["max_abs_dlogprob"] == 0.0  # they do agree...
    assert fa4.metrics["passed"] == 0 and records["flashinfer"].metrics["passed"] == 0  # ...about nothing
    assert all(any("degenerate output" in f for f in r.samples["threshold_failures"]) for r in records.values())
    assert fa4.metrics["flat_topk_fraction"] == 1.0
    assert "degenerate output" in (tmp_path / "res" / "summary.md").read_text()


def test_healthy_backends_still_pass(tmp_path):
    collected = tmp_path / "collected"
    for name in ("a", "b"):
        _collection(name, peaked).save(collected / f"{name}.json.gz")
    records = {r.backend: r for r in run.rejudge(collected, tmp_path / "res", None, Thresholds(), null_pass=False)}
    assert records["b"].metrics["passed"] == 1 and records["b"].metrics["flat_topk_fraction"] == 0.0
    assert "Warnings" not in (tmp_path / "res" / "summary.md").read_text()


def _vllm_like_logprobs(folder, prompt):
    """Load `folder` the way vLLM's LlamaForCausalLM.load_weights does: tensors by their stored
    names, lm_head.* skipped when the embeddings are tied, anything missing left at zero."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for p in params.values():
            p.zero_()
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            for name in f.keys():
                if not (config.tie_word_embeddings and name.startswith("lm_head.")):
                    params[name].copy_(f.get_tensor(name))
        return torch.log_softmax(model(torch.tensor([prompt])).logits[0].double(), -1)


@pytest.fixture(scope="module")
def tied_folders(tmp_path_factory):
    """A tiny tied-embedding Llama saved twice: as attnbench.models.gguf saved SmolLM2
    (safetensors' save_model, which keeps only lm_head.weight of the tied pair) and with
    save_pretrained (which keeps model.embed_tokens.weight)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_model

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                      tie_word_embeddings=True)
    model = transformers.LlamaForCausalLM(config).eval()
    bad, good = tmp_path_factory.mktemp("save-model"), tmp_path_factory.mktemp("save-pretrained")
    model.config.save_pretrained(bad)
    save_model(model, str(bad / "model.safetensors"))
    model.save_pretrained(good)
    return bad, good


def test_a_tied_matrix_saved_only_as_lm_head_is_flagged(tied_folders):
    bad, good = tied_folders
    problems = reference.serving_problems(bad)
    assert len(problems) == 1 and "lm_head.weight" in problems[0] and "vLLM skips lm_head" in problems[0]
    assert reference.serving_problems(good) == []
    assert reference.serving_problems(bad / "missing") == []


def test_what_vllm_serves_from_such_a_folder_is_caught_as_degenerate(tied_folders):
    """transformers (the fp32 reference) reads both folders alike; a vLLM-style load of the
    save_model folder has constant logits, which `degenerate` reports."""
    import torch

    bad, good = tied_folders
    prompt = SETTINGS.prompts.prompts()[1]
    ref_bad, ref_good = reference.collect_hf(bad, SETTINGS), reference.collect_hf(good, SETTINGS)
    assert ref_bad.results[1].prefill.logprobs == pytest.approx(ref_good.results[1].prefill.logprobs, abs=1e-6)
    assert flat_fraction(ref_bad) == 0.0
    served_good, served_bad = _vllm_like_logprobs(good, prompt), _vllm_like_logprobs(bad, prompt)
    picked = served_good[:-1].gather(1, torch.tensor(prompt[1:])[:, None]).squeeze(1).tolist()
    assert picked == pytest.approx(ref_good.results[1].prefill.logprobs, abs=1e-5)  # the emulation is vLLM-faithful
    assert served_bad.max().item() == pytest.approx(-math.log(VOCAB)) == served_bad.min().item()
    last = len(prompt) - 1
    as_collected = _collection("vllm", lambda pos, token: float(served_bad[min(pos, last), token]))
    assert degenerate(as_collected, Thresholds().max_flat_fraction) is not None
    assert degenerate(_collection("vllm", lambda pos, token: float(served_good[min(pos, last), token])),
                      Thresholds().max_flat_fraction) is None
