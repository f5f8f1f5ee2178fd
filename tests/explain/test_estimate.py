"""estimate: composition kernel times x layers beside TPOT, and pairwise gaps, against hand-computed numbers."""

import pytest

from attnbench.errors import UserError
from attnbench.explain import compose, estimate, render
from attnbench.microbench.base import DecodeShape

MODEL = estimate.ModelShape(layers=28, q_heads=16, kv_heads=8, head_dim=128, page_size=16, dtype="bfloat16")


def mix_of(decode):
    return compose.compose({"decode_ctx": decode, "prefill_len": [[] for _ in decode]}, page_size=16)


def linear_timer(per_token_us: dict[str, float]):
    """Kernel time = per-token cost x total KV tokens of the batch; records what it was asked."""
    calls = []

    def timer(kernel, shape):
        calls.append((kernel, shape))
        return per_token_us[kernel] * sum(shape.context_lens)

    timer.calls = calls
    return timer


def test_model_shape_comes_from_the_serve_scenario():
    scenario = {"model_shape": {"num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
                                "head_dim": 128, "dtype": "bfloat16", "block_size": 16}}
    assert estimate.ModelShape.of(scenario) == MODEL


@pytest.mark.parametrize("scenario", [{}, {"model_shape": None}, {"model_shape": {"num_hidden_layers": 28}}])
def test_unknown_model_shape_is_a_user_error(scenario):
    with pytest.raises(UserError, match="model_shape"):
        estimate.ModelShape.of(scenario, "fa3")


def test_a_layout_microbench_cannot_time_is_a_user_error():
    shape = {"num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 4, "head_dim": 64,
             "dtype": "float32", "block_size": 16}
    with pytest.raises(UserError, match="not a layout microbench can time: dtype 'float32'"):
        estimate.ModelShape.of({"model_shape": shape}, "fa3")


def test_step_attention_is_weighted_kernel_time_times_layers():
    # 0.75 * 10us + 0.25 * 30us = 15us per layer; 28 layers -> 420us = 0.42ms
    assert estimate.step_attention_ms([0.75, 0.25], [10.0, 30.0], 28) == pytest.approx(0.42)


def test_estimate_times_each_composition_with_the_models_layout():
    # 3 samples at batch 2 ctx 1008 (6 token-steps), 1 at batch 2 ctx 2000 (2): weights 0.75 / 0.25
    mix = mix_of([[1008, 1008]] * 3 + [[2000, 2000]])
    timer = linear_timer({"fa3": 0.01})
    est = estimate.estimate("fa3", "fa3", {"mean_tpot_ms": 2.0, "median_tpot_ms": 1.9}, mix, MODEL, timer)
    # per layer: 0.75 * 0.01 * 2016 + 0.25 * 0.01 * 4000 = 15.12 + 10 = 25.12us; x28 = 703.36us
    assert est.attn_ms == pytest.approx(0.70336)
    assert est.share == pytest.approx(0.70336 / 2.0) and est.rest_ms == pytest.approx(2.0 - 0.70336)
    assert est.tpot_median_ms == 1.9
    shapes = [s for _, s in timer.calls]
    assert shapes == [DecodeShape(2, (1008, 1008)), DecodeShape(2, (2000, 2000))]
    assert {(s.q_heads, s.kv_heads, s.head_dim, s.page_size, s.dtype) for s in shapes} == {(16, 8, 128, 16, "bfloat16")}


def test_a_run_without_tpot_cannot_be_explained():
    with pytest.raises(UserError, match="--output > 1"):
        estimate.estimate("fa3", "fa3", {"mean_tpot_ms": None}, mix_of([[16]]), MODEL, linear_timer({"fa3": 1}))


def test_gap_splits_into_attention_and_rest():
    # FA4 22.8ms vs FA3 17.1ms TPOT; attention 4.2ms vs 3.75ms -> 0.45 of 5.7ms explained, 5.25ms rest
    mix = mix_of([[1000] * 4])
    a = estimate.Estimate("fa3", "fa3", 17.1, None, 3.75, [1.0], mix, MODEL)
    b = estimate.Estimate("fa4", "fa4", 22.8, None, 4.2, [1.0], mix, MODEL)
    (g,) = estimate.gaps([a, b])
    assert (g.slower, g.faster) == ("fa4", "fa3")
    assert g.tpot_gap_ms == pytest.approx(5.7) and g.attn_gap_ms == pytest.approx(0.45)
    assert g.rest_ms == pytest.approx(5.25) and g.explained == pytest.approx(0.45 / 5.7)


def test_gap_can_be_negative_attention_and_equal_tpot_has_no_share():
    mix = mix_of([[1000]])
    a = estimate.Estimate("a", "a", 10.0, None, 2.0, [1.0], mix, MODEL)
    b = estimate.Estimate("b", "b", 12.0, None, 1.0, [1.0], mix, MODEL)
    c = estimate.Estimate("c", "c", 10.0, None, 3.0, [1.0], mix, MODEL)
    ab, ac, bc = estimate.gaps([a, b, c])
    assert (ab.slower, ab.attn_gap_ms, ab.rest_ms) == ("b", -1.0, 3.0)  # b's attention is faster, the rest is not
    assert ac.explained is None
    assert (bc.slower, bc.tpot_gap_ms, bc.attn_gap_ms) == ("b", 2.0, -2.0)


def test_a_gap_inside_the_repeats_noise_has_no_share():
    # 12.95 +-1.6% against 12.84 +-1.6%: the 0.11 ms gap is inside its CI (hypot(0.207, 0.205) = 0.29 ms)
    mix = mix_of([[1000]])
    fa3 = estimate.Estimate("fa3", "fa3", 12.95, None, 10.89, [1.0], mix, MODEL, tpot_half_pct=1.6)
    ours = estimate.Estimate("ours", "ours", 12.84, None, 10.64, [1.0], mix, MODEL, tpot_half_pct=1.6)
    fa4 = estimate.Estimate("fa4", "fa4", 17.09, None, 14.99, [1.0], mix, MODEL, tpot_half_pct=2.1)
    near, far, _ = estimate.gaps([fa3, ours, fa4])
    assert near.noise_ms == pytest.approx(0.2908, abs=1e-3) and near.within_noise and near.explained is None
    assert not far.within_noise and far.explained == pytest.approx((14.99 - 10.89) / (17.09 - 12.95))
    assert "within noise" in render.gap_line(near) and "of the gap" in render.gap_line(far)
    one_pass = estimate.Estimate("one", "one", 12.5, None, 10.0, [1.0], mix, MODEL)
    (g,) = estimate.gaps([fa3, one_pass])
    assert g.noise_ms is None and not g.within_noise  # a single pass carries no interval to judge by


def test_cached_timer_measures_each_shape_once():
    timer = linear_timer({"fa3": 1.0, "fa4": 2.0})
    timed = estimate.cached(timer)
    s = DecodeShape.uniform(2, 32)
    assert [timed("fa3", s), timed("fa3", DecodeShape.uniform(2, 32)), timed("fa4", s)] == [64, 64, 128]
    assert len(timer.calls) == 2


def test_same_batch_timing_splits_the_attention_gap_into_kernel_and_load():
    timer = linear_timer({"fa3": 0.01, "fa4": 0.02})
    fast = estimate.estimate("fa3", "fa3", {"mean_tpot_ms": 10.0}, mix_of([[1008, 1008]]), MODEL, timer)
    slow = estimate.estimate("fa4", "fa4", {"mean_tpot_ms": 14.0}, mix_of([[2000, 2000]]), MODEL, timer)
    # fa3: 0.01 * 2016 * 28 = 564.48us; fa4: 0.02 * 4000 * 28 = 2240us; fa4 on fa3's batch: 0.02 * 2016 * 28 = 1128.96us
    g = estimate.gap(fast, slow, timer)
    assert g.attn_gap_ms == pytest.approx(2.24 - 0.56448)
    assert g.kernel_gap_ms == pytest.approx(1.12896 - 0.56448) and g.load_gap_ms == pytest.approx(2.24 - 1.12896)
    assert timer.calls[-1] == ("fa4", DecodeShape(2, (1008, 1008)))
    assert estimate.gap(fast, slow).kernel_gap_ms is None and estimate.gap(fast, slow).load_gap_ms is None
