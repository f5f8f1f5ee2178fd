"""Metrics follow `vllm bench serve`'s definitions; checked on hand-built request timelines."""

import math

import pytest

from attnbench.serving import metrics
from attnbench.serving.client import RequestResult


def req(start, ttft, itls, prompt_len=10, output_len=None, error=""):
    latency = ttft + sum(itls)
    return RequestResult(prompt_len=prompt_len, output_len=output_len if output_len is not None else len(itls) + 1,
                         start=start, ttft=ttft, itls=list(itls), latency=latency, chunks=len(itls) + 1, error=error)


def test_two_requests_by_hand():
    # a: sent at 0, first token at 0.1, then 4 tokens every 0.05 -> ends 0.3, tpot 0.05
    # b: sent at 0.2, first token at 0.5, then 2 tokens every 0.2 -> ends 0.9, tpot 0.2
    a = req(0.0, 0.1, [0.05] * 4, prompt_len=100)
    b = req(0.2, 0.3, [0.2, 0.2], prompt_len=50)
    m = metrics.compute([a, b], percentiles=[50, 99])
    assert m["completed"] == 2 and m["failed"] == 0
    assert m["duration"] == pytest.approx(0.9)
    assert m["total_input_tokens"] == 150 and m["total_output_tokens"] == 8
    assert m["output_throughput"] == pytest.approx(8 / 0.9)
    assert m["total_token_throughput"] == pytest.approx(158 / 0.9)
    assert m["request_throughput"] == pytest.approx(2 / 0.9)
    assert m["mean_ttft_ms"] == pytest.approx(200.0)
    assert m["median_ttft_ms"] == pytest.approx(200.0)
    assert m["std_ttft_ms"] == pytest.approx(100.0)
    assert m["mean_tpot_ms"] == pytest.approx((50 + 200) / 2)
    # ITL pools every gap: four of 50 ms and two of 200 ms
    assert m["mean_itl_ms"] == pytest.approx((4 * 50 + 2 * 200) / 6)
    assert m["median_itl_ms"] == pytest.approx(50.0)
    assert m["mean_e2el_ms"] == pytest.approx((300 + 700) / 2)
    assert m["max_concurrent_requests"] == 2  # b starts at 0.2 before a ends at 0.3
    assert m["max_output_tokens_per_s"] == 8  # every token inside the first second
    assert m["request_goodput"] is None


def test_failed_requests_are_counted_not_scored():
    ok = req(0.0, 0.1, [0.1])
    bad = RequestResult(prompt_len=10, start=0.0, error="HTTP 500: boom")
    m = metrics.compute([ok, bad])
    assert (m["completed"], m["failed"]) == (1, 1)
    assert m["total_input_tokens"] == 10
    assert m["mean_ttft_ms"] == pytest.approx(100.0)


def test_all_failed_gives_no_latencies():
    m = metrics.compute([RequestResult(prompt_len=3, error="x")])
    assert m["completed"] == 0 and m["mean_ttft_ms"] is None and m["output_throughput"] == 0


def test_goodput_counts_requests_within_every_slo():
    fast = req(0.0, 0.1, [0.01] * 10)  # ttft 100 ms, tpot 10 ms
    slow = req(0.0, 0.6, [0.01] * 10)  # ttft 600 ms
    m = metrics.compute([fast, slow], slos_ms={"ttft": 500, "tpot": 20})
    assert m["request_goodput"] == pytest.approx(1 / m["duration"])


def test_single_token_output_has_no_tpot():
    m = metrics.compute([req(0.0, 0.2, [], output_len=1)])
    assert m["mean_tpot_ms"] is None and m["mean_ttft_ms"] == pytest.approx(200)


def test_timeline_buckets_tokens_per_second():
    r = req(0.0, 0.5, [0.4, 0.4, 0.4])  # tokens at 0.5, 0.9, 1.3, 1.7
    assert metrics.timeline([r]) == {"t": [0, 1], "output_tok_s": [2, 2]}


def test_inflight_reconstructs_decode_contexts_and_waiting_prefills():
    a = req(0.0, 0.15, [0.1, 0.1], prompt_len=100)  # tokens at .15 .25 .35
    b = req(0.1, 0.3, [0.1], prompt_len=7)  # tokens at .4 .5
    s = metrics.inflight([a, b], interval_s=0.1)
    assert s["t"] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert s["decode_ctx"] == [[], [], [101], [102], [8]]
    assert s["prefill_len"] == [[100], [100, 7], [7], [7], []]


def test_percentile_keys_follow_the_requested_percentiles():
    m = metrics.compute([req(0, 0.1, [0.1] * 3)], percentiles=[50, 99.9])
    assert "p99.9_ttft_ms" in m and "p50_itl_ms" in m and "p99_ttft_ms" not in m


def test_result_block_has_vllms_labels():
    m = metrics.compute([req(0, 0.1, [0.1] * 3)])
    block = metrics.format_block(m, None)
    for label in ("Serving Benchmark Result", "Successful requests:", "Output token throughput (tok/s):",
                  "Mean TTFT (ms):", "Median TPOT (ms):", "P99 ITL (ms):", "Peak output token throughput (tok/s):"):
        assert label in block
    assert not math.isnan(m["mean_itl_ms"])
