"""The fp32 transformers reference, on a tiny randomly initialised Llama written to tmp_path."""

import pytest

from attnbench.parity.collect import Settings
from attnbench.parity.metrics import compare
from attnbench.parity.prompts import PromptSet
from attnbench.parity.reference import collect_hf, unusable

VOCAB = 300  # as the tiny_llama fixture (conftest.py)

SETTINGS = Settings(PromptSet(num_prompts=2, short_len=5, long_len=40, vocab_size=VOCAB, seed=1), top_k=5, max_tokens=6)


def test_dummy_weight_folders_are_refused_with_the_reason(tmp_path):
    from attnbench.models import embedded

    assert "no weights" in unusable(embedded.materialize("qwen3-0.6b"))
    assert "not a local model folder" in unusable(tmp_path / "missing")


def test_matches_a_direct_forward_pass_and_generate(tiny_llama):
    import torch

    folder, model = tiny_llama
    assert unusable(folder) is None
    got = collect_hf(folder, SETTINGS)
    assert got.name == "hf-fp32" and len(got.results) == 2
    for prompt, r in zip(SETTINGS.prompts.prompts(), got.results):
        with torch.no_grad():
            lps = torch.log_softmax(model(torch.tensor([prompt])).logits[0].double(), -1)
            greedy = model.generate(torch.tensor([prompt]), max_new_tokens=6, do_sample=False, min_new_tokens=6,
                                    eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
        assert r.prompt_token_ids == prompt
        assert r.prefill.token_ids == prompt[1:]
        assert r.prefill.logprobs[3] == pytest.approx(float(lps[3, prompt[4]]), abs=1e-6)
        assert r.prefill.top_ids[3] == torch.topk(lps[3], 5).indices.tolist()
        assert r.decode.token_ids == greedy
        assert r.decode.top_ids[0][0] == greedy[0]
        assert r.decode.logprobs == [row[0] for row in r.decode.top_logprobs]  # greedy picks the top-1
    assert compare(got, collect_hf(folder, SETTINGS, name="again")).metrics["max_abs_dlogprob"] == pytest.approx(0, abs=1e-5)
