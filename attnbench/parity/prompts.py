"""The fixed, seeded prompts parity sends: short ones (the prefill path) and long ones (thousands
of tokens of KV cache, so decode takes the split-KV path), made of random token ids or of natural
text from the corpus shipped in parity/data/.

Random ids exercise every position of the vocabulary but give the model nothing to predict:
distributions are flat-ish and greedy continuations arbitrary. Natural text gives the sharp,
confident distributions of real use, where a small attention error moves the top-1 token."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from attnbench.errors import UserError

SOURCES = ("random", "text")


@dataclass(frozen=True)
class PromptSet:
    # flags as parity.run.Parity says; the bounds are those __post_init__ checks (long_len: at least short_len's)
    # half short, half long (a single prompt is long): 64 in flight at once
    num_prompts: int = field(default=64, metadata={
        "flag": "--num-prompts", "bound": (">=", 1),
        "help": "Prompts, alternating long and short, all in flight at once (--concurrency)."})
    short_len: int = field(default=64, metadata={"flag": "--short-len", "bound": (">=", 2),
                                                 "help": "Tokens of a short prompt (prefill path)."})
    long_len: int = field(default=4096, metadata={"flag": "--long-len", "bound": (">=", 2),
                                                  "help": "Tokens of a long prompt (split-KV decode)."})
    seed: int = field(default=0, metadata={"flag": "--seed", "help": "Seed of the prompts."})
    vocab_size: int = field(default=10_000, metadata={
        "flag": "--vocab-size", "bound": (">=", 2),
        "help": "Vocabulary prompt ids are drawn from (default: the model's config, else 10000)."})
    # "random" token ids, or "text" from the shipped corpus
    source: str = field(default="random", metadata={
        "key": "prompts", "flag": "--prompts", "choices": SOURCES,
        "help": "Prompt source: 'random' token ids, or 'text' (natural-text passages shipped with attnbench, "
                "tokenized by the model's tokenizer)."})
    # with "text": a folder holding tokenizer.json (the model's)
    tokenizer: str | None = field(default=None, metadata={
        "flag": "--tokenizer",
        "help": "With --prompts text: the folder holding tokenizer.json (default: the model's folder)."})

    def __post_init__(self) -> None:
        for ok, message in (
            (self.num_prompts >= 1, f"--num-prompts must be >= 1 (got {self.num_prompts})"),
            (self.short_len >= 2, f"--short-len must be >= 2 (got {self.short_len})"),
            (self.long_len >= self.short_len, f"--long-len must be >= --short-len (got {self.long_len})"),
            (self.vocab_size >= 2, f"--vocab-size must be >= 2 (got {self.vocab_size})"),
            (self.source in SOURCES, f"--prompts must be one of {', '.join(SOURCES)} (got {self.source!r})"),
            (self.source != "text" or bool(self.tokenizer),
             "--prompts text needs the model's tokenizer: pass --model PATH (a local folder) or --tokenizer PATH"),
        ):
            if not ok:
                raise UserError(message)

    def lengths(self) -> list[int]:
        """Short and long alternate, long first. Each is nudged by a few tokens so prompts end
        at different offsets within a KV block (partial last blocks are a classic bug site)."""
        out = []
        for i in range(self.num_prompts):
            base = self.long_len if i % 2 == 0 else self.short_len
            out.append(base + (i // 2) * 7)
        return out

    def prompts(self) -> list[list[int]]:
        return text_prompts(self) if self.source == "text" else self.random_prompts()

    def random_prompts(self) -> list[list[int]]:
        """Token ids uniform over [100, vocab) (ids below 100 usually are special tokens), as
        attnbench.serving.workload.prompts draws them."""
        rng = np.random.default_rng(self.seed)
        low = min(100, self.vocab_size // 2)
        return [rng.integers(low, self.vocab_size, size=n).tolist() for n in self.lengths()]


def corpus() -> list[str]:
    """The shipped passages (parity/data/*.txt, passages separated by blank lines), in file order."""
    from importlib import resources

    folder = resources.files("attnbench.parity").joinpath("data")
    out: list[str] = []
    for f in sorted((p for p in folder.iterdir() if p.name.endswith(".txt")), key=lambda p: p.name):
        text = f.read_text(encoding="utf-8").replace("\r\n", "\n")
        out += [" ".join(block.split()) for block in text.split("\n\n") if block.strip()]
    return out


@lru_cache(maxsize=4)
def _encoded(tokenizer: str) -> tuple[tuple[int, ...], ...]:
    """Each passage tokenized on its own, followed by a paragraph break, without special tokens."""
    from pathlib import Path

    path = Path(tokenizer)
    path = path / "tokenizer.json" if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"--tokenizer {tokenizer}: no tokenizer.json there; pass the model folder (or its tokenizer.json)")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    out = tuple(tuple(tok.encode(p + "\n\n", add_special_tokens=False).ids) for p in corpus())
    if not all(out):
        raise UserError(f"--tokenizer {tokenizer}: a corpus passage encodes to no tokens; is it a text tokenizer?")
    return out


def text_prompts(p: PromptSet) -> list[list[int]]:
    """Prompt i reads passages in a seeded order starting at the i-th, as many as its length
    needs (the corpus repeats when a prompt is longer than it), cut to exactly that length."""
    import random

    passages = _encoded(str(p.tokenizer))
    order = list(range(len(passages)))
    random.Random(p.seed).shuffle(order)
    out = []
    for i, n in enumerate(p.lengths()):
        ids: list[int] = []
        j = i
        while len(ids) < n:
            ids += passages[order[j % len(order)]]
            j += 1
        out.append(ids[:n])
    return out
