"""The samplers against a real scripted server on loopback: both APIs, effort fields, retries
bounded by a total time, timeouts, HTTP 400 scored as the reference does (never a changed
request), empty content re-sampled by the chat sampler, final text only."""

import asyncio
from pathlib import Path

import aiohttp
import pytest

from attnbench.evals import gpqa, sampler
from mcq_server import MCQServer, fixture_script

QS = gpqa.load(str(Path(__file__).parent / "fixtures" / "mini_gpqa.csv"))
SAMPLES = gpqa.make_samples(QS, repeats=1)


def ask(server, api, i=0, **kw):
    kw = {"effort": "low", "backoff_s": 0.01, **kw}
    notes = []
    s = sampler.make(api, base_url=server.base_url, model="scripted-mcq", notice=notes.append, **kw)

    async def go():
        async with aiohttp.ClientSession() as session:
            return await s(session, SAMPLES[i].prompt)

    return asyncio.run(go()), s, notes


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_right_answer_and_usage(api):
    with MCQServer(fixture_script(QS)) as srv:
        reply, _, notes = ask(srv, api)
    assert reply.text == f"Answer: {SAMPLES[0].answer}"
    assert reply.error is None and reply.attempts == 1 and not reply.truncated
    assert reply.prompt_tokens in (50, 60) and reply.completion_tokens in (7, 9)
    body = srv.requests[0]
    if api == "chat":
        assert body["reasoning_effort"] == "low" and body["messages"] == [{"role": "user", "content": SAMPLES[0].prompt}]
        assert body["max_tokens"] == 131072 and body["temperature"] == 1.0
    else:
        assert body["reasoning"] == {"effort": "low"} and body["input"][0]["content"] == SAMPLES[0].prompt
        assert body["max_output_tokens"] == 131072
    assert notes == []


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_effort_none_is_omitted(api):
    with MCQServer(fixture_script(QS)) as srv:
        ask(srv, api, effort="none")
    assert "reasoning_effort" not in srv.requests[0] and "reasoning" not in srv.requests[0]


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_reasoning_is_never_the_answer(api):
    with MCQServer(fixture_script(QS, {0: "reasoning"})) as srv:
        reply, _, _ = ask(srv, api)
    assert reply.text == f"**Answer:** {SAMPLES[0].answer}"


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_500_and_429_are_retried(api):
    with MCQServer(fixture_script(QS, {0: "error500", 1: "ratelimit"})) as srv:
        r0, _, _ = ask(srv, api, 0)
        r1, _, _ = ask(srv, api, 1)
    assert (r0.error, r0.attempts) == (None, 2)
    assert (r1.error, r1.attempts) == (None, 2)


def test_retries_are_bounded_by_a_total_time_and_reported_as_failed():
    with MCQServer(fixture_script(QS, {0: "always500"})) as srv:
        # backoff 0.01, 0.02, 0.04, ...: the 0.08 wait would pass the 0.1 s budget
        reply, _, _ = ask(srv, "chat", retry_time_s=0.1)
    assert reply.error.startswith("gave up after ") and "(retry time 0.1 s, --retry-time): HTTP 500" in reply.error
    assert reply.text == "" and 1 <= reply.attempts <= 4 and len(srv.requests) == reply.attempts


def test_timeout_counts_as_a_failed_attempt():
    with MCQServer(fixture_script(QS, {0: "slow"}, slow_s=1.0)) as srv:
        reply, _, _ = ask(srv, "chat", timeout_s=0.2, retry_time_s=0.21)
    assert reply.attempts == 1 and reply.error.endswith("no answer within 0.2 s")


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_truncation_is_flagged(api):
    with MCQServer(fixture_script(QS, {0: "truncate"})) as srv:
        reply, _, _ = ask(srv, api)
    assert reply.truncated and reply.error is None


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_http_400_is_a_rejection_and_the_effort_is_never_dropped(api):
    """A model without reasoning (SmolLM2): every request keeps the effort, every 400 is a
    rejected sample (scored wrong later), noticed once with the fix."""
    with MCQServer(fixture_script(QS, reject_effort=True)) as srv:
        s = sampler.make(api, base_url=srv.base_url, model="scripted-mcq", effort="low", backoff_s=0.01)
        notes = []
        s.notice = notes.append

        async def go():
            async with aiohttp.ClientSession() as session:
                return await asyncio.gather(*(s(session, x.prompt) for x in SAMPLES[:6]))

        replies = asyncio.run(go())
    assert all(r.rejected and r.error is None and r.attempts == 1 and r.effort_sent == "low" for r in replies)
    assert len(srv.requests) == 6 and all("reasoning" in b or "reasoning_effort" in b for b in srv.requests)
    assert len(notes) == 1 and "HTTP 400 to a request with reasoning effort 'low'" in notes[0]
    assert "use --effort none" in notes[0] and s.rejections == 6


def test_empty_content_is_sampled_again_by_chat_only():
    with MCQServer(fixture_script(QS, {0: "empty_once", 1: "always_empty"})) as srv:
        once, _, _ = ask(srv, "chat", 0)
        never, _, _ = ask(srv, "chat", 1, empty_resamples=3)
        resp, _, _ = ask(srv, "responses", 0)
    assert (once.text, once.resampled, once.attempts) == (f"Answer: {SAMPLES[0].answer}", 1, 2)
    assert (never.text, never.resampled, never.attempts, never.error) == ("", 3, 4, None)
    assert never.truncated
    # the responses sampler keeps an empty answer, as the reference's does (here: the third ask of q0 is right)
    assert resp.resampled == 0 and resp.attempts == 1


def test_other_client_errors_fail_without_retry():
    with MCQServer(fixture_script(QS)) as srv:
        s = sampler.make("chat", base_url=srv.root_url + "/nowhere", model="m", backoff_s=0.01)

        async def go():
            async with aiohttp.ClientSession() as session:
                return await s(session, "x")

        reply = asyncio.run(go())
    assert reply.error.startswith("HTTP 404") and reply.attempts == 1


def test_unreachable_server_fails_after_retries():
    s = sampler.make("chat", base_url="http://127.0.0.1:9/v1", model="m", backoff_s=0.01, retry_time_s=0.015)

    async def go():
        async with aiohttp.ClientSession() as session:
            return await s(session, "x")

    reply = asyncio.run(go())
    assert reply.error.startswith("gave up after ") and "ClientConnectorError" in reply.error


def test_bad_options():
    from attnbench.errors import UserError

    with pytest.raises(UserError, match="--effort 'max'"):
        sampler.make("chat", base_url="http://x/v1", model="m", effort="max")
    with pytest.raises(UserError, match="--api 'completions'"):
        sampler.make("completions", base_url="http://x/v1", model="m")
