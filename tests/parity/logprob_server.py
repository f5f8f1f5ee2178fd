"""The scripted server (attnbench/serving/scripted_server.py) for parity tests: a tiny deterministic "model"
(next-token logits are a fixed random row picked by the previous token) answering with vLLM
0.26's response shapes for prompt_logprobs and completion logprobs, plus knobs that change
its answers by known amounts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from attnbench.serving import scripted_server as served

VOCAB = 300


def table(seed: int = 1) -> np.ndarray:
    """log-softmax rows: row t is the next-token distribution after token t."""
    logits = np.random.default_rng(seed).normal(size=(VOCAB, VOCAB)) * 3.0
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


@dataclass(kw_only=True)
class Script(served.Script):
    model: str = "tiny"
    ttft_s: float = 0.0
    itl_s: float = 0.0
    metrics: bool = False
    prefill_shift: dict[int, float] = field(default_factory=dict)  # prompt position -> added to every logprob there
    flip_decode_at: int | None = None  # greedy step that emits the 2nd-best token instead
    omit_prompt_logprobs: bool = False
    seed: int = 1
    decode_shift: dict[int, float] = field(default_factory=dict)  # greedy step -> added to every logprob there
    later_prefill_shift: dict[int, float] = field(default_factory=dict)  # like prefill_shift, from request `later_from` on
    later_from: int | None = None  # (0-based request count), e.g. a second pass that differs from the first

    def __post_init__(self):
        self.lp = table(self.seed)

    def reply(self, path: str, body: dict, n: int) -> served.Reply:
        if body.get("model") != self.model:
            return served.Reply([], status=404, error=f"model {body.get('model')!r} not found")
        return answer(self, self.lp, body, n)


def _entry(lp_row: np.ndarray, chosen: int, k: int, shift: float) -> dict[str, dict]:
    order = np.argsort(-lp_row, kind="stable")
    rank = int(np.nonzero(order == chosen)[0][0]) + 1
    out = {str(chosen): {"logprob": float(lp_row[chosen] + shift), "rank": rank, "decoded_token": f"<t{chosen}>"}}
    for r, t in enumerate(order[:k], start=1):
        out[str(int(t))] = {"logprob": float(lp_row[t] + shift), "rank": r, "decoded_token": f"<t{t}>"}
    return out


def answer(script: Script, lp: np.ndarray, body: dict, request_index: int = 0) -> served.Reply:
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
    choice = {"stop_reason": None, "token_ids": ids, "prompt_token_ids": prompt,
              "logprobs": {"text_offset": list(range(len(ids))), "token_logprobs": token_lps, "tokens": tokens,
                           "top_logprobs": tops}}
    if not script.omit_prompt_logprobs:
        choice["prompt_logprobs"] = prompt_lps
    return served.Reply([f"<t{t}>" if i == 0 else f" <t{t}>" for i, t in enumerate(ids)], choice=choice)


class LogprobServer(served.ScriptedServer):
    """`with LogprobServer(script) as s: s.base_url`, on 127.0.0.1, its own thread."""

    def __init__(self, script: Script | None = None):
        super().__init__(script or Script())
