"""The GGUF converter's output must be what vLLM loads the same way transformers does: for a
tied-embedding model the matrix stored as model.embed_tokens.weight (on the H100 a folder that
held it only as lm_head.weight was served with a zero embedding)."""

import pytest

from attnbench.models import gguf
from attnbench.parity import reference


def test_a_tied_model_is_saved_with_its_embedding_and_reloads_identically(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors import safe_open

    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = transformers.LlamaForCausalLM(config).eval()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=_tiny_tokenizer())
    out = gguf.save(model, tokenizer, tmp_path / "out", dtype="float32")

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    assert reference.serving_problems(out) == []
    again = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 5, 9, 3]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, again(ids).logits)


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({f"t{i}": i for i in range(64)} | {"[UNK]": 0}, unk_token="[UNK]"))
