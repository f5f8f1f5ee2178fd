"""The arithmetic of `attnbench explain`, in one place.

Per backend: the attention time of one decode step, estimated from microbenchmarked kernel times
of the run's decode batch compositions, set beside the measured TPOT. Per pair of backends: how
much of the TPOT gap that estimate accounts for, and the rest (scheduling, sampling, graph
launch, python overhead, prefill interference, and everything else a step does besides attention).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from itertools import combinations
from typing import Callable

from attnbench.errors import UserError
from attnbench.explain.compose import Mix
from attnbench.microbench.base import DecodeShape

# (microbench backend, shape) -> one layer's decode attention kernel time in microseconds
Timer = Callable[[str, DecodeShape], float]


@dataclass(frozen=True)
class ModelShape:
    """The served model's attention layout, from the serve record's scenario.model_shape."""

    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int
    page_size: int
    dtype: str

    @classmethod
    def of(cls, scenario: dict, where: str = "record") -> "ModelShape":
        m = scenario.get("model_shape")
        keys = ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "block_size", "dtype")
        if not isinstance(m, dict) or any(m.get(k) is None for k in keys):
            raise UserError(f"{where}: the serve record has no complete scenario.model_shape (layers, heads, "
                            "head_dim, block_size, dtype); re-run serve-bench with this attnbench version "
                            "(with --endpoint, also pass --model so it can read the model's config.json)")
        model = cls(int(m["num_hidden_layers"]), int(m["num_attention_heads"]), int(m["num_key_value_heads"]),
                    int(m["head_dim"]), int(m["block_size"]), str(m["dtype"]))
        try:
            model.decode_shape((model.page_size,))
        except ValueError as e:
            raise UserError(f"{where}: scenario.model_shape {m} is not a layout microbench can time: {e}") from None
        return model

    def decode_shape(self, context_lens: tuple[int, ...]) -> DecodeShape:
        return DecodeShape(batch=len(context_lens), context_lens=context_lens, q_heads=self.q_heads,
                           kv_heads=self.kv_heads, head_dim=self.head_dim, page_size=self.page_size,
                           dtype=self.dtype)


def step_attention_ms(weights: list[float], layer_us: list[float], layers: int) -> float:
    """Expected attention time of one decode step: sum_c w_c * t_c * layers, in ms.

    A step runs the decode kernel once per layer over the whole batch, so one step of
    composition c costs t_c * layers; weighting by w_c (share of token-steps) gives the mean.
    """
    return sum(w * t for w, t in zip(weights, layer_us)) * layers / 1000.0


@dataclass
class Estimate:
    """One backend's measured TPOT beside its estimated attention time per decode step."""

    backend: str  # serve backend (the record's name)
    kernel: str  # microbench backend that was timed
    tpot_mean_ms: float
    tpot_median_ms: float | None
    attn_ms: float  # estimated attention time per decode step, all layers
    layer_us: list[float]  # kernel time of each composition, one layer
    mix: Mix
    model: ModelShape
    tpot_source: str = "client"  # or "engine": vLLM's own per-token time from /metrics
    tpot_passes: int = 1  # measured passes the TPOT is the mean of
    tpot_half_pct: float | None = None  # 95% CI half-width of that mean, % of it (None: one pass)

    @property
    def share(self) -> float:
        """Attention's share of a step: est / TPOT (TPOT is the mean decode step a request lives through)."""
        return self.attn_ms / self.tpot_mean_ms

    @property
    def rest_ms(self) -> float:
        return self.tpot_mean_ms - self.attn_ms


def estimate(backend: str, kernel: str, metrics: dict, mix: Mix, model: ModelShape, timer: Timer,
             on_shape: Callable[[int, DecodeShape], None] | None = None) -> Estimate:
    """Time every kept composition with `timer` and combine; `on_shape(i, shape)` reports progress."""
    tpot = metrics.get("mean_tpot_ms")
    if not tpot:
        raise UserError(f"{backend}: the serve record has no mean TPOT (output length 1?); "
                        "explain needs a run with --output > 1")
    layer_us = []
    for i, comp in enumerate(mix.compositions):
        shape = model.decode_shape(comp.context_lens)
        if on_shape:
            on_shape(i, shape)
        layer_us.append(float(timer(kernel, shape)))
    attn = step_attention_ms([c.weight for c in mix.compositions], layer_us, model.layers)
    return Estimate(backend, kernel, float(tpot), metrics.get("median_tpot_ms"), attn, layer_us, mix, model)


@dataclass(frozen=True)
class Gap:
    """The TPOT gap between two backends, split into what attention explains and the rest."""

    slower: str
    faster: str
    tpot_gap_ms: float  # TPOT(slower) - TPOT(faster), >= 0
    attn_gap_ms: float  # est attention(slower) - est attention(faster); negative: slower has faster attention
    kernel_gap_ms: float | None = None  # both kernels on the faster run's batches (None: not measured)
    noise_ms: float | None = None  # 95% CI half-width of the TPOT gap (None: a single pass on either side)

    @property
    def within_noise(self) -> bool:
        """The TPOT gap is inside its CI: no share of it can be attributed."""
        return self.noise_ms is not None and self.tpot_gap_ms <= self.noise_ms

    @property
    def rest_ms(self) -> float:
        """tpot_gap = attn_gap + rest, so rest = tpot_gap - attn_gap."""
        return self.tpot_gap_ms - self.attn_gap_ms

    @property
    def explained(self) -> float | None:
        """Share of the TPOT gap attention explains; None when the TPOTs are equal within the noise."""
        return None if self.within_noise or not self.tpot_gap_ms else self.attn_gap_ms / self.tpot_gap_ms

    @property
    def load_gap_ms(self) -> float | None:
        """attn_gap = kernel_gap + load_gap, where load_gap = A_slow(own batches) - A_slow(faster's batches):
        attention the slower backend spent because its run had other batches, not a slower kernel."""
        return None if self.kernel_gap_ms is None else self.attn_gap_ms - self.kernel_gap_ms

    def to_json(self) -> dict:
        return {"slower": self.slower, "faster": self.faster, "tpot_gap_ms": self.tpot_gap_ms,
                "attn_gap_ms": self.attn_gap_ms, "rest_ms": self.rest_ms, "explained": self.explained,
                "noise_ms": self.noise_ms, "within_noise": self.within_noise, "kernel_gap_ms": self.kernel_gap_ms, "load_gap_ms": self.load_gap_ms}


def on_batches(kernel: str, of: Estimate, timer: Timer) -> float:
    """Attention per step of `kernel` on the batches (and model) of another backend's run, in ms."""
    times = [timer(kernel, of.model.decode_shape(c.context_lens)) for c in of.mix.compositions]
    return step_attention_ms([c.weight for c in of.mix.compositions], times, of.model.layers)


def gap(a: Estimate, b: Estimate, timer: Timer | None = None) -> Gap:
    """With `timer`, also the kernel-only part: the slower kernel timed on the faster run's batches."""
    slow, fast = (a, b) if a.tpot_mean_ms >= b.tpot_mean_ms else (b, a)
    kernel = None if timer is None else on_batches(slow.kernel, fast, timer) - fast.attn_ms
    return Gap(slow.backend, fast.backend, slow.tpot_mean_ms - fast.tpot_mean_ms, slow.attn_ms - fast.attn_ms, kernel,
               _gap_noise_ms(slow, fast))


def _gap_noise_ms(a: Estimate, b: Estimate) -> float | None:
    """Half-width of the difference of two independent means: the root sum of squares of theirs."""
    if a.tpot_half_pct is None or b.tpot_half_pct is None:
        return None
    return math.hypot(a.tpot_mean_ms * a.tpot_half_pct / 100, b.tpot_mean_ms * b.tpot_half_pct / 100)


def gaps(estimates: list[Estimate], timer: Timer | None = None) -> list[Gap]:
    """Every pair, in the order the backends were given."""
    return [gap(a, b, timer) for a, b in combinations(estimates, 2)]


def cached(timer: Timer) -> Timer:
    """A timer that measures each (kernel, shape) once: compositions repeat across runs of one load."""
    seen: dict[tuple[str, DecodeShape], float] = {}

    def timed(kernel: str, shape: DecodeShape) -> float:
        if (kernel, shape) not in seen:
            seen[kernel, shape] = timer(kernel, shape)
        return seen[kernel, shape]

    return timed
