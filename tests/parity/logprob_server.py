"""A scripted vLLM-like completions server for parity tests: a tiny deterministic "model"
(next-token logits are a fixed random row picked by the previous token) answering with vLLM
0.26's response shapes for prompt_logprobs and completion logprobs, plus knobs that change
its answers by known amounts."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import numpy as np

VOCAB = 300


def table(seed: int = 1) -> np.ndarray:
    """log-softmax rows: row t is the next-token distribution after token t."""
    logits = np.random.default_rng(seed).normal(size=(VOCAB, VOCAB)) * 3.0
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


@dataclass
class Script:
    model: str = "tiny"
    prefill_shift: dict[int, float] = field(default_factory=dict)  # prompt position -> added to every logprob there
    flip_decode_at: int | None = None  # greedy step that emits the 2nd-best token instead
    omit_prompt_logprobs: bool = False
    seed: int = 1
    decode_shift: dict[int, float] = field(default_factory=dict)  # greedy step -> added to every logprob there
    later_prefill_shift: dict[int, float] = field(default_factory=dict)  # like prefill_shift, from request `later_from` on
    later_from: int | None = None  # (0-based request count), e.g. a second pass that differs from the first


def _entry(lp_row: np.ndarray, chosen: int, k: int, shift: float) -> dict[str, dict]:
    order = np.argsort(-lp_row, kind="stable")
    rank = int(np.nonzero(order == chosen)[0][0]) + 1
    out = {str(chosen): {"logprob": float(lp_row[chosen] + shift), "rank": rank, "decoded_token": f"<t{chosen}>"}}
    for r, t in enumerate(order[:k], start=1):
        out[str(int(t))] = {"logprob": float(lp_row[t] + shift), "rank": r, "decoded_token": f"<t{t}>"}
    return out


def answer(script: Script, lp: np.ndarray, body: dict, request_index: int = 0) -> dict:
    prompt = [int(t) for t in body["prompt"]]
    k = int(body.get("logprobs") or 0)
    pk = body.get("prompt_logprobs")
    shift = dict(script.prefill_shift)
    if script.later_from is not None and request_index >= script.later_from:
        shift.update(script.later_prefill_shift)
    prompt_lps = [None] + [_entry(lp[prompt[p - 1]], prompt[p], int(pk), shift.get(p, 0.0))
                           for p in range(1, len(prompt))] if pk is not None else None
    tokens, token_lps, tops, ids = [], [], [], []
    last = prompt[-1]
    for step in range(int(body.get("max_tokens") or 16)):
        row = lp[last]
        order = np.argsort(-row, kind="stable")
        chosen = int(order[1] if step == script.flip_decode_at else order[0])
        d = script.decode_shift.get(step, 0.0)
        top = {f"token_id:{chosen}": float(row[chosen] + d)}
        top.update({f"token_id:{int(t)}": float(row[t] + d) for t in order[:k]})
        tokens.append(f"token_id:{chosen}")
        token_lps.append(float(row[chosen] + d))
        tops.append(top)
        ids.append(chosen)
        last = chosen
    choice = {"index": 0, "text": " ".join(f"<t{t}>" for t in ids), "finish_reason": "length", "stop_reason": None,
              "logprobs": {"text_offset": list(range(len(ids))), "token_logprobs": token_lps, "tokens": tokens,
                           "top_logprobs": tops},
              "token_ids": ids, "prompt_token_ids": prompt}
    if not script.omit_prompt_logprobs:
        choice["prompt_logprobs"] = prompt_lps
    return {"id": "cmpl-1", "object": "text_completion", "model": script.model, "choices": [choice],
            "usage": {"prompt_tokens": len(prompt), "completion_tokens": len(ids), "total_tokens": len(prompt) + len(ids)}}


class LogprobServer:
    """aiohttp.web on 127.0.0.1, port 0, on its own thread; `with LogprobServer(script) as s: s.base_url`."""

    def __init__(self, script: Script | None = None, port: int = 0):
        self.script = script or Script()
        self.lp = table(self.script.seed)
        self.requests: list[dict] = []
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        from aiohttp import web

        async def health(request):
            return web.Response(text="")

        async def models(request):
            return web.json_response({"object": "list", "data": [{"id": self.script.model, "object": "model"}]})

        async def completions(request):
            body = await request.json()
            index = len(self.requests)
            self.requests.append(body)
            if body.get("model") != self.script.model:
                return web.json_response({"error": {"message": f"model {body.get('model')!r} not found"}}, status=404)
            return web.json_response(answer(self.script, self.lp, body, index))

        async def start():
            app = web.Application()
            app.router.add_get("/health", health)
            app.router.add_get("/v1/models", models)
            app.router.add_post("/v1/completions", completions)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def serve_forever(self) -> None:
        self._serve()

    def __enter__(self) -> "LogprobServer":
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
