"""The eval contracts (attnbench/evals/types.py): a second eval is one small declaration, asked
through the same samplers and the same runner (cache reuse, failure rule, rows) as GPQA, here
against the scripted server on loopback."""

import asyncio
from dataclasses import dataclass

import aiohttp
import pytest

from attnbench import stats
from attnbench.evals import gpqa, run, sampler
from attnbench.evals.cache import Cache
from attnbench.evals.grader import extract_abcd
from attnbench.evals.types import Eval, EvalResult, SamplerResponse, SingleEvalResult, prompt_sha, user
from mcq_server import MCQServer, Script


# ---- a second eval, declared in full ----------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    id: str
    repeat: int
    question: str
    options: tuple[str, str]
    answer: str

    @property
    def prompt(self) -> str:
        return f"{self.question}\n\n(A) {self.options[0]}\n(B) {self.options[1]}\n\nReply with the letter only."


class TwoChoice(Eval):
    """Two questions, two options each; only a response ending in the right letter scores."""
    name = "two-choice"

    def __init__(self, repeats: int = 1):
        self.samples = [s for r in range(repeats) for s in (
            Pair("sum", r, "What is 2 + 2?", ("4", "5"), "A"), Pair("capital", r, "Capital of France?", ("Rome", "Paris"), "B"))]

    def grade(self, sample, response):
        picked = response.text.strip()[-1:]
        return SingleEvalResult(sample, response, float(picked == sample.answer), {"answer": sample.answer, "picked": picked},
                                metrics={"chars": len(response.text)})


SCRIPT = {"What is 2 + 2?": "4", "Capital of France?": "Paris"}
BASE = {"target": "t", "backend": "scripted", "effort": "low", "api": "chat", "max_tokens": 64, "temperature": 1.0,
        "server": "k"}


def make_sampler(srv, api="chat", **kw):
    return sampler.make(api, base_url=srv.base_url, model="scripted-mcq", effort="low", max_tokens=64,
                        backoff_s=0.01, notice=lambda s: None, **kw)


def test_a_second_eval_is_one_declaration_called_on_a_sampler():
    """The reference's shape: Eval(sampler) -> EvalResult, every sample asked once."""
    with MCQServer(Script(correct=SCRIPT, behaviour={"Capital of France?": "wrong"})) as srv:
        result = asyncio.run(TwoChoice()(make_sampler(srv), concurrency=2))
    assert isinstance(result, EvalResult) and result.score == 0.5
    assert result.metrics["n_samples"] == 2 and result.metrics["n_answered"] == 2
    assert result.metrics["chars"] == pytest.approx(len("Answer: A"))  # per-sample metrics are averaged
    by_id = {r.sample.id: r for r in result.results}
    assert (by_id["sum"].score, by_id["sum"].details) == (1.0, {"answer": "A", "picked": "A"})
    assert by_id["capital"].score == 0.0 and by_id["capital"].details["picked"] != "B"
    # the conversation is what was sent, then the final answer
    sent = sorted((b["messages"] for b in srv.requests), key=str)
    assert sorted((r.response.messages for r in result.results), key=str) == sent
    assert by_id["sum"].convo == [*user(by_id["sum"].sample.prompt), {"role": "assistant", "content": "Answer: A"}]
    assert all(r.response.effort_sent == "low" for r in result.results)


def test_a_second_eval_runs_through_the_same_runner(tmp_path):
    """run.reuse and run.ask, as GPQA runs: rows keyed by (id, repeat) carry the settings and the
    eval's own fields, finished rows are cached, a re-run asks nothing, statistics read the rows."""
    ev = TwoChoice(repeats=2)
    with MCQServer(Script(correct=SCRIPT, behaviour={"Capital of France?": "wrong"})) as srv:
        with Cache(tmp_path / "cache.jsonl") as cache:
            rows, todo = run.reuse(ev, cache, BASE)
            assert rows == {} and len(todo) == 4
            seen = []
            run.ask(ev, make_sampler(srv), todo, BASE, cache, rows, concurrency=2, extra={"max_tokens_sent": 64},
                    on_row=seen.append)
        assert len(srv.requests) == 4 and len(seen) == 4
        assert set(rows) == {("sum", 0), ("capital", 0), ("sum", 1), ("capital", 1)}
        row = rows[("sum", 1)]
        assert row["backend"] == "scripted" and row["effort_sent"] == "low" and row["picked"] == "A"
        assert row["prompt_sha"] == prompt_sha(ev.samples[2].prompt) and row["max_tokens_sent"] == 64
        assert list(row)[:len(BASE)] == list(BASE) and list(row)[-1] == "max_tokens_sent"
        est = stats.estimate({k: r["score"] for k, r in rows.items()})
        assert est.mean == 0.5 and stats.per_question_means({k: r["score"] for k, r in rows.items()}) == {
            "sum": 1.0, "capital": 0.0}
        with Cache(tmp_path / "cache.jsonl") as cache:
            again, todo = run.reuse(ev, cache, BASE)
            assert todo == [] and again == rows
            # another setting is another answer: nothing reused
            assert run.reuse(ev, cache, {**BASE, "temperature": 0.5})[1] == ev.samples
        assert len(srv.requests) == 4


def test_failed_and_refused_requests_score_zero_whatever_the_eval_says(tmp_path):
    """The failure rule lives in Eval, not in each grade: an eval that awards everything still
    scores a failure and an HTTP 400 as 0; the failure is not cached, the 400 is."""
    class Generous(TwoChoice):
        def grade(self, sample, response):
            return SingleEvalResult(sample, response, 1.0)

    ev = Generous()
    with MCQServer(Script(correct=SCRIPT, behaviour={"What is 2 + 2?": "always500", "Capital of France?": "reject"})) as srv:
        with Cache(tmp_path / "cache.jsonl") as cache:
            rows = {}
            run.ask(ev, make_sampler(srv, retry_time_s=0.05), ev.samples, BASE, cache, rows, concurrency=2)
    assert {k: (r["outcome"], r["score"]) for k, r in rows.items()} == {
        ("sum", 0): ("failed", 0.0), ("capital", 0): ("rejected", 0.0)}
    with Cache(tmp_path / "cache.jsonl") as cache:
        assert [s.id for s in run.reuse(ev, cache, BASE)[1]] == ["sum"]  # only the failure is asked again


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_a_sampler_sends_the_message_list_it_is_given(api):
    """Sampler: a message list in, the very list sent (and recorded) out; a string is one user message."""
    messages = [{"role": "system", "content": "Be brief."}, *user(TwoChoice().samples[0].prompt)]
    with MCQServer(Script(correct=SCRIPT)) as srv:
        s = make_sampler(srv, api)

        async def go():
            async with aiohttp.ClientSession() as session:
                return await s(session, messages), await s(session, TwoChoice().samples[1].prompt)

        listed, plain = asyncio.run(go())
    field = "messages" if api == "chat" else "input"
    assert srv.requests[0][field] == messages and listed.messages == messages
    assert srv.requests[1][field] == plain.messages == user(TwoChoice().samples[1].prompt)
    assert (listed.text, listed.outcome, listed.attempts) == ("Answer: A", "answered", 1)


def test_gpqa_is_an_eval_graded_by_the_reference_extractor():
    samples = gpqa.make_samples(gpqa.load("mini"), repeats=1)[:3]
    ev = gpqa.GPQAEval(samples)
    assert isinstance(ev, Eval) and ev.name == "gpqa" and samples[0].id == samples[0].question.id
    for text in ("**Answer:** C", "c", "The result is $\\boxed{B}$", "Because"):
        res = ev.result(samples[0], SamplerResponse(text=text))
        assert res.details["extracted"] == extract_abcd(text)
        assert res.score == float(extract_abcd(text) == samples[0].answer)
    failed = ev.result(samples[1], SamplerResponse(text="Answer: " + samples[1].answer, error="gave up"))
    assert failed.score == 0.0 and failed.details == {"answer": samples[1].answer, "extracted": None, "rule": None}


def test_a_row_reads_back_as_the_response_it_recorded():
    """How a cached answer is graded again without a request: row -> SamplerResponse -> same row."""
    sample = gpqa.make_samples(gpqa.load("mini"), repeats=1)[0]
    response = SamplerResponse(text="Answer: " + sample.answer, messages=user(sample.prompt), finish="stop",
                               prompt_tokens=50, completion_tokens=7, attempts=2, resampled=1, latency_s=0.25,
                               effort_sent="low")
    ev = gpqa.GPQAEval([sample])
    row = ev.result(sample, response).row()
    assert row["score"] == 1.0 and row["outcome"] == "answered" and row["question_id"] == sample.id
    assert ev.result(sample, SamplerResponse.from_row(row, user(sample.prompt))).row() == row
    assert SamplerResponse.from_row(row, user(sample.prompt)) == response
