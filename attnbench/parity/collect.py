"""Ask one server for what parity compares, and keep it as plain data.

One completions request per prompt, up to `concurrency` (64) in flight, as serving runs them:
CUDA graphs at batch > 1, split-KV choices and mixed prefill/decode batches are what a backend
must get right. Batches then differ from run to run, which is part of the noise that the null
comparison (the reference collected twice, in another send order) measures:
  - `prompt_logprobs: k` (a vLLM extension): teacher-forced logprobs of every prompt position,
    the actual next token plus the top k. vLLM answers a list with one entry per prompt token,
    None first, else {"<token id>": {"logprob", "rank", "decoded_token"}}.
  - `temperature: 0, max_tokens: N, logprobs: k, ignore_eos`: a greedy continuation (the decode
    path, reading the whole prompt's KV cache); `return_tokens_as_token_ids` makes tokens come
    back as "token_id:123" whatever the tokenizer.
Rescoring: a greedy continuation leaves the reference's own at the first token where they differ,
so from there the reference has no logprobs for the backend's context. Sending prompt +
continuation back to the reference as a prompt (`prompt_logprobs: k`, `max_tokens: 1`; vLLM
recomputes a prompt_logprobs request instead of reading its prefix cache) gives the reference's
teacher-forced logprobs for every token the backend generated, so every decode position compares.

Collection and comparison are separate: a Collection is saved as JSON per backend and
compared later (metrics.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from attnbench.errors import UserError
from attnbench.parity.prompts import PromptSet

FLOOR = -9999.0  # vLLM clamps -inf to this in completion logprobs; we do the same everywhere


@dataclass(frozen=True)
class Settings:
    prompts: PromptSet = field(default_factory=PromptSet)
    # flags as run.Parity says; the bounds are those __post_init__ checks
    # vLLM refuses more than its --max-logprobs (default 20)
    top_k: int = field(default=10, metadata={
        "flag": "--top-k", "bound": (">=", 1),
        "help": "Top-k logprobs per position (vLLM allows up to its --max-logprobs, default 20)."})
    max_tokens: int = field(default=32, metadata={"flag": "--max-tokens", "bound": (">=", 1),
                                                  "help": "Greedy tokens generated per prompt."})
    request_timeout_s: float = field(default=600.0, metadata={"flag": "--request-timeout", "bound": (">", 0),
                                                              "help": "Seconds before one request counts as failed."})
    concurrency: int = field(default=64, metadata={
        "flag": "--concurrency", "bound": (">=", 1),
        "help": "Requests in flight (>= 64 exercises CUDA graphs at batch > 1, split-KV and mixed batches as "
                "serving does)."})

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise UserError(f"--top-k must be >= 1 (got {self.top_k})")
        if self.max_tokens < 1:
            raise UserError(f"--max-tokens must be >= 1 (got {self.max_tokens})")
        if self.concurrency < 1:
            raise UserError(f"--concurrency must be >= 1 (got {self.concurrency})")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Settings":
        return cls(**{**obj, "prompts": PromptSet(**obj["prompts"])})


@dataclass
class Positions:
    """Per position: the token that came next, its logprob, and the top-k (ids and logprobs,
    best first). For a prompt, positions 1..n-1 (position 0 has no context); for a continuation,
    every generated token."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_ids: list[list[int]] = field(default_factory=list)
    top_logprobs: list[list[float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.token_ids)

    def append(self, token: int, logprob: float | None, top: dict[int, float | None]) -> None:
        ranked = sorted(((_lp(v), t) for t, v in top.items()), key=lambda x: (-x[0], x[1]))
        self.token_ids.append(int(token))
        self.logprobs.append(_lp(logprob))
        self.top_ids.append([t for _, t in ranked])
        self.top_logprobs.append([v for v, _ in ranked])


@dataclass
class PromptResult:
    prompt_token_ids: list[int]
    prefill: Positions  # teacher-forced
    decode: Positions  # greedy continuation
    finish_reason: str | None = None
    rescored: Positions | None = None  # the reference's teacher-forced logprobs of `decode`'s tokens


@dataclass
class Collection:
    """Everything one backend (or the fp32 reference) answered, ready to be saved as JSON."""

    name: str
    model: str
    settings: Settings
    results: list[PromptResult] = field(default_factory=list)
    source: str = ""  # base URL, or "transformers fp32 cpu"
    rescored_by: str = ""  # the source whose logprobs each result's `rescored` holds
    null_of: str = ""  # set on a second collection of that source (the null pass)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "source": self.source,
                "rescored_by": self.rescored_by, "null_of": self.null_of,
                "settings": self.settings.to_json(),
                "results": [dataclasses.asdict(r) for r in self.results]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Collection":
        results = [PromptResult(r["prompt_token_ids"], Positions(**r["prefill"]), Positions(**r["decode"]),
                                r.get("finish_reason"), Positions(**r["rescored"]) if r.get("rescored") else None)
                   for r in obj["results"]]
        return cls(obj["name"], obj["model"], Settings.from_json(obj["settings"]), results, obj.get("source", ""),
                   obj.get("rescored_by", ""), obj.get("null_of", ""))

    def save(self, path) -> None:
        """JSON, gzipped when the name ends in .gz (a long prompt's top-k is megabytes of text)."""
        import gzip
        import json

        from attnbench import atomic

        data = (json.dumps(self.to_json(), separators=(",", ":")) + "\n").encode()
        atomic.write_bytes(path, gzip.compress(data, mtime=0) if str(path).endswith(".gz") else data)

    @classmethod
    def load(cls, path) -> "Collection":
        import gzip
        import json
        from pathlib import Path

        try:
            data = Path(path).read_bytes()
            return cls.from_json(json.loads(gzip.decompress(data) if str(path).endswith(".gz") else data))
        except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
            raise UserError(f"{path}: not a parity collection ({e}); collect it again with `attnbench parity`") from None


def _lp(value: float | None) -> float:
    """JSON has no -inf: vLLM writes null (or clamps to -9999); both become FLOOR."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return FLOOR
    return max(float(value), FLOOR)


def _token_id(token: str) -> int:
    head, _, tail = token.rpartition(":")
    if head != "token_id" or not tail.lstrip("-").isdigit():
        raise ValueError(f"token {token!r} is not 'token_id:N'")
    return int(tail)


class NotParityCapable(UserError):
    """The server answers completions but not with what parity needs."""


def request_body(model: str, prompt: list[int], settings: Settings) -> dict[str, Any]:
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": settings.max_tokens,
        "temperature": 0.0,
        "ignore_eos": True,  # the same length on every backend, whatever token comes out
        # plain greedy: vLLM otherwise takes defaults (e.g. repetition_penalty) from the model's
        # generation_config.json, which the fp32 transformers reference does not apply
        "repetition_penalty": 1.0,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "logprobs": settings.top_k,
        "prompt_logprobs": settings.top_k,
        "return_tokens_as_token_ids": True,
        "return_token_ids": True,
        "stream": False,
    }


def prompt_positions(name: str, plps: list, tokens: list[int], start: int, top_k: int) -> Positions:
    """Positions start..end of vLLM's prompt_logprobs for the token ids it was sent."""
    out = Positions()
    for pos in range(start, len(tokens)):
        entry = {int(t): v for t, v in (plps[pos] or {}).items()}
        actual = entry.get(tokens[pos])
        if actual is None:
            raise NotParityCapable(f"{name}: prompt_logprobs at position {pos} lack the prompt token "
                                   f"{tokens[pos]}; is this vLLM's OpenAI server?")
        top = {t: v["logprob"] for t, v in entry.items() if v.get("rank") is not None and v["rank"] <= top_k}
        if not top:  # no ranks given: the top-k are the k best entries
            top = dict(sorted(((t, v["logprob"]) for t, v in entry.items()), key=lambda x: -_lp(x[1]))[:top_k])
        out.append(tokens[pos], actual["logprob"], top)
    return out


def parse_choice(name: str, choice: dict[str, Any], prompt: list[int], top_k: int) -> PromptResult:
    """One completions choice -> PromptResult; a NotParityCapable error naming the missing vLLM
    feature when the answer lacks it."""
    plps = choice.get("prompt_logprobs")
    if not plps:
        raise NotParityCapable(
            f"{name}: the server returned no prompt_logprobs; parity needs vLLM's OpenAI server "
            "(the `prompt_logprobs` completions extension), not a plain OpenAI-compatible server")
    if len(plps) != len(prompt):
        raise NotParityCapable(f"{name}: {len(plps)} prompt_logprobs for a {len(prompt)}-token prompt; "
                               "was the prompt re-tokenized (a BOS token added)? parity sends token ids")
    prefill = prompt_positions(name, plps, prompt, 1, top_k)

    lps = choice.get("logprobs")
    if not lps or not lps.get("tokens"):
        raise NotParityCapable(f"{name}: the server returned no completion logprobs; parity needs `logprobs: k`")
    decode = Positions()
    try:
        for token, logprob, top in zip(lps["tokens"], lps["token_logprobs"], lps["top_logprobs"]):
            ranked = sorted(((_token_id(t), v) for t, v in (top or {}).items()), key=lambda x: -_lp(x[1]))
            decode.append(_token_id(token), logprob, dict(ranked[:top_k]))
    except ValueError as e:
        raise NotParityCapable(f"{name}: {e}; parity needs vLLM's `return_tokens_as_token_ids`") from None
    return PromptResult(list(prompt), prefill, decode, choice.get("finish_reason"))


async def _choice(session, name: str, base_url: str, body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """POST one completions request; its first choice, or a one-line error."""
    import aiohttp

    url = f"{base_url}/completions"
    try:
        async with session.post(url, json=body) as r:
            text = await r.text()
            if r.status != 200:
                raise UserError(f"{name}: {url} answered HTTP {r.status}: {_error_message(text)}"
                                f"{_hint(text, settings)}")
            try:
                answer = await r.json(content_type=None)
            except ValueError:
                raise NotParityCapable(f"{name}: {url} did not answer JSON; is it an OpenAI-compatible server?") from None
    except aiohttp.ClientConnectionError as e:
        raise UserError(f"{name}: cannot reach {base_url} ({e}); is the server running and the URL right?") from None
    except asyncio.TimeoutError:
        raise UserError(f"{name}: no answer from {url} within {settings.request_timeout_s:.0f} s") from None
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices:
        raise NotParityCapable(f"{name}: {url} answered without choices")
    return choices[0]


async def _one(session, name: str, base_url: str, model: str, prompt: list[int], settings: Settings) -> PromptResult:
    choice = await _choice(session, name, base_url, request_body(model, prompt, settings), settings)
    return parse_choice(name, choice, prompt, settings.top_k)


def rescore_body(model: str, result: PromptResult, settings: Settings) -> dict[str, Any]:
    """Prompt + continuation as one prompt: its prompt logprobs from position len(prompt) on
    are the continuation's tokens, teacher-forced. One token is generated (vLLM needs >= 1)."""
    body = request_body(model, result.prompt_token_ids + result.decode.token_ids, settings)
    body.update(max_tokens=1, logprobs=None, ignore_eos=False)
    return body


async def _rescore_one(session, name: str, base_url: str, model: str, result: PromptResult,
                       settings: Settings) -> Positions:
    tokens = result.prompt_token_ids + result.decode.token_ids
    choice = await _choice(session, name, base_url, rescore_body(model, result, settings), settings)
    plps = choice.get("prompt_logprobs")
    if not plps or len(plps) != len(tokens):
        raise NotParityCapable(f"{name}: rescoring a continuation got {len(plps or [])} prompt_logprobs for "
                               f"{len(tokens)} tokens; parity needs vLLM's `prompt_logprobs` on token-id prompts")
    return prompt_positions(name, plps, tokens, len(result.prompt_token_ids), settings.top_k)


async def _gather(settings: Settings, jobs: list[Callable], progress: Callable[[int, int], None] | None) -> list:
    """Run coroutine factories `job(session)` with `concurrency` in flight, in list order; results
    in list order."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)
    gate = asyncio.Semaphore(settings.concurrency)
    results: list[Any] = [None] * len(jobs)
    done = 0

    async def one(session, i: int) -> None:
        nonlocal done
        async with gate:
            results[i] = await jobs[i](session)
        done += 1
        if progress:
            progress(done, len(jobs))

    conn = aiohttp.TCPConnector(limit=settings.concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:
        tasks = [asyncio.ensure_future(one(session, i)) for i in range(len(jobs))]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
    return results


def _error_message(text: str) -> str:
    import json

    try:
        err = json.loads(text).get("error", {})
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except (ValueError, AttributeError):
        return text[:300]


def _hint(text: str, settings: Settings) -> str:
    low = text.lower()
    if "logprobs" in low and ("max" in low or "exceed" in low):
        return f" (lower --top-k below {settings.top_k}, or start vLLM with --max-logprobs {settings.top_k})"
    if "context" in low or "max_model_len" in low or "maximum" in low:
        return " (shorten --long-len, or raise the server's --max-model-len)"
    return ""


def send_order(n: int, order_seed: int | None) -> list[int]:
    """Prompt indices in the order they are sent: as listed, or shuffled by `order_seed` (the
    null run sends the same prompts in another order, so batches are composed differently)."""
    import random

    order = list(range(n))
    if order_seed is not None:
        random.Random(order_seed).shuffle(order)
    return order


async def collect_async(name: str, base_url: str, model: str, settings: Settings,
                        progress: Callable[[int, int], None] | None = None,
                        order_seed: int | None = None) -> Collection:
    prompts = settings.prompts.prompts()
    order = send_order(len(prompts), order_seed)
    jobs = [lambda session, i=i: _one(session, name, base_url, model, prompts[i], settings) for i in order]
    sent = await _gather(settings, jobs, progress)
    results: list[PromptResult | None] = [None] * len(prompts)
    for i, r in zip(order, sent):
        results[i] = r
    return Collection(name=name, model=model, settings=settings, source=base_url, results=list(results))


def rescore(target: Collection, name: str, base_url: str, model: str,
            progress: Callable[[int, int], None] | None = None) -> Collection:
    """Fill `target`'s results with `rescored`: the logprobs that the server at base_url (the
    reference, called `name`) gives target's greedy tokens, teacher-forced."""
    from attnbench.serving.endpoint import normalize

    url = normalize(base_url)
    jobs = [lambda session, r=r: _rescore_one(session, name, url, model, r, target.settings) for r in target.results]
    for r, positions in zip(target.results, asyncio.run(_gather(target.settings, jobs, progress))):
        r.rescored = positions
    target.rescored_by = name
    return target


def run_parity_requests(base_url: str, model: str, settings: Settings, name: str = "server",
                        progress: Callable[[int, int], None] | None = None,
                        order_seed: int | None = None) -> Collection:
    """Collect parity data from an already running vLLM server (base URL .../v1); for scenario
    runners and the parity command alike."""
    from attnbench.serving.endpoint import normalize

    return asyncio.run(collect_async(name, normalize(base_url), model, settings, progress, order_seed))
