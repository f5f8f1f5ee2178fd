"""What the load generator sends: random token-id prompts of exact length, and when."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attnbench.errors import UserError


@dataclass(frozen=True)
class Workload:
    input_len: int
    output_len: int
    num_prompts: int = 256
    request_rate: float = math.inf  # requests/s; inf sends all at once
    burstiness: float = 1.0  # gamma shape: 1 is Poisson, <1 burstier, >1 more regular
    max_concurrency: int | None = None
    seed: int = 0
    warmup: int = 0  # requests sent (and awaited) before the timed run, not counted
    vocab_size: int = 10_000

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
