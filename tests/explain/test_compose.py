"""compose: in-flight samples -> weighted decode batch compositions."""

import pytest

from attnbench.errors import UserError
from attnbench.explain import compose


def inflight(decode, prefill=None):
    return {"interval_s": 0.05, "source": "client", "t": [0.05 * i for i in range(len(decode))],
            "decode_ctx": decode, "prefill_len": prefill if prefill is not None else [[] for _ in decode]}


def test_one_steady_batch_is_one_composition_rounded_to_the_page():
    mix = compose.compose(inflight([[100, 203, 300, 401]] * 5), page_size=16)
    (c,) = mix.compositions
    assert c.context_lens == (96, 208, 304, 400)  # each rounded to the nearest page
    assert c.weight == 1.0 and c.samples == 5 and mix.coverage == 1.0
    assert mix.mean_batch == 4 and mix.mean_context == pytest.approx(251)


def test_samples_are_weighted_by_decode_batch_size():
    # 3 samples of batch 1, 1 sample of batch 8: token-steps 3 vs 8
    mix = compose.compose(inflight([[1000]] * 3 + [[1000] * 8]), page_size=16)
    by_batch = {c.batch: c.weight for c in mix.compositions}
    assert by_batch == {8: pytest.approx(8 / 11), 1: pytest.approx(3 / 11)}
    assert mix.compositions[0].batch == 8  # most frequent first
    assert mix.mean_batch == pytest.approx((3 * 1 + 64) / 11)


def test_empty_samples_are_not_decode_time():
    mix = compose.compose(inflight([[], [500, 500], []]), page_size=16)
    assert mix.samples == 3 and mix.decode_samples == 1 and mix.compositions[0].weight == 1.0


def test_coverage_drops_the_rare_tail_and_renormalises():
    # 90 token-steps at batch 10 ctx 1000, 10 at batch 1 ctx 4000
    mix = compose.compose(inflight([[1000] * 10] * 9 + [[4000]] * 10), page_size=16, coverage=0.9)
    (c,) = mix.compositions
    assert c.batch == 10 and c.weight == 1.0 and mix.coverage == pytest.approx(0.9)
    both = compose.compose(inflight([[1000] * 10] * 9 + [[4000]] * 10), page_size=16, coverage=0.95)
    assert [c.weight for c in both.compositions] == [pytest.approx(0.9), pytest.approx(0.1)]


def test_a_bucket_keeps_the_spread_of_its_context_lengths():
    # batches 15 and 17 share a bucket (representative batch 16 = batch-weighted mean), so do their contexts
    a = [64 * (i + 1) for i in range(15)]  # 64 .. 960, mean 512
    b = [512 + 32 * (i - 8) for i in range(17)]  # 256 .. 768, mean 512
    mix = compose.compose(inflight([a, b]), page_size=64)
    (c,) = mix.compositions
    assert c.batch == round((15**2 + 17**2) / 32) == 16
    assert c.context_lens == tuple(sorted(c.context_lens)) and c.context_lens[0] <= 128 and c.context_lens[-1] >= 896
    assert len(set(c.context_lens)) > 8  # ragged, not a uniform mean
    assert c.mean_context == pytest.approx((sum(a) + sum(b)) / 32)


def test_batches_that_were_uniform_stay_uniform_across_a_bucket():
    # contexts 1000 and 1040 fall in one bucket; each sample is uniform, so the representative is too
    (c,) = compose.compose(inflight([[1000] * 4, [1040] * 4]), page_size=16).compositions
    assert c.context_lens == (1024,) * 4 and c.mean_context == 1020


def test_distinct_context_phases_are_distinct_compositions():
    mix = compose.compose(inflight([[1000] * 4] * 2 + [[2000] * 4] * 2), page_size=16)
    assert sorted(c.context_lens[0] for c in mix.compositions) == [1008, 2000]


def test_mixed_share_counts_decode_steps_with_prompts_waiting():
    mix = compose.compose(inflight([[100, 100], [100], [100]], [[1000, 1000], [], []]), page_size=16)
    assert mix.mixed_share == pytest.approx(2 / 4) and mix.mean_waiting_prefill == 2


def test_no_decode_sample_is_a_user_error():
    with pytest.raises(UserError, match="no in-flight sample has a decoding request"):
        compose.compose(inflight([[], []], [[10], [10]]), page_size=16)


@pytest.mark.parametrize("samples", [{}, {"inflight": None}, {"inflight": {"t": []}}])
def test_records_without_inflight_samples_say_to_rerun_serve_bench(samples):
    with pytest.raises(UserError, match="re-run serve-bench with this attnbench version") as e:
        compose.inflight_of(samples, "fa3 1000:1000")
    assert "\n" not in str(e.value) and str(e.value).startswith("fa3 1000:1000")


def test_prefill_attention_flops_hand_computed():
    # L=3: pairs 1+2+3 = 6 per head; 4*D flops each; Hq=2, D=4, 2 layers -> 6 * 16 * 2 * 2 = 384
    assert compose.prefill_attention_flops([3], q_heads=2, head_dim=4, layers=2) == 384
