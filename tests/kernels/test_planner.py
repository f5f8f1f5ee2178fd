"""The split planner: fill the GPU with CTAs, never beyond the workspace or the pages."""

import itertools
import math

import pytest

from attnbench.kernels.fa4_decode.planner import SplitPlan, plan, workspace_shape

H100_SMS = 132


def test_one_long_sequence_is_split_until_the_machine_is_full():
    p = plan(batch=1, kv_heads=8, max_context=32768, num_sms=H100_SMS, page_size=16)
    assert 1 * 8 * p.num_splits >= H100_SMS * 2
    assert p.num_splits <= 64
    assert p.num_splits * p.pages_per_split * 16 >= 32768


def test_a_batch_that_fills_the_gpu_gets_one_split():
    p = plan(batch=256, kv_heads=8, max_context=2048, num_sms=H100_SMS, page_size=16)
    assert p == SplitPlan(num_splits=1, pages_per_split=128, max_splits=64)
    assert not p.split


def test_splits_are_capped_by_max_splits():
    p = plan(batch=1, kv_heads=1, max_context=1 << 20, num_sms=H100_SMS, page_size=16, max_splits=16)
    assert p.num_splits == 16 and p.max_splits == 16


def test_never_more_splits_than_pages():
    p = plan(batch=1, kv_heads=1, max_context=40, num_sms=H100_SMS, page_size=16)
    assert p == SplitPlan(num_splits=3, pages_per_split=1, max_splits=64)


def test_empty_or_single_token_context_is_one_split_of_one_page():
    for ctx in (0, 1):
        assert plan(4, 8, ctx, H100_SMS, 16) == SplitPlan(1, 1, 64)


@pytest.mark.parametrize("bad", [dict(batch=0), dict(kv_heads=0), dict(num_sms=0),
                                 dict(page_size=0), dict(max_splits=0), dict(max_context=-1)])
def test_nonsense_inputs_are_rejected(bad):
    args = dict(batch=1, kv_heads=8, max_context=100, num_sms=H100_SMS, page_size=16) | bad
    with pytest.raises(ValueError):
        plan(**args)


def test_properties_over_a_sweep():
    for batch, kv_heads, ctx, page_size, max_splits in itertools.product(
        [1, 2, 3, 7, 16, 64, 256], [1, 2, 8], [1, 15, 16, 17, 500, 2048, 32768],
        [1, 16, 64], [1, 8, 64],
    ):
        p = plan(batch, kv_heads, ctx, H100_SMS, page_size, max_splits=max_splits)
        pages = max(1, math.ceil(ctx / page_size))
        ctas = batch * kv_heads
        where = (batch, kv_heads, ctx, page_size, max_splits, p)
        assert 1 <= p.num_splits <= min(max_splits, pages), where
        assert p.max_splits == max_splits, where
        # The splits cover the longest sequence, and none of them is empty for it.
        assert p.num_splits * p.pages_per_split >= pages, where
        assert (p.num_splits - 1) * p.pages_per_split < pages, where
        if ctas >= 2 * H100_SMS:
            assert p.num_splits == 1, where
        # Each split is as short as the limits allow: the longest split is the decode's
        # critical path, so this is what filling the machine buys.
        wanted = 1 if ctas >= 2 * H100_SMS else math.ceil(2 * H100_SMS / ctas)
        assert p.pages_per_split == math.ceil(pages / min(wanted, max_splits, pages)), where


def test_workspace_is_sized_for_the_largest_batch_and_split_count():
    ws = workspace_shape(max_batch=256, q_heads=16, head_dim=128, max_splits=64)
    assert ws == {"out_partial": (64, 256, 16, 128), "lse_partial": (64, 256, 16)}
