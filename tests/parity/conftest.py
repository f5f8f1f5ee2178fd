"""A tiny randomly initialised Llama written to disk, for the fp32 reference."""

import pytest

VOCAB = 300


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():  # sharper logits than the default init, so greedy steps are not near-ties
        model.lm_head.weight.mul_(50.0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    return folder, model.eval()
