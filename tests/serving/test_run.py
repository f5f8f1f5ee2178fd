"""serve-bench's pass plan: when the measured passes of a backend and shape are precise enough."""

import pytest

from attnbench.records.record import Record
from attnbench.serving.run import precise_enough


def passes(*tps, flagged=()):
    out = []
    for i, tp in enumerate(tps):
        flags = [{"kind": "jit_compile", "evidence": "x", "contaminates": True}] if i in flagged else []
        out.append(Record(kind="serve", backend="fa3", scenario={"repeat": i}, metrics={"output_throughput": tp},
                          samples={"observation": {"flags": flags}}))
    return out


def test_the_95_percent_ci_half_width_against_the_target_by_hand():
    # mean 100, sd 2, t(2) = 4.303: half-width 4.303 x 2 / sqrt(3) = 4.97% of the mean
    three = passes(100.0, 102.0, 98.0)
    assert precise_enough(three, 0.05) and not precise_enough(three, 0.049)
    assert not precise_enough(passes(100.0), 0.99)  # one pass has no interval


def test_contaminated_passes_do_not_count_unless_kept():
    noisy = passes(100.0, 102.0, 98.0, 50.0, flagged={3})
    assert precise_enough(noisy, 0.05)
    assert not precise_enough(noisy, 0.05, keep_flagged=True)


def test_failed_passes_do_not_count():
    rs = passes(100.0, 102.0, 98.0, 10.0)
    rs[3].status = "failed"
    assert precise_enough(rs, 0.05)


@pytest.mark.parametrize("target", [0.0, -1.0])
def test_a_target_of_zero_or_less_is_never_met(target):
    assert not precise_enough(passes(100.0, 100.0, 100.0 + 1e-9), target)
