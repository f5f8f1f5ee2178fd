"""The samplers against a real scripted server on loopback: both APIs, effort fields, retries,
timeouts, refusals of reasoning effort, final text only."""

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
        assert body["max_tokens"] == 32768 and body["temperature"] == 1.0
    else:
        assert body["reasoning"] == {"effort": "low"} and body["input"][0]["content"] == SAMPLES[0].prompt
        assert body["max_output_tokens"] == 32768
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


def test_retries_are_bounded_and_reported_as_failed():
    with MCQServer(fixture_script(QS, {0: "always500"})) as srv:
        reply, _, _ = ask(srv, "chat", retries=2)
    assert reply.error.startswith("gave up after 3 attempts: HTTP 500")
    assert reply.text == "" and len(srv.requests) == 3


def test_timeout_counts_as_a_failed_attempt():
    with MCQServer(fixture_script(QS, {0: "slow"}, slow_s=1.0)) as srv:
        reply, _, _ = ask(srv, "chat", timeout_s=0.2, retries=1)
    assert reply.error == "gave up after 2 attempts: no answer within 0.2 s"


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_truncation_is_flagged(api):
    with MCQServer(fixture_script(QS, {0: "truncate"})) as srv:
        reply, _, _ = ask(srv, api)
    assert reply.truncated and reply.error is None


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_model_without_reasoning_effort(api):
    """SmolLM2 and the like: the first 400 is noticed once, the field dropped, the sample kept."""
    with MCQServer(fixture_script(QS, reject_effort=True)) as srv:
        s = sampler.make(api, base_url=srv.base_url, model="scripted-mcq", effort="low", backoff_s=0.01)
        notes = []
        s.notice = notes.append

        async def go():
            async with aiohttp.ClientSession() as session:
                return await asyncio.gather(*(s(session, x.prompt) for x in SAMPLES[:6]))

        replies = asyncio.run(go())
    assert all(r.error is None and not r.effort_sent for r in replies)
    assert len(notes) == 1 and "rejected reasoning effort 'low'" in notes[0] and "continuing without it" in notes[0]
    assert s.effort_rejected
    effortless = [b for b in srv.requests if "reasoning" not in b and "reasoning_effort" not in b]
    assert len(effortless) == 6


def test_other_client_errors_fail_without_retry():
    with MCQServer(fixture_script(QS)) as srv:
        s = sampler.make("chat", base_url=srv.root_url + "/nowhere", model="m", backoff_s=0.01)

        async def go():
            async with aiohttp.ClientSession() as session:
                return await s(session, "x")

        reply = asyncio.run(go())
    assert reply.error.startswith("HTTP 404") and reply.attempts == 1


def test_unreachable_server_fails_after_retries():
    s = sampler.make("chat", base_url="http://127.0.0.1:9/v1", model="m", backoff_s=0.01, retries=1)

    async def go():
        async with aiohttp.ClientSession() as session:
            return await s(session, "x")

    reply = asyncio.run(go())
    assert reply.error.startswith("gave up after 2 attempts: ClientConnectorError")


def test_bad_options():
    from attnbench.errors import UserError

    with pytest.raises(UserError, match="--effort 'max'"):
        sampler.make("chat", base_url="http://x/v1", model="m", effort="max")
    with pytest.raises(UserError, match="--api 'completions'"):
        sampler.make("completions", base_url="http://x/v1", model="m")
