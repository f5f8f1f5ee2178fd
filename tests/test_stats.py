"""attnbench.stats against values computed by hand (derivations in the comments)."""

import math

import numpy as np
import pytest

from attnbench import stats


def cells(per_question):
    """{'q1': [1, 0], ...} -> {(q, repeat): score}."""
    return {(q, r): x for q, xs in per_question.items() for r, x in enumerate(xs)}


def test_mean_and_clustered_stderr_equal_repeats():
    # question means 1, 0.5, 0 -> p = 0.5; sd of the means = 0.5, so SE = 0.5 / sqrt(3)
    est = stats.estimate(cells({"q1": [1, 1], "q2": [0, 1], "q3": [0, 0]}))
    assert est.mean == pytest.approx(0.5)
    assert est.stderr == pytest.approx(0.5 / math.sqrt(3))
    assert (est.n_samples, est.n_questions) == (6, 3)


def test_clustered_stderr_unequal_repeats():
    # s = [3, 0], n = [3, 1], p = 3/4; residuals s - n p = [0.75, -0.75];
    # var = G/(G-1) * 1.125 / N^2 = 2 * 1.125 / 16 -> SE = 1.5 / 4
    est = stats.estimate(cells({"q1": [1, 1, 1], "q2": [0]}))
    assert est.mean == pytest.approx(0.75)
    assert est.stderr == pytest.approx(0.375)


def test_clustered_stderr_is_wider_than_the_naive_one_when_repeats_agree():
    # every question answered the same way every time: 8 repeats add no information
    est = stats.estimate(cells({f"q{i}": [i % 2] * 8 for i in range(10)}))
    naive = math.sqrt(0.5 * 0.5 / 80)
    assert est.stderr == pytest.approx(math.sqrt(0.25 * 10 / 9) / math.sqrt(10))
    assert est.stderr > 2.5 * naive


def test_bootstrap_ci_two_questions_spans_the_extremes():
    # resampling 2 questions gives {q1,q1} (1.0) and {q2,q2} (0.0) with 1/4 each: both
    # beyond the 2.5% tails, so the percentile interval is [0, 1]
    est = stats.estimate(cells({"q1": [1], "q2": [0]}))
    assert (est.ci_low, est.ci_high) == (0.0, 1.0)


def test_bootstrap_ci_degenerate_and_contains_the_mean():
    est = stats.estimate(cells({f"q{i}": [1, 1] for i in range(5)}))
    assert (est.ci_low, est.ci_high) == (1.0, 1.0)
    rng = np.random.default_rng(3)
    est = stats.estimate(cells({f"q{i}": list(rng.integers(0, 2, 8)) for i in range(200)}))
    assert est.ci_low < est.mean < est.ci_high
    # for many questions the percentile CI is close to mean +- 1.96 SE
    assert est.ci_high - est.ci_low == pytest.approx(2 * 1.96 * est.stderr, rel=0.1)


def test_paired_difference_by_hand():
    a = cells({"q1": [1, 1], "q2": [0, 1], "q3": [0, 0]})
    b = cells({"q1": [1, 1], "q2": [1, 1], "q3": [1, 0]})
    # per-question summed differences t = [0, 1, 1], n = 2 each: d = 2/6;
    # residuals t - n d = [-2/3, 1/3, 1/3], sum of squares 2/3, * 3/2 = 1 -> SE = 1/6
    # bootstrap p: a resample is <= 0 only when it draws q1 three times (1/27), so p ~ 2/27
    d = stats.paired_difference(a, b, "fa3", "fa4")
    assert d.diff == pytest.approx(1 / 3)
    assert d.stderr == pytest.approx(1 / 6)
    assert d.p_value == pytest.approx(2 / 27, abs=0.01)
    assert (d.n_cells, d.n_questions) == (6, 3)
    assert not d.significant


def test_paired_difference_uses_only_common_cells():
    a = cells({"q1": [1, 0], "q2": [1]})
    b = cells({"q1": [1], "q2": [0, 1]})
    d = stats.paired_difference(a, b)
    # common cells (q1,0): 1-1 and (q2,0): 0-1 -> d = -1/2
    assert d.n_cells == 2
    assert d.diff == pytest.approx(-0.5)


def test_verdict_lines():
    same = stats.PairedDiff("fa3", "fa4", -0.008, 0.01, -0.029, 0.013, 0.44, 1584, 198)
    assert same.verdict() == "fa4 vs fa3: -0.8 pts, 95% CI [-2.9, +1.3]: no evidence of a difference"
    worse = stats.PairedDiff("fa3", "fa4", -0.05, 0.01, -0.07, -0.03, 0.001, 1584, 198)
    assert worse.verdict() == "fa4 vs fa3: -5.0 pts, 95% CI [-7.0, -3.0]: fa4 scores lower (p = 0.001)"


def test_per_repeat_and_per_question():
    c = cells({"q1": [1, 0], "q2": [1, 1]})
    assert stats.per_repeat_means(c) == {0: 1.0, 1: 0.5}
    assert stats.per_question_means(c) == {"q1": 0.5, "q2": 1.0}


def test_empty_input_is_nan_not_an_error():
    est = stats.estimate({})
    assert math.isnan(est.mean) and est.n_samples == 0


# Repeated benchmark runs: t-intervals, and ratios on the log scale


def test_t_quantiles_of_the_table_and_between():
    assert stats.t975(2) == pytest.approx(4.303)
    assert stats.t975(10) == pytest.approx(2.228)
    assert stats.t975(11) == pytest.approx(2.228 + (1 / 11 - 1 / 10) / (1 / 12 - 1 / 10) * (2.179 - 2.228))
    assert stats.t975(10_000) == pytest.approx(1.96, abs=0.001)
    assert math.isnan(stats.t975(0))


def test_spread_of_three_runs_by_hand():
    s = stats.spread([100.0, 110.0, 120.0])
    # mean 110, sd 10, half-width t(2) * 10 / sqrt(3) = 4.303 * 5.7735 = 24.844
    assert (s.n, s.mean, s.median, s.min, s.max) == (3, 110.0, 110.0, 100.0, 120.0)
    assert s.std == pytest.approx(10.0)
    assert (s.ci_low, s.ci_high) == pytest.approx((110 - 24.8438, 110 + 24.8438), abs=1e-3)
    assert s.half_width_pct == pytest.approx(100 * 24.8438 / 110, abs=1e-3)
    one = stats.spread([5.0, None])
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.ci_low)


def test_paired_ratio_interval_on_logs_by_hand():
    a, b = [110.0, 121.0, 99.0], [100.0, 110.0, 100.0]
    d = [math.log(x / y) for x, y in zip(a, b)]  # 0.09531, 0.09531, -0.01005
    m = sum(d) / 3
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / 2)
    half = 4.303 * sd / math.sqrt(3)
    r = stats.ratio_ci(a, b, paired=True)
    assert r.ratio == pytest.approx(math.exp(m))
    assert (r.ci_low, r.ci_high) == pytest.approx((math.exp(m - half), math.exp(m + half)), rel=1e-3)
    assert r.contains_one and "paired" in r.method


def test_a_clear_difference_excludes_one_and_pairing_removes_shared_drift():
    # drift shared by both backends (100 -> 130) hides a steady 5% gap from an unpaired interval only
    a = [105.0, 120.75, 136.5]
    b = [100.0, 115.0, 130.0]
    paired = stats.ratio_ci(a, b, paired=True)
    unpaired = stats.ratio_ci(a, b, paired=False)
    assert paired.ratio == pytest.approx(1.05) and paired.contains_one is False
    assert unpaired.contains_one is True and "Welch" in unpaired.method
    assert stats.ratio_ci([1.0], [2.0], paired=True).contains_one is None  # one run each: no interval
