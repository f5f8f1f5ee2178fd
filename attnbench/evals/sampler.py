"""One question in, one final answer out, over an OpenAI-compatible API (`/chat/completions` or
`/responses`, as the reference's two samplers). Only the final text is returned, never the
reasoning. As in the reference: a request the server refuses (HTTP 400) is not asked again and
its sample scores 0; anything transient (429, 5xx, timeouts, dropped connections) is retried
with exponential backoff, here until a total time per sample runs out (the reference retries
forever), after which the sample is a failure that still counts as wrong; the chat sampler asks
again when the final content is empty (a bounded number of times). The request is never changed
between attempts: the reasoning effort asked is the effort sent."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from attnbench.evals.types import MessageList, SamplerResponse, user

EFFORTS = ("low", "medium", "high", "none")
APIS = ("responses", "chat")
MAX_TOKENS = 131072  # what the reference sends with both samplers


class _Retryable(Exception):
    """429, 5xx, timeout, dropped connection, unreadable body: try again after a backoff."""


class _Rejected(Exception):
    """HTTP 400: the request itself was refused (e.g. reasoning effort for a model without it)."""


class _Fatal(Exception):
    """Any other status (404, 401, ...): asking again will not help."""


class ApiSampler:
    """A types.Sampler over an OpenAI-compatible API: the common request loop; subclasses say
    where to POST, what to send and how to read the answer."""

    api = ""
    path = ""
    resample_empty = False  # the chat sampler asks again when the content is empty

    def __init__(self, base_url: str, model: str, effort: str = "low", max_tokens: int = MAX_TOKENS,
                 temperature: float = 1.0, timeout_s: float = 3600.0, retry_time_s: float = 7200.0,
                 backoff_s: float = 1.0, empty_resamples: int = 4, notice: Callable[[str], None] | None = None):
        if effort not in EFFORTS:
            from attnbench.errors import UserError

            raise UserError(f"--effort {effort!r}: use one of {', '.join(EFFORTS)}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.effort = None if effort == "none" else effort
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.retry_time_s = retry_time_s
        self.backoff_s = backoff_s
        self.empty_resamples = empty_resamples
        self.notice = notice or (lambda s: print(s, file=sys.stderr))
        self.rejections = 0  # HTTP 400 answers so far (the first one is noticed)

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def payload(self, messages: MessageList) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, body: dict[str, Any]) -> SamplerResponse:
        raise NotImplementedError

    async def __call__(self, session, messages: MessageList | str) -> SamplerResponse:
        """`session` is an aiohttp.ClientSession shared by all requests of a run; a plain string
        is a one-question conversation."""
        import aiohttp

        messages = user(messages) if isinstance(messages, str) else list(messages)
        t0 = time.monotonic()
        attempt, resampled = 0, 0

        def done(reply: SamplerResponse) -> SamplerResponse:
            reply.attempts, reply.resampled, reply.effort_sent = attempt, resampled, self.effort
            reply.messages = messages
            reply.latency_s = time.monotonic() - t0
            return reply

        while True:
            attempt += 1
            try:
                reply = await self._post(session, messages, aiohttp)
            except _Retryable as e:
                wait = min(60.0, self.backoff_s * 2 ** (attempt - 1))
                elapsed = time.monotonic() - t0
                if elapsed + wait > self.retry_time_s:
                    return done(SamplerResponse(error=f"gave up after {attempt} attempts in {elapsed:.0f} s "
                                                      f"(retry time {self.retry_time_s:g} s, --retry-time): {e}"))
                await asyncio.sleep(wait)
                continue
            except _Rejected as e:
                self._notice_rejection(str(e))
                return done(SamplerResponse(rejected=str(e)))
            except _Fatal as e:
                return done(SamplerResponse(error=str(e)))
            if self.resample_empty and not reply.text and resampled < self.empty_resamples:
                resampled += 1
                continue
            return done(reply)

    def _notice_rejection(self, message: str) -> None:
        self.rejections += 1
        if self.rejections > 1:
            return
        fix = ("; for a server without reasoning use --effort none" if self.effort else "")
        what = f"a request with reasoning effort {self.effort!r}" if self.effort else "a request"
        self.notice(f"attnbench: {self.model} answered HTTP 400 to {what} ({message}); such samples are "
                    f"scored wrong, as the reference scores them, and counted{fix}")

    async def _post(self, session, messages: MessageList, aiohttp) -> SamplerResponse:
        try:
            async with session.post(self.url, json=self.payload(messages),
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


class ChatSampler(ApiSampler):
    """/v1/chat/completions; reasoning effort as `reasoning_effort`. An empty final content is
    sampled again, as the reference does (it keeps asking; here at most `empty_resamples` times).
    The reference also appends the reasoning of an empty answer to the conversation it re-sends;
    this sampler re-sends the question alone."""

    api = "chat"
    path = "/chat/completions"
    resample_empty = True

    def payload(self, messages: MessageList) -> dict[str, Any]:
        body = {"model": self.model, "messages": messages,
                "max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.effort:
            body["reasoning_effort"] = self.effort
        return body

    def parse(self, body: dict[str, Any]) -> SamplerResponse:
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        finish = choice.get("finish_reason")
        # message.reasoning / reasoning_content hold the thinking: never graded
        return SamplerResponse(text=choice["message"].get("content") or "", finish=finish, truncated=finish == "length",
                     prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"))


class ResponsesSampler(ApiSampler):
    """/v1/responses; reasoning effort as `reasoning: {effort}`."""

    api = "responses"
    path = "/responses"

    def payload(self, messages: MessageList) -> dict[str, Any]:
        body = {"model": self.model, "input": messages,
                "max_output_tokens": self.max_tokens, "temperature": self.temperature}
        if self.effort:
            body["reasoning"] = {"effort": self.effort}
        return body

    def parse(self, body: dict[str, Any]) -> SamplerResponse:
        if not isinstance(body.get("output"), list):
            raise KeyError("output")
        parts = [c.get("text") or "" for item in body["output"] if item.get("type") == "message"
                 for c in item.get("content") or [] if c.get("type") in ("output_text", "text")]
        usage = body.get("usage") or {}
        status = body.get("status")
        reason = (body.get("incomplete_details") or {}).get("reason")
        return SamplerResponse(text="".join(parts), finish=reason or status,
                     truncated=status == "incomplete" and reason in (None, "max_output_tokens", "length"),
                     prompt_tokens=usage.get("input_tokens"), completion_tokens=usage.get("output_tokens"))


def make(api: str, **kwargs) -> ApiSampler:
    if api not in APIS:
        from attnbench.errors import UserError

        raise UserError(f"--api {api!r}: use responses or chat")
    return {"chat": ChatSampler, "responses": ResponsesSampler}[api](**kwargs)


async def ask_each(sampler, samples, on_response: Callable, concurrency: int = 64) -> None:
    """Each sample's prompt through `sampler`, at most `concurrency` in flight over one HTTP
    session; `on_response(sample, response)` runs as each answer arrives."""
    import aiohttp

    queue: asyncio.Queue = asyncio.Queue()
    for s in samples:
        queue.put_nowait(s)

    async def worker(session):
        while True:
            try:
                sample = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            on_response(sample, await sampler(session, sample.prompt))

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        await asyncio.gather(*(worker(session) for _ in range(min(concurrency, len(samples)) or 1)))
