"""The accuracy statistics a GPQA record reports: intervals independent of row order, the
verdict read from the printed interval, and the repeat-only uncertainty."""

import math
import random

import numpy as np
import pytest

from attnbench import stats


def cells(per_question):
    return {(q, r): x for q, xs in per_question.items() for r, x in enumerate(xs)}


def shuffled(d, seed):
    items = list(d.items())
    random.Random(seed).shuffle(items)
    return dict(items)


def test_bootstrap_does_not_depend_on_row_order():
    rng = np.random.default_rng(1)
    c = cells({f"q{i:03d}": list(rng.integers(0, 2, 4)) for i in range(60)})
    est = [stats.estimate(shuffled(c, k)) for k in range(3)]
    assert len({(e.ci_low, e.ci_high) for e in est}) == 1
    b = {k: 1 - v if k[0] < "q010" else v for k, v in c.items()}
    diffs = [stats.paired_difference(shuffled(c, k), shuffled(b, k + 9)) for k in range(3)]
    assert len({(d.ci_low, d.ci_high, d.p_value) for d in diffs}) == 1


def test_verdict_follows_the_printed_interval():
    # a consistent 1-point gain on 40 of 200 questions: the CI excludes 0 and the verdict says so
    a = cells({f"q{i}": [i % 2] * 8 for i in range(200)})
    b = {k: 1.0 if k[0] in {f"q{i}" for i in range(0, 80, 2)} else v for k, v in a.items()}
    d = stats.paired_difference(a, b, "fa3", "fa4")
    assert d.ci_low > 0 and d.significant and d.p_value < 0.05
    assert "fa4 scores higher" in d.verdict()
    # a symmetric mix: the interval covers 0, the verdict says no evidence, p is large
    b2 = {k: (1 - v if k[0] in {f"q{i}" for i in range(4)} else v) for k, v in a.items()}
    d2 = stats.paired_difference(a, b2)
    assert d2.ci_low <= 0 <= d2.ci_high and not d2.significant and d2.p_value > 0.05
    # constructed: whatever p says, the verdict is the interval's
    odd = stats.PairedDiff("a", "b", 0.01, 0.01, -0.001, 0.02, 0.01, 100, 10)
    assert not odd.significant and odd.verdict().endswith("no evidence of a difference")


def test_repeat_only_stderr_by_hand():
    # q1: [1, 0] (v = 0.5), q2: [1, 1] (v = 0): var = (2 * 0.5 + 0) / 4^2 -> SE = 1/4
    est = stats.estimate(cells({"q1": [1, 0], "q2": [1, 1]}))
    assert est.stderr_repeat == pytest.approx(0.25)
    assert math.isnan(stats.estimate(cells({"q1": [1], "q2": [0]})).stderr_repeat)


def test_repeat_only_is_narrower_than_question_sampling_on_a_gpqa_like_set():
    """198 questions x 8 repeats with per-question rates spread over [0, 1]: about 1 point from
    repeats against about 2.7 from question sampling (the figures a diamond run shows)."""
    rng = np.random.default_rng(0)
    rates = rng.beta(0.6, 0.45, 198)
    c = {(q, r): float(rng.random() < rates[q]) for q in range(198) for r in range(8)}
    est = stats.estimate(c)
    assert 0.006 < est.stderr_repeat < 0.014
    assert 0.02 < est.stderr < 0.034
