"""The fixed, seeded prompts parity sends: short ones (the prefill path) and long ones (thousands
of tokens of KV cache, so decode takes the split-KV path)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnbench.errors import UserError


@dataclass(frozen=True)
class PromptSet:
    num_prompts: int = 64  # half short, half long (a single prompt is long): 64 in flight at once
    short_len: int = 64
    long_len: int = 4096
    seed: int = 0
    vocab_size: int = 10_000

    def __post_init__(self) -> None:
        for ok, message in (
            (self.num_prompts >= 1, f"--num-prompts must be >= 1 (got {self.num_prompts})"),
            (self.short_len >= 2, f"--short-len must be >= 2 (got {self.short_len})"),
            (self.long_len >= self.short_len, f"--long-len must be >= --short-len (got {self.long_len})"),
            (self.vocab_size >= 2, f"--vocab-size must be >= 2 (got {self.vocab_size})"),
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
        """Token ids uniform over [100, vocab) (ids below 100 usually are special tokens), as
        attnbench.serving.workload.prompts draws them."""
        rng = np.random.default_rng(self.seed)
        low = min(100, self.vocab_size // 2)
        return [rng.integers(low, self.vocab_size, size=n).tolist() for n in self.lengths()]
