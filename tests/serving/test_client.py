"""The load generator against a real streaming HTTP server whose token timings are known."""

import math
import time

import numpy as np
import pytest

from attnbench.errors import UserError
from attnbench.serving import client, metrics, workload
from attnbench.serving.scripted_server import Reply, Script, ScriptedServer


def make_requests(n, input_len=32, output_len=20, rate=math.inf, burstiness=1.0, seed=0):
    prompts = workload.prompts(n, input_len, 1000, seed)
    offsets = workload.arrival_offsets(n, rate, burstiness, seed)
    return [client.Request(p, output_len, t) for p, t in zip(prompts, offsets)]


@pytest.fixture
def server():
    with ScriptedServer(Script(ttft_s=0.05, itl_s=0.01)) as s:
        yield s


@pytest.mark.parametrize("workers", [1, 2])
def test_all_at_once_measures_the_scripted_timings(server, workers):
    cfg = client.ClientConfig(server.base_url, "scripted", workers=workers)
    results = client.run(cfg, make_requests(16))
    assert all(r.success for r in results)
    m = metrics.compute(results)
    assert m["total_output_tokens"] == 16 * 20
    # Lower bounds are the script's (nothing arrives sooner); upper bounds leave room for a loaded
    # machine, which delays single chunks (the server then catches up on its absolute deadlines).
    assert 50 <= m["median_ttft_ms"] < 50 + 100  # scripted 50 ms; timed to the last token it would be 240
    assert all(len(r.itls) == 19 for r in results)  # one gap per chunk after the first
    assert m["median_tpot_ms"] == pytest.approx(10, abs=1.5)  # (e2el - ttft) / 19: ttft included it would be 12.6
    assert m["mean_itl_ms"] == pytest.approx(10, abs=1.5)
    assert 5 < m["median_itl_ms"] < 15  # single gaps jitter under load
    assert m["max_concurrent_requests"] == 16
    # ~0.05 + 19 * 0.01 = 0.24 s per request, all sent together (one after another would take 3.8 s)
    assert 0.24 <= m["duration"] < 0.24 + 0.2
    assert [r.prompt_len for r in results] == [32] * 16


def test_request_body_is_exact_token_ids_with_ignore_eos(server):
    reqs = make_requests(3, input_len=17, output_len=5)
    client.run(client.ClientConfig(server.base_url, "scripted", workers=1), reqs)
    bodies = sorted(server.requests, key=lambda b: b["prompt"])
    assert sorted(r.prompt for r in reqs) == [b["prompt"] for b in bodies]
    for b in bodies:
        assert len(b["prompt"]) == 17 and all(isinstance(t, int) for t in b["prompt"])
        assert b["max_tokens"] == 5 and b["min_tokens"] == 5 and b["ignore_eos"] is True
        assert b["stream"] is True and b["stream_options"] == {"include_usage": True}
        assert b["model"] == "scripted"


def _lateness(results, reqs) -> np.ndarray:
    return np.array([r.start for r in results]) - np.array([r.send_at for r in reqs])


def test_poisson_arrivals_are_respected(server):
    reqs = make_requests(40, output_len=2, rate=50.0, seed=3)
    results = client.run(client.ClientConfig(server.base_url, "scripted", workers=2), reqs)
    assert all(r.success for r in results)
    late = _lateness(results, reqs)
    # each request leaves at its planned time: never before it, and late only by scheduling noise
    # (a few ms on an idle machine, under 10 ms with the CPUs five times oversubscribed)
    assert late.min() > -1e-6
    assert np.median(late) < 0.01 and np.percentile(late, 90) < 0.05 and late.max() < 0.25
    gaps = np.diff([r.send_at for r in reqs])
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.4)  # 40 gamma(1) gaps around 20 ms


def _slow_starting_worker(*args):
    time.sleep(1.5)  # a loaded machine or a cold disk (the old fixed allowance was 0.5 s + 0.3 s per worker)
    client._worker(*args)


def test_a_slow_worker_start_delays_the_run_instead_of_bunching_its_first_requests(server, monkeypatch):
    monkeypatch.setattr(client, "_worker", _slow_starting_worker)  # spawned workers find it by name
    reqs = make_requests(10, output_len=2, rate=50.0, seed=1)
    results = client.run(client.ClientConfig(server.base_url, "scripted", workers=2), reqs)
    assert all(r.success for r in results)
    late = _lateness(results, reqs)
    assert late.min() > -1e-6 and late.max() < 0.25
    assert metrics.compute(results)["duration"] < reqs[-1].send_at + 0.05 + 0.01 + 0.25


def test_max_concurrency_caps_requests_in_flight(server):
    reqs = make_requests(12, output_len=10)
    results = client.run(client.ClientConfig(server.base_url, "scripted", workers=2, max_concurrency=3), reqs)
    assert all(r.success for r in results)
    assert server.max_active == 3
    assert metrics.max_concurrency(results) == 3
    # 12 requests, 3 at a time, ~0.14 s each -> at least 4 rounds
    assert metrics.compute(results)["duration"] >= 4 * 0.14


def test_errors_are_recorded_per_request_and_the_rest_completes():
    script = Script(ttft_s=0.01, itl_s=0.002, fail_status={0: 500, 1: 429}, error_after={2: 3})
    with ScriptedServer(script) as s:
        results = client.run(client.ClientConfig(s.base_url, "scripted", workers=1), make_requests(6, output_len=8))
    # request numbers are arrival order at the server; match errors by content instead
    errors = sorted(r.error.split(":")[0] for r in results if r.error)
    assert errors == ["HTTP 429", "HTTP 500", "RuntimeError"]
    m = metrics.compute(results)
    assert (m["completed"], m["failed"]) == (3, 3)


def test_a_request_that_never_answers_times_out():
    with ScriptedServer(Script(ttft_s=0.01, itl_s=0.001, hang={0})) as s:
        cfg = client.ClientConfig(s.base_url, "scripted", workers=1, request_timeout_s=0.5)
        t0 = time.monotonic()
        results = client.run(cfg, make_requests(3, output_len=4))
    assert time.monotonic() - t0 < 5
    assert sum("timed out" in r.error for r in results) == 1
    assert sum(r.success for r in results) == 2


def test_output_tokens_come_from_the_servers_usage():
    # a server that reports no usage: the client falls back to counting chunks
    with ScriptedServer(Script(ttft_s=0.01, itl_s=0.001, report_usage=False)) as s:
        results = client.run(client.ClientConfig(s.base_url, "scripted", workers=1), make_requests(2, output_len=7))
    assert [r.output_len for r in results] == [7, 7] and [r.chunks for r in results] == [7, 7]


def test_unreachable_server_fails_every_request_cleanly():
    cfg = client.ClientConfig("http://127.0.0.1:9/v1", "m", workers=1)
    results = client.run(cfg, make_requests(2))
    assert all(not r.success and r.error for r in results)


# ---- servers as they behave in the field ---------------------------------------------------------

def test_a_request_the_server_dropped_before_answering_is_sent_again_on_a_fresh_connection():
    # llama-server closes each connection after its stream while answering keep-alive: every
    # request after the first finds its pooled connection dead
    with ScriptedServer(Script(ttft_s=0.002, itl_s=0.001, close_after_stream=True)) as s:
        cfg = client.ClientConfig(s.base_url, "scripted", workers=1, max_concurrency=1)
        results = client.run(cfg, make_requests(6, output_len=4))
        assert all(r.success for r in results), [r.error for r in results]
        assert sum(r.retries for r in results) == s.dropped >= 1
        assert len(s.requests) == 6  # each answered exactly once


def test_retries_are_bounded_and_the_failure_says_what_happened():
    with ScriptedServer(Script(ttft_s=0.002, itl_s=0.001, close_after_stream=True)) as s:
        cfg = client.ClientConfig(s.base_url, "scripted", workers=1, max_concurrency=1, retries=0)
        results = client.run(cfg, make_requests(4, output_len=4))
    failed = [r for r in results if not r.success]
    assert len(failed) == s.dropped >= 1
    assert all(r.error.startswith("ServerDisconnectedError") and "after 0 retries" in r.error for r in failed)


def test_a_final_event_with_empty_text_and_usage_is_not_a_token():
    with ScriptedServer(Script(ttft_s=0.005, itl_s=0.002, empty_final_event=True)) as s:
        (res,) = client.run(client.ClientConfig(s.base_url, "scripted", workers=1), make_requests(1, output_len=32))
    assert res.success and res.output_len == 32
    assert res.chunks == 32 and len(res.itls) == 31  # 32 tokens, 31 gaps


class SpecialLast(Script):
    """vLLM streaming a special token last: its text is empty, in the event with the finish reason."""
    def reply(self, path, body, n):
        return Reply(tokens=[" tok"] * (body["max_tokens"] - 1) + [""])


@pytest.mark.parametrize("output_len", [1, 5])
def test_a_special_token_in_the_closing_event_is_a_token_when_it_arrives(output_len):
    # with one output token (prefill-heavy shapes) it is the stream's only token: not a failure
    with ScriptedServer(SpecialLast(ttft_s=0.05, itl_s=0.02)) as s:
        (res,) = client.run(client.ClientConfig(s.base_url, "scripted", workers=1),
                            make_requests(1, output_len=output_len))
    assert res.success, res.error
    assert res.output_len == res.chunks == output_len and len(res.itls) == output_len - 1
    assert res.ttft >= 0.05 and all(gap >= 0.015 for gap in res.itls)


def test_carries_token():
    assert client._carries_token({"choices": [{"text": " a", "finish_reason": None}]})
    assert client._carries_token({"choices": [{"text": "", "finish_reason": None}], "usage": None})  # a special token
    assert client._carries_token({"choices": [{"delta": {"content": "x"}}]})
    assert not client._carries_token({"choices": [{"text": "", "finish_reason": "length"}],
                                      "usage": {"completion_tokens": 3}})
    assert not client._carries_token({"choices": [], "usage": {"completion_tokens": 3}})


def test_text_prompts_are_sent_as_strings_and_their_length_comes_from_the_server():
    with ScriptedServer(Script(ttft_s=0.002, itl_s=0.001, text_prompts_only=True)) as s:
        cfg = client.ClientConfig(s.base_url, "scripted", workers=1)
        text = client.run(cfg, [client.Request("one two three", 3, 0.0, prompt_len=5)])
        ids = client.run(cfg, make_requests(1, output_len=3))
        assert s.requests[0]["prompt"] == "one two three"
    assert text[0].success and text[0].prompt_len == 3  # the server's usage, not the request's guess
    assert ids[0].error.startswith("HTTP 500") and "string" in ids[0].error


# ---- Ctrl-C, CPU placement, client saturation ----------------------------------------------------

def _interrupt_after(n_done, seen):
    import os
    import signal

    def progress(n):
        seen.append(n)
        if n >= n_done and not getattr(progress, "sent", False):
            progress.sent = True
            os.kill(os.getpid(), signal.SIGINT)
    return progress


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_keeps_the_finished_requests_and_counts_only_them(workers):
    # the server answers its first two requests and holds the rest, so Ctrl-C lands mid-run
    with ScriptedServer(Script(ttft_s=0.002, itl_s=0.001, hang={2, 3, 4, 5})) as s:
        cfg = client.ClientConfig(s.base_url, "scripted", workers=workers, max_concurrency=2)
        seen = []
        with pytest.raises(client.Interrupted) as e:
            client.run(cfg, make_requests(6, output_len=3), progress=_interrupt_after(2, seen))
    results = e.value.results
    assert sum(r.success for r in results) == 2
    assert sum(r.error == "interrupted" for r in results) == 4
    assert max(seen) == 2  # cancelled requests are not "done"
    assert len(e.value.stats.workers) == workers


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_run_on_the_given_cpus(server, workers):
    import os

    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    cfg = client.ClientConfig(server.base_url, "scripted", workers=workers, cpus=(cpu,))
    results, stats = client.run_with_stats(cfg, make_requests(4, output_len=2))
    assert all(r.success for r in results)
    assert [w.cpus for w in stats.workers] == [[cpu]] * workers
    assert os.sched_getaffinity(0) == before  # the in-process loop gives the CPUs back


def test_cpus_must_be_usable_here():
    import os

    with pytest.raises(UserError, match="not a non-empty subset"):
        client.check_cpus([max(os.sched_getaffinity(0)) + 1000])
    with pytest.raises(UserError, match="not a non-empty subset"):
        client.check_cpus([])


def test_run_stats_show_a_busy_event_loop(server):
    stalled = []

    def progress(n):  # runs on the client's own loop (one worker): stall it once
        if not stalled:
            stalled.append(n)
            time.sleep(0.2)

    cfg = client.ClientConfig(server.base_url, "scripted", workers=1)
    _, stats = client.run_with_stats(cfg, make_requests(8, output_len=40), progress=progress)
    (w,) = stats.workers
    assert w.loop_lag_max_ms >= 150 and stats.loop_lag_max_ms == w.loop_lag_max_ms
    assert 0 <= w.loop_lag_p99_ms <= w.loop_lag_max_ms
    assert 0 < w.cpu_s <= w.wall_s * 1.5 and w.requests == 8
    assert 0 < stats.cpu_fraction <= 1.5
    d = stats.to_dict()
    assert d["workers"][0]["cpu_fraction"] == round(w.cpu_fraction, 4) and "loop_lag_p99_ms" in d


def test_run_stats_of_several_workers(server):
    _, stats = client.run_with_stats(client.ClientConfig(server.base_url, "scripted", workers=2),
                                     make_requests(8, output_len=10))
    assert sorted(w.worker for w in stats.workers) == [0, 1] and sum(w.requests for w in stats.workers) == 8
    assert all(w.wall_s > 0 for w in stats.workers)
