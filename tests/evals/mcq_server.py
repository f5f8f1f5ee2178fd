"""The scripted server (attnbench/serving/scripted_server.py) answering GPQA-style prompts in
scripted ways, per question: right, wrong, malformed, boxed, slow, a 500 or 429 before
answering, always 500, truncated, empty content (once or always), a 400, or with misleading
reasoning; on /v1/chat/completions and /v1/responses, with /v1/models (max_model_len, as vLLM)
and /version. `srv.requests` and `srv.paths` keep what was asked, and where."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from attnbench.serving.scripted_server import Reply, ScriptedServer
from attnbench.serving.scripted_server import Script as Served

MCQServer = ScriptedServer


@dataclass(kw_only=True)
class Script(Served):
    correct: dict[str, str]  # question text -> correct answer text
    behaviour: dict[str, str] = field(default_factory=dict)  # question text -> behaviour (default "right")
    model: str = "scripted-mcq"
    reject_effort: bool = False  # answer 400 when a reasoning effort is sent (a model without reasoning)
    slow_s: float = 0.5
    context: int | None = None  # answer 400 when max_tokens exceeds it, as vLLM does
    version: str | None = "0.0.scripted"  # GET /version; None: no such route
    ttft_s: float = 0.0
    itl_s: float = 0.0
    metrics: bool = False
    seen: Counter[str] = field(default_factory=Counter)  # question -> requests received

    def __post_init__(self):
        self.root = self.root or f"/models/{self.model}"

    def reply(self, path: str, body: dict, n: int) -> Reply:
        if self.reject_effort and ("reasoning_effort" in body or "reasoning" in body):
            return Reply([], status=400, error=f"{'reasoning' if 'reasoning' in body else 'reasoning_effort'} "
                                               "is not supported for this model")
        if self.context and body.get("max_tokens", body.get("max_output_tokens", 0)) > self.context:
            return Reply([], status=400, error=f"This model's maximum context length is {self.context} tokens. "
                                               "However, you requested more.")
        question, options = parse_prompt((body.get("messages") or body["input"])[-1]["content"])
        self.seen[question] += 1
        n = self.seen[question]
        right = next(k for k, v in options.items() if v == self.correct[question])
        wrong = next(k for k in "ABCD" if k != right)
        how = self.behaviour.get(question, "right")
        if how == "error500" and n == 1 or how == "always500":
            return Reply([], status=500, error="scripted")
        if how == "ratelimit" and n == 1:
            return Reply([], status=429, error="scripted")
        if how == "reject":
            return Reply([], status=400, error="scripted")
        if how == "always_empty" or how == "empty_once" and n == 1:
            return answered("", "length", "thinking until the token limit")
        if how == "wrong":
            return answered(f"Answer: {wrong}")
        if how == "malformed":
            return answered("I am not sure about this one.")
        if how == "lowercase":  # a bare lowercase letter: the reference does not award it
            return answered(right.lower())
        if how == "boxed":
            return answered(f"The result is $\\boxed{{{right}}}$")
        if how == "truncate":
            return answered("Let me think step by", "length")
        if how == "reasoning":  # the thinking names a wrong letter; only the final text counts
            return answered(f"**Answer:** {right}", reasoning=f"Answer: {wrong}")
        return answered(f"Answer: {right}", delay_s=self.slow_s if how == "slow" else 0.0)


def answered(text: str, finish: str = "stop", reasoning: str = "", delay_s: float = 0.0) -> Reply:
    return Reply([text], finish, reasoning, delay_s=delay_s, usage=(50, 7))


def parse_prompt(prompt: str) -> tuple[str, dict[str, str]]:
    question = prompt.split("\n\n(A) ", 1)[0]
    options = dict(re.findall(r"^\(([ABCD])\) (.*)$", prompt, re.M))
    return question, options


def fixture_script(questions, behaviour: dict[int, str] | None = None, **kw) -> Script:
    """A Script for gpqa.Question objects; `behaviour` maps a question's index to its behaviour."""
    behaviour = behaviour or {}
    return Script(correct={q.question: q.correct for q in questions},
                  behaviour={questions[i].question: b for i, b in behaviour.items()}, **kw)
