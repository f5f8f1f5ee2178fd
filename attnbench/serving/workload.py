"""What the load generator sends: random prompts of exact length (token ids, or text the
server tokenizes), and when; and the vocabulary the random ids come from."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnbench.errors import UserError


@dataclass(frozen=True)
class Workload:
    input_len: int
    output_len: int
    # flags (and [serve] scenario keys), as ServeBench says; the bounds are those __post_init__ checks
    num_prompts: int = field(default=256, metadata={"flag": "--num-prompts", "bound": (">=", 1),
                                                    "help": "Requests per load shape."})
    # requests/s; inf sends all at once
    request_rate: float = field(default=math.inf, metadata={
        "flag": "--request-rate", "bound": (">", 0),
        "help": "Requests/s (Poisson/gamma arrivals); inf sends all at once."})
    # gamma shape: 1 is Poisson, <1 burstier, >1 more regular
    burstiness: float = field(default=1.0, metadata={
        "flag": "--burstiness", "bound": (">", 0), "help": "Gamma shape of the arrival gaps: 1 Poisson, <1 burstier."})
    max_concurrency: int | None = field(default=None, metadata={
        "flag": "--max-concurrency", "bound": (">=", 1), "help": "At most this many requests in flight."})
    seed: int = field(default=0, metadata={"flag": "--seed", "help": "Seed of the prompts and arrival times."})
    # requests sent (and awaited) before the timed run, not counted
    warmup: int = field(default=0, metadata={
        "flag": "--warmup", "bound": (">=", 0),
        "help": "Requests per unmeasured warm-up pass (default --num-prompts; 0: no warm-up)."})
    vocab_size: int = field(default=10_000, metadata={
        "flag": "--vocab-size", "bound": (">=", 2),
        "help": "Vocabulary for random token ids (default: from the model's config, else 10000)."})

    def __post_init__(self) -> None:
        checks = [
            (self.input_len >= 1, f"--input must be >= 1 (got {self.input_len})"),
            (self.output_len >= 1, f"--output must be >= 1 (got {self.output_len})"),
            (self.num_prompts >= 1, f"--num-prompts must be >= 1 (got {self.num_prompts})"),
            (self.request_rate > 0, f"--request-rate must be > 0 or inf (got {self.request_rate})"),
            (self.burstiness > 0, f"--burstiness must be > 0 (got {self.burstiness})"),
            (self.max_concurrency is None or self.max_concurrency >= 1,
             f"--max-concurrency must be >= 1 (got {self.max_concurrency})"),
            (self.warmup >= 0, f"--warmup must be >= 0 (got {self.warmup})"),
            (self.vocab_size >= 2, f"--vocab-size must be >= 2 (got {self.vocab_size})"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)


def prompts(n: int, input_len: int, vocab_size: int, seed: int) -> list[list[int]]:
    """n prompts of exactly input_len token ids, uniform over the vocabulary (as vLLM's random
    dataset), skipping the lowest ids, where special tokens usually live."""
    rng = np.random.default_rng(seed)
    low = min(100, vocab_size // 2)
    return rng.integers(low, vocab_size, size=(n, input_len)).tolist()


def arrival_offsets(n: int, request_rate: float, burstiness: float, seed: int) -> list[float]:
    """Send times in seconds from the start. Gaps are gamma(shape=burstiness,
    scale=1/(rate*burstiness)): mean 1/rate, and burstiness 1 gives a Poisson process."""
    if math.isinf(request_rate):
        return [0.0] * n
    rng = np.random.default_rng(seed + 1)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (request_rate * burstiness), size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps).tolist()


# ---- text prompts --------------------------------------------------------------------------------

def load_tokenizer(path: str | Path):
    """A `tokenizers.Tokenizer` from a local tokenizer.json, or a folder holding one (a model folder);
    never from the network."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file() or file.suffix != ".json":
        raise UserError(f"no tokenizer.json at {path}; text prompts need the model's tokenizer: pass a local "
                        "model folder (or its tokenizer.json)")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError("text prompts need the `tokenizers` package: pip install tokenizers") from None
    return Tokenizer.from_file(str(file))


def _special_ids(tok) -> set[int]:
    return {i for i, t in tok.get_added_tokens_decoder().items() if t.special}


def text_prompts(n: int, input_len: int, tokenizer, seed: int, rounds: int = 10) -> list[str]:
    """n texts the model's tokenizer reads as input_len tokens (counting the special tokens the
    server adds, e.g. BOS), built as vLLM's random dataset builds them: a run of consecutive
    non-special ids from a random offset, decoded, re-encoded, then cut or topped up with random
    ids and decoded again until the length holds (at most `rounds` times; a token or two off is
    possible, and the server's usage reports the real count). `tokenizer`: a tokenizers.Tokenizer
    or a local path for load_tokenizer."""
    tok = tokenizer if hasattr(tokenizer, "encode_batch") else load_tokenizer(tokenizer)
    special = _special_ids(tok)
    allowed = np.array([i for i in range(tok.get_vocab_size(with_added_tokens=True)) if i not in special])
    if not len(allowed):
        raise UserError("the tokenizer has no ordinary tokens to build prompts from")
    target = max(1, input_len - tok.num_special_tokens_to_add(is_pair=False))
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, len(allowed), size=n)
    out = []
    for i, offset in enumerate(offsets):
        ids = allowed[(offset + i + np.arange(target)) % len(allowed)].tolist()
        for _ in range(rounds):
            text = tok.decode(ids)
            ids = tok.encode(text, add_special_tokens=False).ids
            if len(ids) == target:
                break
            if len(ids) > target:
                ids = ids[:target]
            else:
                ids += allowed[rng.integers(0, len(allowed), size=target - len(ids))].tolist()
        out.append(text)
    return out


# ---- the vocabulary random token ids are drawn from -------------------------------------------------

GGUF_TYPES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}  # 8 string, 9 array


def gguf_vocab_size(path: str | Path) -> int | None:
    """The token count in a GGUF file's metadata (tokenizer.ggml.tokens, else <arch>.vocab_size),
    read from its header without loading any tensor; None when it names neither."""
    import struct

    with open(path, "rb") as f:
        def read(fmt):
            size = struct.calcsize("<" + fmt)
            return struct.unpack("<" + fmt, f.read(size))[0]

        def string():
            return f.read(read("Q")).decode("utf-8", "replace")

        def skip(kind):
            if kind == 8:
                f.seek(read("Q"), 1)
            elif kind == 9:
                inner, count = read("I"), read("Q")
                if inner in GGUF_TYPES:
                    f.seek(struct.calcsize("<" + GGUF_TYPES[inner]) * count, 1)
                else:
                    for _ in range(count):
                        skip(inner)
            elif kind in GGUF_TYPES:
                read(GGUF_TYPES[kind])
            else:
                raise ValueError(f"unknown GGUF value type {kind}")

        if f.read(4) != b"GGUF":
            raise UserError(f"{path} is not a GGUF file")
        read("I")  # version
        read("Q")  # tensor count
        sizes = {}
        for _ in range(read("Q")):
            key, kind = string(), read("I")
            if key == "tokenizer.ggml.tokens" and kind == 9:
                read("I")
                count = read("Q")
                return count
            if key.endswith(".vocab_size") and kind in GGUF_TYPES:
                sizes[key] = read(GGUF_TYPES[kind])
                continue
            skip(kind)
        return int(next(iter(sizes.values()))) if sizes else None


def _config_vocab(cfg: dict | None) -> int | None:
    if not cfg:
        return None
    cfg = cfg.get("text_config", cfg)
    return int(cfg["vocab_size"]) if cfg.get("vocab_size") else None


def _local_vocab(path: Path) -> tuple[int | None, str]:
    import json

    if path.is_file() and path.suffix == ".gguf":
        return gguf_vocab_size(path), f"GGUF metadata of {path}"
    if (path / "config.json").is_file():
        return _config_vocab(json.loads((path / "config.json").read_text())), f"{path / 'config.json'}"
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            return gguf_vocab_size(ggufs[0]), f"GGUF metadata of {ggufs[0]}"
    return None, ""


def detect_vocab_size(model: str | None, base_url: str | None = None, config: dict | None = None) -> tuple[int | None, str]:
    """The model's vocabulary and where it was read -> (size or None, source): the given config
    (e.g. an embedded model's or one from the local HF cache), a local GGUF file or model folder,
    else what the server at base_url tells (llama.cpp's n_vocab in /v1/models, or a model root
    that is a local folder). None: unknown, the caller keeps its default and says so."""
    if _config_vocab(config):
        return _config_vocab(config), "the model's config.json"
    if model:
        size, source = _local_vocab(Path(model))
        if size:
            return size, source
    if base_url:
        from attnbench.serving import endpoint

        try:
            info = endpoint.model_info(base_url, model)
        except UserError:
            return None, ""
        meta = info.get("meta") or {}
        if isinstance(meta, dict) and meta.get("n_vocab"):
            return int(meta["n_vocab"]), f"{base_url}/models (n_vocab)"
        if info.get("root"):
            size, source = _local_vocab(Path(str(info["root"])))
            if size:
                return size, f"{source} (the server's model root)"
    return None, ""
