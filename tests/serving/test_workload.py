"""Prompts: text built with the model's tokenizer as vLLM's random dataset builds it, and the
vocabulary random token ids come from (GGUF metadata, config.json, the server)."""

import json
import struct

import pytest

from attnbench.errors import UserError
from attnbench.serving import workload
from attnbench.serving.scripted_server import Script, ScriptedServer

tokenizers = pytest.importorskip("tokenizers")

CORPUS = ["the quick brown fox jumps over the lazy dog", "attention backends decode tokens quickly",
          "a benchmark measures what a server does under load", "split kv decode on paged caches"] * 20


@pytest.fixture(scope="module")
def tokenizer():
    """A tiny byte-level BPE with a BOS the post-processor adds, like a real model's tokenizer:
    decoding a run of ids and encoding the text again need not give the same count."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=["<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def test_text_prompts_have_the_target_length_with_the_servers_bos(tokenizer):
    texts = workload.text_prompts(20, 64, tokenizer, seed=1)
    assert len(texts) == 20 and all(isinstance(t, str) and t for t in texts)
    lengths = [len(tokenizer.encode(t).ids) for t in texts]  # as the server encodes: BOS added
    assert sum(n == 64 for n in lengths) >= 15 and all(abs(n - 64) <= 2 for n in lengths)  # bytes of split UTF-8 drift
    assert not any("<s>" in t or "</s>" in t for t in texts)
    assert len(set(texts)) >= 12  # 400 ids, a third of them lone bytes that decode alike: some texts coincide


def test_text_prompts_are_reproducible_and_depend_on_the_seed(tokenizer):
    assert workload.text_prompts(4, 32, tokenizer, 0) == workload.text_prompts(4, 32, tokenizer, 0)
    assert workload.text_prompts(4, 32, tokenizer, 0) != workload.text_prompts(4, 32, tokenizer, 1)


def test_the_tokenizer_is_read_from_a_local_model_folder(tokenizer, tmp_path):
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    assert workload.text_prompts(2, 16, tmp_path, 3) == workload.text_prompts(2, 16, tokenizer, 3)
    with pytest.raises(UserError, match="no tokenizer.json at"):
        workload.load_tokenizer(tmp_path / "missing")


def _gguf(path, kvs):
    """A GGUF v3 header with the given metadata and no tensors."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, kind, value in kvs:
        out += s(key) + struct.pack("<I", kind)
        if kind == 8:
            out += s(value)
        elif kind == 9:
            inner, items = value
            out += struct.pack("<IQ", inner, len(items))
            out += b"".join(s(v) if inner == 8 else struct.pack("<f", v) for v in items)
        elif kind == 4:
            out += struct.pack("<I", value)
    path.write_bytes(out)
    return path


def test_vocabulary_from_gguf_metadata(tmp_path):
    tokens = _gguf(tmp_path / "m.gguf", [("general.architecture", 8, "llama"), ("general.name", 8, "tiny"),
                                         ("tokenizer.ggml.scores", 9, (6, [0.5] * 7)),
                                         ("tokenizer.ggml.tokens", 9, (8, [f"t{i}" for i in range(7)]))])
    assert workload.gguf_vocab_size(tokens) == 7
    sized = _gguf(tmp_path / "n.gguf", [("general.architecture", 8, "llama"), ("llama.vocab_size", 4, 49152)])
    assert workload.gguf_vocab_size(sized) == 49152
    assert workload.detect_vocab_size(str(sized)) == (49152, f"GGUF metadata of {sized}")
    assert workload.detect_vocab_size(str(tmp_path))[0] == 7  # a folder holding a GGUF file
    (tmp_path / "x.gguf").write_bytes(b"nope")
    with pytest.raises(UserError, match="not a GGUF file"):
        workload.gguf_vocab_size(tmp_path / "x.gguf")


def test_vocabulary_from_a_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"vocab_size": 151936}}))
    assert workload.detect_vocab_size(str(tmp_path)) == (151936, str(tmp_path / "config.json"))
    assert workload.detect_vocab_size("org/not-local", config={"vocab_size": 32000})[0] == 32000
    assert workload.detect_vocab_size("org/not-local") == (None, "")


def test_vocabulary_from_the_server(tmp_path):
    with ScriptedServer(Script(model="smol", meta={"n_vocab": 49152, "n_ctx_train": 8192})) as s:
        assert workload.detect_vocab_size("smol", s.base_url) == (49152, f"{s.base_url}/models (n_vocab)")
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 1234}))
    with ScriptedServer(Script(model="served", root=str(tmp_path))) as s:  # vLLM: root is the model path
        size, source = workload.detect_vocab_size("served", s.base_url)
    assert size == 1234 and "the server's model root" in source
    with ScriptedServer(Script(model="plain")) as s:
        assert workload.detect_vocab_size("plain", s.base_url) == (None, "")
    assert workload.detect_vocab_size("m", "http://127.0.0.1:9/v1") == (None, "")  # unreachable: unknown
