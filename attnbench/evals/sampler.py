"""One question in, one final answer out, over an OpenAI-compatible API (`/chat/completions` or
`/responses`, as the reference's two samplers). Only the final text is returned, never the
reasoning. Transient failures (429, 5xx, timeouts, dropped connections) are retried with
exponential backoff a bounded number of times; an answer that never came is a failed Reply,
not an empty one that would be scored as wrong."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EFFORTS = ("low", "medium", "high", "none")
APIS = ("responses", "chat")


@dataclass
class Reply:
    text: str = ""  # the final answer text (empty when the model said nothing after reasoning)
    finish: str | None = None  # finish reason / status as the server gave it
    truncated: bool = False  # stopped by the token limit
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None  # set when no answer came; the sample is then reported as failed
    attempts: int = 0
    latency_s: float = 0.0
    effort_sent: bool = False


class _Retryable(Exception):
    """429, 5xx, timeout, dropped connection, unreadable body: try again after a backoff."""


class _Rejected(Exception):
    """HTTP 400: the request itself was refused (e.g. reasoning effort for a model without it)."""


class _Fatal(Exception):
    """Any other status (404, 401, ...): asking again will not help."""


class Sampler:
    """Common request loop; subclasses say where to POST, what to send and how to read the answer."""

    api = ""
    path = ""

    def __init__(self, base_url: str, model: str, effort: str = "low", max_tokens: int = 32768,
                 temperature: float = 1.0, timeout_s: float = 1800.0, retries: int = 5, backoff_s: float = 1.0,
                 notice: Callable[[str], None] | None = None):
        if effort not in EFFORTS:
            from attnbench.errors import UserError

            raise UserError(f"--effort {effort!r}: use one of {', '.join(EFFORTS)}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.effort = None if effort == "none" else effort
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.notice = notice or (lambda s: print(s, file=sys.stderr))
        self.effort_rejected = False  # the server refused reasoning effort once: stop sending it

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def payload(self, prompt: str, effort: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, body: dict[str, Any]) -> Reply:
        raise NotImplementedError

    async def __call__(self, session, prompt: str) -> Reply:
        """`session` is an aiohttp.ClientSession shared by all requests of a run."""
        import aiohttp

        t0 = time.monotonic()
        attempt, last_error, drop_effort, rejection = 0, "no attempt", False, ""
        while attempt <= self.retries:
            attempt += 1
            effort = None if (self.effort_rejected or drop_effort) else self.effort
            try:
                reply = await self._post(session, prompt, effort, aiohttp)
            except _Retryable as e:
                last_error = str(e)
                if attempt > self.retries:
                    break
                await asyncio.sleep(min(60.0, self.backoff_s * 2 ** (attempt - 1)))
                continue
            except _Rejected as e:
                if effort is not None:  # maybe a model without reasoning (SmolLM2): ask again without it
                    drop_effort, rejection = True, str(e)
                    attempt -= 1
                    continue
                return Reply(error=f"HTTP 400: {e}", attempts=attempt, latency_s=time.monotonic() - t0)
            except _Fatal as e:
                return Reply(error=str(e), attempts=attempt, latency_s=time.monotonic() - t0)
            if drop_effort and not self.effort_rejected:  # it worked without: stop sending it, say so once
                self.effort_rejected = True
                self.notice(f"attnbench: {self.model} rejected reasoning effort {self.effort!r} "
                            f"(HTTP 400: {rejection}); continuing without it")
            reply.attempts, reply.latency_s, reply.effort_sent = attempt, time.monotonic() - t0, effort is not None
            return reply
        return Reply(error=f"gave up after {attempt} attempts: {last_error}", attempts=attempt,
                     latency_s=time.monotonic() - t0)

    async def _post(self, session, prompt: str, effort: str | None, aiohttp) -> Reply:
        try:
            async with session.post(self.url, json=self.payload(prompt, effort),
                                    timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as r:
                raw = await r.read()
                status = r.status
        except asyncio.TimeoutError:
            raise _Retryable(f"no answer within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as e:
            raise _Retryable(f"{type(e).__name__}: {e}") from None
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}: {_error_message(raw)}")
        if status == 400:
            raise _Rejected(_error_message(raw))
        if status != 200:
            raise _Fatal(f"HTTP {status} from {self.url}: {_error_message(raw)}")
        try:
            body = json.loads(raw)
            return self.parse(body)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise _Retryable(f"unreadable answer ({type(e).__name__}: {str(e)[:80]})") from None


def _error_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
        err = body.get("error", body) if isinstance(body, dict) else body
        msg = err.get("message", err) if isinstance(err, dict) else err
        return str(msg).splitlines()[0][:200] if str(msg) else "(empty)"
    except ValueError:
        return raw.decode(errors="replace").strip().splitlines()[0][:200] if raw.strip() else "(empty)"


class ChatSampler(Sampler):
    """/v1/chat/completions; reasoning effort as `reasoning_effort`."""

    api = "chat"
    path = "/chat/completions"

    def payload(self, prompt: str, effort: str | None) -> dict[str, Any]:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": self.max_tokens, "temperature": self.temperature}
        if effort:
            body["reasoning_effort"] = effort
        return body

    def parse(self, body: dict[str, Any]) -> Reply:
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        finish = choice.get("finish_reason")
        # message.reasoning / reasoning_content hold the thinking: never graded
        return Reply(text=choice["message"].get("content") or "", finish=finish, truncated=finish == "length",
                     prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"))


class ResponsesSampler(Sampler):
    """/v1/responses; reasoning effort as `reasoning: {effort}`."""

    api = "responses"
    path = "/responses"

    def payload(self, prompt: str, effort: str | None) -> dict[str, Any]:
        body = {"model": self.model, "input": [{"role": "user", "content": prompt}],
                "max_output_tokens": self.max_tokens, "temperature": self.temperature}
        if effort:
            body["reasoning"] = {"effort": effort}
        return body

    def parse(self, body: dict[str, Any]) -> Reply:
        if not isinstance(body.get("output"), list):
            raise KeyError("output")
        parts = [c.get("text") or "" for item in body["output"] if item.get("type") == "message"
                 for c in item.get("content") or [] if c.get("type") in ("output_text", "text")]
        usage = body.get("usage") or {}
        status = body.get("status")
        reason = (body.get("incomplete_details") or {}).get("reason")
        return Reply(text="".join(parts), finish=reason or status,
                     truncated=status == "incomplete" and reason in (None, "max_output_tokens", "length"),
                     prompt_tokens=usage.get("input_tokens"), completion_tokens=usage.get("output_tokens"))


def make(api: str, **kwargs) -> Sampler:
    if api not in APIS:
        from attnbench.errors import UserError

        raise UserError(f"--api {api!r}: use responses or chat")
    return {"chat": ChatSampler, "responses": ResponsesSampler}[api](**kwargs)
