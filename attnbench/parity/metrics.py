"""How far a backend's logprobs are from the reference's, position by position.

Teacher-forced prompt positions (prefill) have the same context on both sides by construction.
Greedy continuations (decode) have the same context only up to the first token where they
differ. When the reference rescored the backend's continuation (collect.rescore), every decode
position is compared with the reference's teacher-forced logprobs in the backend's own context;
otherwise only the common prefix is.

Top-k lists are compared too: the share of the reference's top-k that the backend also ranks in
its top-k (overlap), each side's probability mass outside its own top-k (what the top-k metrics
cannot see) and the reference's mass on tokens the backend left out of its top-k (missed)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from attnbench.errors import UserError
from attnbench.parity.collect import Collection, Positions

TIE_MARGIN = 0.05  # nats: a top-1 swap between tokens the reference has this close counts as a tie


def kl_topk(ref_ids: list[int], ref_lps: list[float], ids: list[int], lps: list[float]) -> float:
    """KL(reference || backend) over the union of both top-k lists. A token outside one side's
    top-k gets that side's k-th logprob (an upper bound on its true value, so nothing missing is
    treated as impossible), then each side is renormalised over the union."""
    union = sorted(set(ref_ids) | set(ids))
    p = _renormalised(dict(zip(ref_ids, ref_lps)), union, min(ref_lps))
    q = _renormalised(dict(zip(ids, lps)), union, min(lps))
    return max(0.0, float(np.sum(np.exp(p) * (p - q))))


def _renormalised(lps: dict[int, float], union: list[int], floor: float) -> np.ndarray:
    x = np.array([lps.get(t, floor) for t in union], dtype=np.float64)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


FLAT_SPREAD = 0.0  # nats: top-k logprobs within this of each other are "all equal". Exact: constant
# logits give bitwise equal logprobs, while vLLM's dummy weights (logits ~1e-5 apart) must not count


def flat_fraction(c: Collection) -> float | None:
    """The share of positions (prefill and decode) whose top-k logprobs are all equal: a flat,
    i.e. uniform, distribution. A trained or randomly initialised model never has its k best
    tokens exactly tied; constant logits do (an all-zero embedding or hidden state, weights that
    were never loaded), and then every backend answers -ln(vocab) everywhere, agrees bitwise with
    every other backend and means nothing. None when there are no positions with k >= 2."""
    flat = total = 0
    for r in c.results:
        for part in (r.prefill, r.decode):
            for lps in part.top_logprobs:
                if len(lps) >= 2:
                    total += 1
                    flat += max(lps) - min(lps) <= FLAT_SPREAD
    return flat / total if total else None


def degenerate(c: Collection, max_flat: float) -> str | None:
    """Why `c` cannot be compared meaningfully (its distributions are flat at more than `max_flat`
    of the positions), or None."""
    frac = flat_fraction(c)
    if frac is None or frac <= max_flat:
        return None
    lps = [lp for r in c.results for lp in r.prefill.logprobs if lp > -9000]
    uniform = ""
    if lps and max(lps) - min(lps) <= FLAT_SPREAD:
        uniform = f", every logprob {lps[0]:.4f} = -ln {math.exp(-lps[0]):.0f}: uniform over the vocabulary"
    return (f"degenerate output: the top-{c.settings.top_k} logprobs are all exactly equal at {frac:.1%} of positions"
            f"{uniform}; the model computes constant logits, so its weights (or some of them) were not loaded "
            "(e.g. tied embeddings saved only as lm_head.weight, which vLLM skips) and any agreement with "
            "another backend is meaningless")


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def top1_agrees(ref: Positions, other: Positions, i: int, tie_margin: float) -> tuple[bool, bool]:
    """(exact agreement, agreement up to ties): a different top-1 is a tie when the reference
    rates the backend's top-1 within tie_margin of its own (e.g. dummy weights, where all logits
    are nearly equal, or a genuine near-tie that bf16 rounding may break either way)."""
    mine, theirs = ref.top_ids[i][0], other.top_ids[i][0]
    if mine == theirs:
        return True, True
    ref_lp = dict(zip(ref.top_ids[i], ref.top_logprobs[i]))
    return False, theirs in ref_lp and ref.top_logprobs[i][0] - ref_lp[theirs] <= tie_margin


@dataclass
class Comparison:
    """One backend against one reference: scalar metrics and per-prompt arrays."""

    backend: str
    reference: str
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    samples: dict[str, list] = field(default_factory=dict)


def tail_mass(lps: list[float]) -> float:
    """Probability outside a top-k list: 1 - the sum of its probabilities."""
    return min(1.0, max(0.0, 1.0 - float(np.exp(np.asarray(lps, dtype=np.float64)).sum())))


def topk_overlap(ref_ids: list[int], ids: list[int]) -> float:
    """Share of the reference's top-k that is in the backend's top-k (k: the shorter list)."""
    k = min(len(ref_ids), len(ids))
    return len(set(ref_ids[:k]) & set(ids[:k])) / k if k else 1.0


def missed_mass(ref_ids: list[int], ref_lps: list[float], ids: list[int]) -> float:
    """The reference's probability on its top-k tokens that the backend's top-k lacks."""
    theirs = set(ids)
    return float(sum(math.exp(lp) for t, lp in zip(ref_ids, ref_lps) if t not in theirs))


@dataclass
class _Acc:
    """Per-position values of one part (prefill or decode)."""

    d: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    agree: list[tuple[bool, bool]] = field(default_factory=list)
    overlap: list[float] = field(default_factory=list)
    tail: list[float] = field(default_factory=list)
    ref_tail: list[float] = field(default_factory=list)
    missed: list[float] = field(default_factory=list)

    def add(self, ref: Positions, other: Positions, n: int, tie_margin: float) -> list[float]:
        d = [abs(other.logprobs[i] - ref.logprobs[i]) for i in range(n)]
        self.d += d
        for i in range(n):
            self.kl.append(kl_topk(ref.top_ids[i], ref.top_logprobs[i], other.top_ids[i], other.top_logprobs[i]))
            self.agree.append(top1_agrees(ref, other, i, tie_margin))
            self.overlap.append(topk_overlap(ref.top_ids[i], other.top_ids[i]))
            self.tail.append(tail_mass(other.top_logprobs[i]))
            self.ref_tail.append(tail_mass(ref.top_logprobs[i]))
            self.missed.append(missed_mass(ref.top_ids[i], ref.top_logprobs[i], other.top_ids[i]))
        return d

    def __add__(self, other: "_Acc") -> "_Acc":
        return _Acc(*(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)))


def _stats(values: list[float]) -> tuple[float | None, float | None]:
    return (max(values), float(np.mean(values))) if values else (None, None)


def _mean(values: list) -> float | None:
    return float(np.mean(values)) if values else None


def rescored(ref: Collection, other: Collection) -> bool:
    """Whether `other`'s continuations carry `ref`'s teacher-forced logprobs (collect.rescore)."""
    return bool(other.results) and other.rescored_by == ref.name and all(
        r.rescored is not None and len(r.rescored) == len(r.decode) for r in other.results)


def compare(ref: Collection, other: Collection, tie_margin: float = TIE_MARGIN) -> Comparison:
    """Metrics of `other` against `ref`; both must come from the same prompts."""
    if len(ref.results) != len(other.results) or any(
            a.prompt_token_ids != b.prompt_token_ids for a, b in zip(ref.results, other.results)):
        raise UserError(f"{other.name} and {ref.name} were collected from different prompts; "
                        "collect both with the same --seed, --num-prompts, --prompts and prompt lengths")
    every = rescored(ref, other)
    pre, dec = _Acc(), _Acc()
    per_prompt = {"prefill_abs_dlogprob": [], "decode_abs_dlogprob": [], "greedy_prefix_len": [],
                  "greedy_len": [], "prompt_len": []}
    for a, b in zip(ref.results, other.results):
        if len(a.prefill) != len(b.prefill):
            raise UserError(f"{other.name}: {len(b.prefill)} prefill positions where {ref.name} has {len(a.prefill)}")
        d = pre.add(a.prefill, b.prefill, len(a.prefill), tie_margin)
        prefix = common_prefix(a.decode.token_ids, b.decode.token_ids)
        dd = (dec.add(b.rescored, b.decode, len(b.decode), tie_margin) if every
              else dec.add(a.decode, b.decode, prefix, tie_margin))
        per_prompt["prefill_abs_dlogprob"].append([round(x, 6) for x in d])
        per_prompt["decode_abs_dlogprob"].append([round(x, 6) for x in dd])
        per_prompt["greedy_prefix_len"].append(prefix)
        per_prompt["greedy_len"].append(min(len(a.decode), len(b.decode)))
        per_prompt["prompt_len"].append(len(a.prompt_token_ids))
    both = pre + dec
    prefixes, lengths = per_prompt["greedy_prefix_len"], per_prompt["greedy_len"]
    m: dict[str, float | int | None] = {}
    m["max_abs_dlogprob"], m["mean_abs_dlogprob"] = _stats(both.d)
    m["max_kl"], m["mean_kl"] = _stats(both.kl)
    m["prefill_max_abs_dlogprob"], m["prefill_mean_abs_dlogprob"] = _stats(pre.d)
    m["decode_max_abs_dlogprob"], m["decode_mean_abs_dlogprob"] = _stats(dec.d)
    m["prefill_mean_kl"], m["decode_mean_kl"] = _stats(pre.kl)[1], _stats(dec.kl)[1]
    m["top1_agreement"] = _mean([x for x, _ in pre.agree])
    m["top1_agreement_tie_aware"] = _mean([y for _, y in pre.agree])
    m["decode_top1_agreement_tie_aware"] = _mean([y for _, y in dec.agree]) if every else None
    m["topk_overlap_mean"] = _mean(both.overlap)
    m["topk_overlap_min"] = min(both.overlap) if both.overlap else None
    m["tail_mass_mean"], m["ref_tail_mass_mean"] = _mean(both.tail), _mean(both.ref_tail)
    m["tail_mass_max"] = max(both.tail) if both.tail else None
    m["missed_mass_mean"] = _mean(both.missed)
    m["missed_mass_max"] = max(both.missed) if both.missed else None
    m["greedy_prefix_mean"] = float(np.mean(prefixes)) if prefixes else None
    m["greedy_prefix_min"] = min(prefixes) if prefixes else None
    m["greedy_identical_frac"] = float(np.mean([p == n for p, n in zip(prefixes, lengths)])) if prefixes else None
    m["prefill_positions"], m["decode_positions"] = len(pre.d), len(dec.d)
    m["decode_rescored"] = int(every)
    m = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()}
    return Comparison(other.name, ref.name, m, per_prompt)
