"""A real OpenAI-compatible server on 127.0.0.1 (aiohttp, its own thread) that answers GPQA-style
prompts in scripted ways, per question: right, wrong, malformed, boxed, slow, a 500 or 429 before
answering, always 500, truncated, empty content (once or always), a 400, or with misleading
reasoning. Serves /v1/chat/completions, /v1/responses, /v1/models (with max_model_len, as vLLM)
and /version, and keeps every request body for tests to inspect."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Script:
    correct: dict[str, str]  # question text -> correct answer text
    behaviour: dict[str, str] = field(default_factory=dict)  # question text -> behaviour (default "right")
    model: str = "scripted-mcq"
    reject_effort: bool = False  # answer 400 when a reasoning effort is sent (a model without reasoning)
    slow_s: float = 0.5
    context: int | None = None  # answer 400 when max_tokens exceeds it, as vLLM does
    max_model_len: int | None = None  # shown in /v1/models, as vLLM does
    version: str | None = "0.0.scripted"  # GET /version; None: no such route


def parse_prompt(prompt: str) -> tuple[str, dict[str, str]]:
    question = prompt.split("\n\n(A) ", 1)[0]
    options = dict(re.findall(r"^\(([ABCD])\) (.*)$", prompt, re.M))
    return question, options


class MCQServer:
    def __init__(self, script: Script):
        self.script = script
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.seen: Counter[str] = Counter()  # question -> requests received
        self.port = 0
        self._loop = None
        self._runner = None
        self._ready = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, prompt: str) -> tuple[int, str, str | None, str]:
        """(HTTP status, final text, finish reason, reasoning text)."""
        question, options = parse_prompt(prompt)
        self.seen[question] += 1
        n = self.seen[question]
        right = next(k for k, v in options.items() if v == self.script.correct[question])
        wrong = next(k for k in "ABCD" if k != right)
        how = self.script.behaviour.get(question, "right")
        if how == "error500" and n == 1 or how == "always500":
            return 500, "", None, ""
        if how == "ratelimit" and n == 1:
            return 429, "", None, ""
        if how == "reject":
            return 400, "", None, ""
        if how == "always_empty" or how == "empty_once" and n == 1:
            return 200, "", "length", "thinking until the token limit"
        if how == "wrong":
            return 200, f"Answer: {wrong}", "stop", ""
        if how == "malformed":
            return 200, "I am not sure about this one.", "stop", ""
        if how == "lowercase":  # a bare lowercase letter: the reference does not award it
            return 200, right.lower(), "stop", ""
        if how == "boxed":
            return 200, f"The result is $\\boxed{{{right}}}$", "stop", ""
        if how == "truncate":
            return 200, "Let me think step by", "length", ""
        if how == "reasoning":  # the thinking names a wrong letter; only the final text counts
            return 200, f"**Answer:** {right}", "stop", f"Answer: {wrong}"
        return 200, f"Answer: {right}", "stop", ""

    async def _chat(self, request):
        from aiohttp import web

        body = await request.json()
        self.requests.append(body)
        self.paths.append("chat")
        if self.script.reject_effort and "reasoning_effort" in body:
            return web.json_response({"error": {"message": "reasoning_effort is not supported for this model"}}, status=400)
        if self.script.context and body.get("max_tokens", 0) > self.script.context:
            return self._too_long(web)
        status, text, finish, reasoning = self.answer(body["messages"][-1]["content"])
        if self.behaviour_of(body["messages"][-1]["content"]) == "slow":
            await asyncio.sleep(self.script.slow_s)
        if status != 200:
            return web.json_response({"error": {"message": "scripted"}}, status=status)
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "model": self.script.model,
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": text or None, "reasoning_content": reasoning or None}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57},
        })

    async def _responses(self, request):
        from aiohttp import web

        body = await request.json()
        self.requests.append(body)
        self.paths.append("responses")
        if self.script.reject_effort and "reasoning" in body:
            return web.json_response({"error": {"message": "reasoning is not supported for this model"}}, status=400)
        if self.script.context and body.get("max_output_tokens", 0) > self.script.context:
            return self._too_long(web)
        prompt = body["input"][-1]["content"]
        status, text, finish, reasoning = self.answer(prompt)
        if self.behaviour_of(prompt) == "slow":
            await asyncio.sleep(self.script.slow_s)
        if status != 200:
            return web.json_response({"error": {"message": "scripted"}}, status=status)
        output = []
        if reasoning:
            output.append({"type": "reasoning", "content": [{"type": "reasoning_text", "text": reasoning}]})
        output.append({"type": "message", "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]})
        truncated = finish == "length"
        return web.json_response({
            "id": "resp-1", "object": "response", "model": self.script.model, "output": output,
            "status": "incomplete" if truncated else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
            "usage": {"input_tokens": 60, "output_tokens": 9, "total_tokens": 69},
        })

    def _too_long(self, web):
        return web.json_response({"error": {"message": f"This model's maximum context length is {self.script.context} "
                                             "tokens. However, you requested more.", "code": 400}}, status=400)

    def behaviour_of(self, prompt: str) -> str:
        return self.script.behaviour.get(parse_prompt(prompt)[0], "right")

    async def _models(self, request):
        from aiohttp import web

        card = {"id": self.script.model, "object": "model", "root": f"/models/{self.script.model}"}
        if self.script.max_model_len:
            card["max_model_len"] = self.script.max_model_len
        return web.json_response({"object": "list", "data": [card]})

    async def _version(self, request):
        from aiohttp import web

        if self.script.version is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        return web.json_response({"version": self.script.version})

    def _serve(self):
        from aiohttp import web

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/version", self._version)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> "MCQServer":
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def fixture_script(questions, behaviour: dict[int, str] | None = None, **kw) -> Script:
    """A Script for gpqa.Question objects; `behaviour` maps a question's index to its behaviour."""
    behaviour = behaviour or {}
    return Script(correct={q.question: q.correct for q in questions},
                  behaviour={questions[i].question: b for i, b in behaviour.items()}, **kw)
