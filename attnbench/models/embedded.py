"""Model architectures shipped with attnbench, served with `--load-format dummy`: the main job
needs no hub download and no weights, yet runs the real model's attention shapes.

`materialize(name)` writes a model folder vLLM can load: the shipped config.json plus a
tokenizer generated here (a word-level vocabulary "<t0>", "<t1>", ... of the model's size).
Prompts are sent as token ids, so the tokenizer only has to exist and decode."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from attnbench import atomic

EMBEDDED = {"qwen3-0.6b": "qwen3-0.6b.json"}  # name -> config file in this folder
DEFAULT_MODEL = "qwen3-0.6b"
TOKENIZER_VERSION = 1  # bump when the generated tokenizer changes


def config(name: str) -> dict:
    return json.loads(resources.files("attnbench.models").joinpath(EMBEDDED[name]).read_text())


def cache_dir() -> Path:
    return Path(os.environ.get("ATTNBENCH_CACHE", Path.home() / ".cache" / "attnbench"))


def materialize(name: str, root: Path | None = None) -> Path:
    """The model folder for `name` (created once, atomically per file); returns its path."""
    cfg = config(name)
    folder = (root or cache_dir() / "models") / f"{name}-dummy-t{TOKENIZER_VERSION}"
    if (folder / "tokenizer.json").exists() and (folder / "config.json").exists():
        return folder
    vocab = {f"<t{i}>": i for i in range(cfg["vocab_size"])}
    eos = f"<t{cfg['eos_token_id']}>"
    bos = f"<t{cfg['bos_token_id']}>"
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": cfg[k], "content": f"<t{cfg[k]}>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for k in ("bos_token_id", "eos_token_id")
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<t0>"},
    }
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": "<t0>",
        "model_max_length": cfg["max_position_embeddings"],
        "clean_up_tokenization_spaces": False,
    }
    atomic.write_json(folder / "tokenizer_config.json", tokenizer_config)
    atomic.write_text(folder / "tokenizer.json", json.dumps(tokenizer))
    atomic.write_json(folder / "config.json", cfg)  # written last: its presence marks a complete folder
    return folder


def resolve(model: str) -> tuple[str, dict | None]:
    """A --model value -> (what to pass to `vllm serve`, the config when attnbench knows it).

    Embedded names become a local folder; other values (HF ids, paths) pass through, with their
    config.json read when it is a local folder."""
    if model in EMBEDDED:
        return str(materialize(model)), config(model)
    cfg_path = Path(model) / "config.json"
    if cfg_path.is_file():
        return model, json.loads(cfg_path.read_text())
    return model, None
