"""Prometheus text parsing and the server-side deltas of a measured window."""

import math
import re
import socket
import time
from pathlib import Path

import pytest

from attnbench.serving import prometheus

FIXTURES = Path(__file__).parent / "fixtures"

TEXT = r'''# HELP demo_total A counter.
# TYPE demo_total counter
demo_total{engine="0",model_name="m"} 3.0
demo_total{engine="1",model_name="m"} 4.5 1700000000000
demo_total{engine="0",model_name="other"} 100
# a free comment, and an empty line follow

odd{path="C:\\dir",msg="say \"hi\"\nbye",} NaN
inf_gauge +Inf
neg -Inf
with_exemplar_total{a="b"} 2 # {trace_id="abc"} 1.0
not a sample line
broken{a="unterminated} 1
# EOF
'''


def test_parse_reads_labels_escapes_special_values_and_skips_garbage():
    s = prometheus.parse(TEXT)
    assert s.types == {"demo_total": "counter"}
    assert s.total("demo_total") == 107.5
    assert s.total("demo_total", model="m") == 7.5
    assert s.total("demo_total", engine="1") == 4.5
    assert s.total("missing") is None
    [(labels, v)] = s.samples["odd"]
    assert labels == {"path": "C:\\dir", "msg": 'say "hi"\nbye'}
    assert math.isnan(v)
    assert s.total("inf_gauge") == math.inf and s.total("neg") == -math.inf
    assert s.total("with_exemplar_total") == 2.0
    assert s.bad_lines == 2


def _hist(name, bounds_counts, total, labels='engine="0",model_name="m"'):
    lines = [f"# TYPE {name} histogram"]
    for le, c in bounds_counts:
        lines.append(f'{name}_bucket{{{labels},le="{le}"}} {c}')
    lines.append(f"{name}_count{{{labels}}} {bounds_counts[-1][1]}")
    lines.append(f"{name}_sum{{{labels}}} {total}")
    return "\n".join(lines) + "\n"


def test_histogram_quantile_interpolates_inside_the_bucket():
    # 10 observations: 2 in (0, 0.1], 6 in (0.1, 0.5], 2 in (0.5, 1.0]
    s = prometheus.parse(_hist("h", [("0.1", 2), ("0.5", 8), ("1.0", 10), ("+Inf", 10)], 3.5))
    h = s.histogram("h")
    assert h.count == 10 and h.mean == pytest.approx(0.35)
    assert h.quantile(0.5) == pytest.approx(0.1 + 0.4 * (5 - 2) / 6)  # rank 5 of 10, 3rd of 6 in (0.1, 0.5]
    assert h.quantile(0.99) == pytest.approx(0.5 + 0.5 * (9.9 - 8) / 2)
    assert h.quantile(0.1) == pytest.approx(0.1 * 1 / 2)  # first bucket starts at 0
    over = prometheus.parse(_hist("h", [("0.1", 1), ("+Inf", 4)], 9.0)).histogram("h")
    assert over.quantile(0.99) == 0.1  # in +Inf: the largest finite bound, not infinity


def test_histograms_sum_over_engines_and_subtract():
    two = _hist("h", [("0.1", 1), ("1.0", 3), ("+Inf", 3)], 1.0) + \
        _hist("h", [("0.1", 2), ("1.0", 2), ("+Inf", 2)], 0.1, labels='engine="1",model_name="m"').split("\n", 1)[1]
    after = prometheus.parse(two).histogram("h")
    assert after.count == 5 and after.buckets == [(0.1, 3), (1.0, 5), (math.inf, 5)]
    before = prometheus.parse(_hist("h", [("0.1", 1), ("1.0", 1), ("+Inf", 1)], 0.05)).histogram("h")
    d = after.minus(before)
    assert d.count == 4 and d.buckets == [(0.1, 2), (1.0, 4), (math.inf, 4)]
    assert d.mean == pytest.approx((1.1 - 0.05) / 4)
    assert before.minus(after) is None  # counts went down: a restart, not a window


def _load(name):
    return prometheus.parse((FIXTURES / name).read_text(), t=0.0)


def _fixture_value(text, name):
    """Sum of one sample name in the raw text, by regex: an independent reading of the file."""
    vals = re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return sum(float(v) for v in vals)


def test_window_delta_on_vllm_metrics_text():
    before_text = (FIXTURES / "vllm-0.26-metrics-before.txt").read_text()
    after_text = (FIXTURES / "vllm-0.26-metrics-after.txt").read_text()
    d = prometheus.window_delta(prometheus.parse(before_text, t=10.0), prometheus.parse(after_text, t=70.0))
    assert d["server_metrics"] == "ok" and d["server_window_s"] == 60.0

    def delta(name):
        return _fixture_value(after_text, name) - _fixture_value(before_text, name)

    assert d["server_requests"] == delta("vllm:request_success_total") > 0
    assert d["server_generation_tokens"] == delta("vllm:generation_tokens_total") > 0
    assert d["server_prompt_tokens"] == delta("vllm:prompt_tokens_total")
    assert d["server_preemptions"] == delta("vllm:num_preemptions_total")
    for key, name in [("ttft", "vllm:time_to_first_token_seconds"),
                      ("e2el", "vllm:e2e_request_latency_seconds"),
                      ("tpot", "vllm:request_time_per_output_token_seconds"),
                      ("itl", "vllm:inter_token_latency_seconds")]:
        count = delta(name + "_count")
        assert d[f"server_{key}_count"] == count > 0
        assert d[f"server_mean_{key}_ms"] == pytest.approx(1000 * delta(name + "_sum") / count)
        assert 0 < d[f"server_median_{key}_ms"] <= d[f"server_p99_{key}_ms"]
    assert d["server_requests"] == d["server_ttft_count"] == d["server_e2el_count"]
    assert d["server_itl_count"] > d["server_tpot_count"]  # per token gap vs per request
    q = delta("vllm:prefix_cache_queries_total")
    assert d["server_prefix_cache_hit_rate"] == pytest.approx(delta("vllm:prefix_cache_hits_total") / q)
    assert 0 <= d["server_kv_cache_usage_after"] <= 1


def test_window_delta_keeps_one_model_and_says_when_it_cannot_tell():
    after = _load("vllm-0.26-metrics-after.txt")
    assert prometheus.window_delta(None, after) == {"server_metrics": "absent"}
    assert prometheus.window_delta(_load("vllm-0.26-metrics-before.txt"), after, model="no-such-model")[
        "server_metrics"] == "unknown"
    # the server restarted between the scrapes: its counters went down
    d = prometheus.window_delta(after, _load("vllm-0.26-metrics-before.txt"))
    assert d["server_metrics"] == "unknown" and "server_requests" not in d
    empty = prometheus.parse("# nothing here\n")
    assert prometheus.window_delta(empty, empty)["server_metrics"] == "unknown"


def test_older_tpot_name_stands_in_for_inter_token_latency():
    old = _hist("vllm:time_per_output_token_seconds", [("0.01", 0), ("0.025", 4), ("+Inf", 4)], 0.06)
    d = prometheus.window_delta(prometheus.parse(""), prometheus.parse(old))
    assert d["server_itl_count"] == 4 and d["server_mean_itl_ms"] == pytest.approx(15.0)


@pytest.mark.parametrize("base, url", [
    ("http://h:8000/v1", "http://h:8000/metrics"),
    ("http://h:8000/v1/", "http://h:8000/metrics"),
    ("http://h:8000", "http://h:8000/metrics"),
    ("http://h:8000/proxy/v1", "http://h:8000/proxy/metrics"),
])
def test_metrics_url_is_beside_v1(base, url):
    assert prometheus.metrics_url(base) == url


def test_scrape_of_a_server_without_metrics_is_none():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    assert prometheus.scrape(f"http://127.0.0.1:{port}/v1", timeout=1.0) is None


def test_scripted_server_metrics_agree_with_the_client_on_a_real_run():
    from attnbench.serving import client, metrics, workload
    from attnbench.serving.scripted_server import Script, ScriptedServer

    with ScriptedServer(Script(ttft_s=0.05, itl_s=0.01)) as s:
        before = prometheus.scrape(s.base_url)
        reqs = [client.Request(p, 20, 0.0) for p in workload.prompts(8, 32, 1000, 0)]
        m = metrics.compute(client.run(client.ClientConfig(s.base_url, "scripted", workers=1), reqs))
        after = prometheus.scrape(s.base_url)
    d = prometheus.window_delta(before, after)
    assert d["server_requests"] == m["completed"] == 8
    assert d["server_generation_tokens"] == m["total_output_tokens"] == 160
    assert d["server_prompt_tokens"] == 8 * 32 and d["server_preemptions"] == 0
    assert d["server_ttft_count"] == 8 and d["server_itl_count"] == 8 * 19 and d["server_tpot_count"] == 8
    assert 50 <= d["server_mean_ttft_ms"] <= m["mean_ttft_ms"]  # the client sees the server's, plus the network
    assert d["server_mean_tpot_ms"] == pytest.approx(m["mean_tpot_ms"], abs=2.0)
    assert d["server_mean_e2el_ms"] <= m["mean_e2el_ms"]


def test_scrape_is_none_when_the_server_has_no_metrics():
    from attnbench.serving.scripted_server import Script, ScriptedServer

    with ScriptedServer(Script(metrics=False)) as s:
        assert prometheus.scrape(s.base_url, timeout=2.0) is None


def test_gauge_poller_against_nothing_reports_no_scrapes():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    poller = prometheus.GaugePoller(f"http://127.0.0.1:{port}/v1", interval_s=0.01, timeout=0.5).start()
    time.sleep(0.1)
    assert poller.stop() == {"server_gauge_scrapes": 0}


def test_scrape_settled_waits_for_the_expected_requests():
    import json
    import urllib.request

    from attnbench.serving.scripted_server import Script, ScriptedServer

    with ScriptedServer(Script(ttft_s=0.01, itl_s=0.001)) as s:
        before = prometheus.scrape(s.base_url)
        body = json.dumps({"model": "scripted", "prompt": [1, 2], "max_tokens": 3}).encode()
        urllib.request.urlopen(urllib.request.Request(s.base_url + "/completions", body,
                                                      {"Content-Type": "application/json"}), timeout=10).read()
        after = prometheus.scrape_settled(s.base_url, before, expected_requests=1)
        assert prometheus.window_delta(before, after)["server_requests"] == 1
        # an expectation never met returns the last scrape once the wait is over
        late = prometheus.scrape_settled(s.base_url, before, expected_requests=5, wait_s=0.3)
        assert prometheus.window_delta(before, late)["server_requests"] == 1
        assert prometheus.scrape_settled(s.base_url, None) is not None  # two agreeing scrapes


def test_a_real_vllm_0_26_capture_from_an_h200():
    """tests/serving/fixtures/vllm-0.26-metrics-h200-fa3.txt: /metrics of the fa3 server in the H200
    study, taken during its first warm-up pass (256 requests sent, ~107k tokens streamed, none done)."""
    s = prometheus.parse((FIXTURES / "vllm-0.26-metrics-h200-fa3.txt").read_text(), t=0.0)
    assert s.total("vllm:generation_tokens_total") == 107467.0
    assert s.total("vllm:time_to_first_token_seconds_count") == 256.0
    assert s.histogram("vllm:inter_token_latency_seconds").count == 107211.0
    assert s.total("vllm:request_success_total") == 0.0  # summed over the finish reasons, all still running
    assert 0.3 < prometheus.kv_cache_usage(s) < 0.31
    later = prometheus.parse((FIXTURES / "vllm-0.26-metrics-h200-fa3.txt").read_text(), t=10.0)
    d = prometheus.window_delta(s, later)
    assert d["server_metrics"] == "ok" and d["server_generation_tokens"] == 0 and d["server_preemptions"] == 0
