"""The comparison math, against values computed by hand."""

import math

import pytest

from attnbench.errors import UserError
from attnbench.parity.collect import Collection, Positions, PromptResult, Settings
from attnbench.parity.metrics import common_prefix, compare, kl_topk
from attnbench.parity.thresholds import Thresholds

ln = math.log


def test_kl_identical_lists_is_zero():
    assert kl_topk([1, 2], [ln(0.5), ln(0.25)], [1, 2], [ln(0.5), ln(0.25)]) == pytest.approx(0.0, abs=1e-12)


def test_kl_fills_missing_tokens_with_that_sides_kth_logprob_then_renormalises():
    # reference {1: .5, 2: .25}, token 3 missing -> .25; union sums to 1: p = (.5, .25, .25)
    # backend   {1: .6, 3: .2},  token 2 missing -> .2;  union sums to 1: q = (.6, .2, .2)
    expected = 0.5 * ln(0.5 / 0.6) + 0.25 * ln(0.25 / 0.2) * 2
    assert kl_topk([1, 2], [ln(0.5), ln(0.25)], [1, 3], [ln(0.6), ln(0.2)]) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.0204109, abs=1e-6)


def test_kl_ignores_a_constant_shift_of_all_logprobs():
    ref = [ln(0.7), ln(0.2), ln(0.1)]
    assert kl_topk([4, 5, 6], ref, [4, 5, 6], [x - 0.3 for x in ref]) == pytest.approx(0.0, abs=1e-12)


def test_kl_of_renormalised_distributions_is_exact_when_both_lists_cover_the_same_tokens():
    p, q = [0.7, 0.3], [0.4, 0.6]
    expected = 0.7 * ln(0.7 / 0.4) + 0.3 * ln(0.3 / 0.6)
    assert kl_topk([1, 2], [ln(x) for x in p], [2, 1], [ln(q[1]), ln(q[0])]) == pytest.approx(expected)


def test_common_prefix():
    assert common_prefix([5, 6, 7], [5, 6, 8]) == 2
    assert common_prefix([5, 6], [5, 6]) == 2
    assert common_prefix([1], [2, 3]) == 0


def _positions(tokens, lps, tops):
    p = Positions()
    for t, lp, top in zip(tokens, lps, tops):
        p.append(t, lp, top)
    return p


def _collection(name, prefill_lps, prefill_tops, decode_tokens, decode_tops):
    prompt = [10, 11, 12]
    prefill = _positions(prompt[1:], prefill_lps, prefill_tops)
    decode = _positions(decode_tokens, [top[t] for t, top in zip(decode_tokens, decode_tops)], decode_tops)
    return Collection(name, "m", Settings(), [PromptResult(prompt, prefill, decode)])


REF_TOPS = [{11: -1.0, 20: -1.5}, {12: -2.0, 21: -0.2}]
DEC_TOPS = [{5: -0.1, 9: -3.0}, {6: -0.2, 9: -2.0}, {7: -0.3, 8: -0.4}]


def test_compare_by_hand():
    ref = _collection("ref", [-1.0, -2.0], REF_TOPS, [5, 6, 7], DEC_TOPS)
    other_dec = [{5: -0.1, 9: -3.0}, {6: -0.5, 9: -2.0}, {8: -0.3, 7: -0.4}]
    other = _collection("b", [-1.1, -2.0], [{11: -1.1, 20: -1.5}, {12: -2.0, 21: -0.2}], [5, 6, 8], other_dec)
    c = compare(ref, other)
    m = c.metrics
    # prefill |Δ| = (0.1, 0); decode on the common prefix (2 tokens) |Δ| = (0, 0.3)
    assert m["prefill_max_abs_dlogprob"] == pytest.approx(0.1)
    assert m["prefill_mean_abs_dlogprob"] == pytest.approx(0.05)
    assert m["decode_max_abs_dlogprob"] == pytest.approx(0.3)
    assert m["decode_mean_abs_dlogprob"] == pytest.approx(0.15)
    assert m["max_abs_dlogprob"] == pytest.approx(0.3)
    assert m["mean_abs_dlogprob"] == pytest.approx(0.4 / 4)
    assert m["greedy_prefix_min"] == 2 and m["greedy_prefix_mean"] == 2.0
    assert m["greedy_identical_frac"] == 0.0
    assert m["top1_agreement"] == 1.0
    assert m["prefill_positions"] == 2 and m["decode_positions"] == 2
    # KL at prefill position 0: p ∝ (e^-1, e^-1.5), q ∝ (e^-1.1, e^-1.5)
    p0 = 1 / (1 + math.exp(-0.5))
    q0 = 1 / (1 + math.exp(-0.4))
    kl0 = p0 * ln(p0 / q0) + (1 - p0) * ln((1 - p0) / (1 - q0))
    assert m["prefill_mean_kl"] == pytest.approx(kl0 / 2)
    assert c.samples["greedy_prefix_len"] == [2]
    assert c.samples["prefill_abs_dlogprob"] == [[pytest.approx(0.1), 0.0]]
    assert c.samples["decode_abs_dlogprob"] == [[0.0, pytest.approx(0.3)]]


def test_top1_disagreement_and_ties():
    ref = _collection("ref", [-1.0, -2.0], [{11: -1.0, 20: -1.02}, {12: -2.0, 21: -0.2}], [5], DEC_TOPS[:1])
    # position 0: backend prefers 20, which the reference rates 0.02 below its top-1: a tie
    # position 1: backend prefers 12, which the reference rates 1.8 below 21: a real disagreement
    other = _collection("b", [-1.0, -2.0], [{20: -0.9, 11: -1.0}, {12: -0.1, 21: -0.2}], [5], DEC_TOPS[:1])
    m = compare(ref, other).metrics
    assert m["top1_agreement"] == 0.0
    assert m["top1_agreement_tie_aware"] == 0.5


def test_compare_refuses_different_prompts():
    a = _collection("a", [-1.0, -2.0], REF_TOPS, [5], DEC_TOPS[:1])
    b = _collection("b", [-1.0, -2.0], REF_TOPS, [5], DEC_TOPS[:1])
    b.results[0].prompt_token_ids = [10, 11, 13]
    with pytest.raises(UserError, match="different prompts"):
        compare(a, b)


def test_thresholds():
    t = Thresholds()
    good = {"max_abs_dlogprob": 0.1, "mean_abs_dlogprob": 0.01, "mean_kl": 1e-4, "top1_agreement_tie_aware": 1.0}
    assert t.failures(good) == []
    bad = {**good, "max_abs_dlogprob": 0.3, "top1_agreement_tie_aware": 0.9}
    assert [f.split()[0] for f in t.failures(bad)] == ["max_abs_dlogprob", "top1_agreement_tie_aware"]
    assert t.failures({**good, "max_abs_dlogprob": 0.3}, fp32=True) == []  # 0.3 <= 2 x 0.25
    assert Thresholds(min_greedy_prefix_mean=10).failures({**good, "greedy_prefix_mean": 3.0}) != []


def test_collection_round_trips_through_json(tmp_path):
    a = _collection("a", [-1.0, -2.0], REF_TOPS, [5, 6, 7], DEC_TOPS)
    for name in ("a.json", "a.json.gz"):
        a.save(tmp_path / name)
        assert Collection.load(tmp_path / name) == a
    b = Collection.load(tmp_path / "a.json.gz")
    assert compare(a, b).metrics["max_abs_dlogprob"] == 0.0


def test_loading_something_else_is_a_user_error(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(UserError, match="not a parity collection"):
        Collection.load(tmp_path / "x.json")
