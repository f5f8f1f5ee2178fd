"""The roles of an accuracy eval, in the shape of OpenAI's gpt-oss evals (gpt_oss/evals/types.py):
a Sampler turns a conversation into one final answer, an Eval owns its samples and grades each
answer. The runner (run.py) sits between them: it reuses cached answers, asks the rest through
the sampler, keeps every row, and computes the statistics. A new eval declares its samples and
`grade`; the asking, the retry rules and the scoring of failures come with the base class."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

Message = dict[str, Any]  # {"role": ..., "content": ...}, as both OpenAI APIs take it
MessageList = list[Message]


def user(prompt: str) -> MessageList:
    """A one-question conversation: what every sample of these evals sends."""
    return [{"role": "user", "content": prompt}]


def prompt_sha(prompt: str) -> str:
    """Part of the cache key: a cached answer is reused only for the very prompt it answered."""
    return hashlib.sha1(prompt.encode()).hexdigest()[:16]


@dataclass
class SamplerResponse:
    """One final answer and how it was obtained; the fields a per-sample row records."""
    text: str = ""  # the final answer text (empty when the model said nothing after reasoning); never the reasoning
    messages: MessageList = field(default_factory=list)  # the conversation sent, unchanged between attempts
    finish: str | None = None  # finish reason / status as the server gave it
    truncated: bool = False  # stopped by the token limit
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None  # set when no answer came in the retry time: a failure (scored wrong)
    rejected: str | None = None  # the server's message when it answered HTTP 400 (scored wrong)
    attempts: int = 0  # requests sent, retries included
    resampled: int = 0  # answers thrown away for empty content (chat) before this one
    latency_s: float = 0.0
    effort_sent: str | None = None  # the reasoning effort the request carried: recorded per sample

    @property
    def outcome(self) -> str:
        """answered, rejected (HTTP 400) or failed (no answer in the retry time)."""
        return "failed" if self.error else "rejected" if self.rejected else "answered"

    @classmethod
    def from_row(cls, row: dict[str, Any], messages: MessageList) -> "SamplerResponse":
        """The response a cached row recorded, so that it can be graded again without a request."""
        return cls(text=row.get("response") or "", messages=messages, finish=row.get("finish"),
                   truncated=bool(row.get("truncated")), prompt_tokens=row.get("prompt_tokens"),
                   completion_tokens=row.get("completion_tokens"), error=row.get("error"),
                   rejected=row.get("rejected"), attempts=row.get("attempts") or 0,
                   resampled=row.get("resampled") or 0, latency_s=row.get("latency_s") or 0.0,
                   effort_sent=row.get("effort_sent"))


class Sampler(Protocol):
    """Asks a server; the HTTP session is the run's, so all requests share one connection pool."""
    async def __call__(self, session, messages: MessageList | str) -> SamplerResponse: ...


class Sample(Protocol):
    """One cell of an eval: a question asked once. (id, repeat) keys the cache and the statistics."""
    @property
    def id(self) -> str: ...  # the question: the statistics cluster by it

    @property
    def repeat(self) -> int: ...  # which ask of the question

    @property
    def prompt(self) -> str: ...  # the user message sent


@dataclass
class SingleEvalResult:
    """One sample asked and graded: the sample, the answer, the score, and what grading read."""
    sample: Any  # a Sample
    response: SamplerResponse
    score: float  # 1.0 right, 0.0 wrong; Eval.result makes a failed or refused request 0 whatever grade says
    details: dict[str, Any] = field(default_factory=dict)  # what grading read (GPQA: answer, extracted, rule)
    metrics: dict[str, float] = field(default_factory=dict)  # per-sample numbers an eval wants averaged

    @property
    def convo(self) -> MessageList:
        """What was sent and what came back, as the reference's report shows a sample."""
        return [*self.response.messages, {"role": "assistant", "content": self.response.text}]

    def row(self) -> dict[str, Any]:
        """The per-sample record the cache keeps and the record saves (field order as written)."""
        r = self.response
        return {"question_id": self.sample.id, "repeat": self.sample.repeat, "prompt_sha": prompt_sha(self.sample.prompt),
                **self.details, "score": self.score, "outcome": r.outcome, "response": r.text, "finish": r.finish,
                "truncated": r.truncated, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                "attempts": r.attempts, "resampled": r.resampled, "latency_s": round(r.latency_s, 3),
                "effort_sent": r.effort_sent, "error": r.error, "rejected": r.rejected}


@dataclass
class EvalResult:
    """An eval over a sampler: the plain mean (the reference's headline) and every sample's result.
    The clustered errors and intervals of a record come from the runner's statistics."""
    score: float | None  # mean over the samples, failures 0; None when nothing was asked
    metrics: dict[str, float]
    results: list[SingleEvalResult]

    @classmethod
    def of(cls, results: list[SingleEvalResult]) -> "EvalResult":
        n = len(results)
        outcomes = [r.response.outcome for r in results]
        metrics = {"n_samples": n, "n_answered": outcomes.count("answered"),
                   "rejected_requests": outcomes.count("rejected"), "failed_requests": outcomes.count("failed")}
        for name in sorted({k for r in results for k in r.metrics}):
            values = [r.metrics[name] for r in results if name in r.metrics]
            metrics[name] = sum(values) / len(values)
        return cls(score=sum(r.score for r in results) / n if n else None, metrics=metrics, results=results)


class Eval:
    """An eval declares `name`, `samples` and `grade`; calling it asks samples through a sampler.
    Failed and refused requests score 0, as in the reference, whatever `grade` returns."""
    name = ""  # the record's kind
    samples: Sequence[Any] = ()  # Sample objects, in the order asked

    def grade(self, sample, response: SamplerResponse) -> SingleEvalResult:
        raise NotImplementedError

    def result(self, sample, response: SamplerResponse) -> SingleEvalResult:
        """`grade`, with the failure rule applied: only an answered sample can score."""
        graded = self.grade(sample, response)
        if response.outcome != "answered":
            graded.score = 0.0
        return graded

    async def __call__(self, sampler: Sampler, samples: Sequence[Any] | None = None,
                       on_result: Callable[[SingleEvalResult], None] | None = None,
                       concurrency: int = 64) -> EvalResult:
        """Asks `samples` (default: all), at most `concurrency` at a time; each result goes to
        `on_result` as it arrives (the runner caches it at once), then all come back together."""
        from attnbench.evals.sampler import ask_each

        results: list[SingleEvalResult] = []

        def done(sample, response: SamplerResponse) -> None:
            res = self.result(sample, response)
            results.append(res)
            if on_result:
                on_result(res)

        await ask_each(sampler, self.samples if samples is None else samples, done, concurrency)
        return EvalResult.of(results)
