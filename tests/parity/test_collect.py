"""Collecting from a scripted vLLM-like server on loopback, and what each kind of difference does
to the metrics."""

import pytest

from attnbench.errors import UserError
from attnbench.parity.collect import Settings, request_body, run_parity_requests
from attnbench.parity.metrics import compare
from attnbench.parity.prompts import PromptSet
from attnbench.parity.thresholds import Thresholds

from .logprob_server import VOCAB, LogprobServer, Script, table

SETTINGS = Settings(PromptSet(num_prompts=3, short_len=6, long_len=20, vocab_size=VOCAB, seed=3), top_k=4, max_tokens=5)


def collect(script=None, name="b"):
    with LogprobServer(script) as server:
        return run_parity_requests(server.base_url, "tiny", SETTINGS, name=name), server.requests


def test_prompts_are_fixed_by_the_seed_and_in_range():
    p = SETTINGS.prompts
    assert p.lengths() == [20, 6, 27]
    assert p.prompts() == p.prompts()
    assert PromptSet(seed=4, vocab_size=VOCAB).prompts() != PromptSet(seed=3, vocab_size=VOCAB).prompts()
    assert all(100 <= t < VOCAB for prompt in p.prompts() for t in prompt)


def test_sends_vllm_parity_requests_and_parses_the_answers():
    got, requests = collect()
    assert len(requests) == 3
    body = requests[0]
    assert body == request_body("tiny", SETTINGS.prompts.prompts()[0], SETTINGS)
    assert body["prompt_logprobs"] == 4 and body["logprobs"] == 4 and body["temperature"] == 0
    assert body["return_tokens_as_token_ids"] is True and body["ignore_eos"] is True
    lp = table()
    r = got.results[0]
    prompt = r.prompt_token_ids
    assert len(r.prefill) == len(prompt) - 1 and len(r.decode) == 5
    # teacher-forced: position p holds the prompt token and its logprob given the previous one
    assert r.prefill.token_ids == prompt[1:]
    assert r.prefill.logprobs[0] == pytest.approx(lp[prompt[0], prompt[1]])
    assert r.prefill.top_ids[0] == sorted(range(VOCAB), key=lambda t: -lp[prompt[0], t])[:4]
    assert r.prefill.top_logprobs[0] == sorted(r.prefill.top_logprobs[0], reverse=True)
    # greedy: each token is the argmax after the previous one
    assert r.decode.token_ids[0] == int(lp[prompt[-1]].argmax())
    assert r.decode.token_ids[1] == int(lp[r.decode.token_ids[0]].argmax())
    assert all(len(t) == 4 for t in r.decode.top_ids)


def test_requests_are_in_flight_together_as_serving_runs_them():
    """64 at once by default (batches > 1, split-KV choices, mixed prefill and decode on the GPU),
    never more: with every answer held for HOLD s, the first 64 arrive before any answer leaves and
    the 65th only after one has."""
    import dataclasses
    import time

    HOLD = 2.0
    arrivals = []

    @dataclasses.dataclass(kw_only=True)
    class Held(Script):
        def reply(self, path, body, n):
            arrivals.append(time.perf_counter())
            return dataclasses.replace(super().reply(path, body, n), delay_s=HOLD)

    settings = dataclasses.replace(SETTINGS, prompts=dataclasses.replace(SETTINGS.prompts, num_prompts=70))
    assert settings.concurrency == 64
    with LogprobServer(Held()) as server:
        got = run_parity_requests(server.base_url, "tiny", settings, name="b")
    assert len(got.results) == 70 and len(arrivals) == 70
    arrivals.sort()
    assert arrivals[63] - arrivals[0] < HOLD / 2  # all 64 in flight together
    assert arrivals[64] - arrivals[0] >= HOLD * 0.9  # the 65th waited for a free slot


def test_identical_server_matches_exactly_and_passes():
    ref, _ = collect(name="ref")
    same, _ = collect(name="same")
    m = compare(ref, same).metrics
    assert m["max_abs_dlogprob"] == 0.0 and m["mean_kl"] == pytest.approx(0.0, abs=1e-12)
    assert m["top1_agreement"] == 1.0 and m["greedy_identical_frac"] == 1.0 and m["greedy_prefix_min"] == 5
    assert Thresholds().failures(m) == []


def test_a_shifted_position_shows_up_as_exactly_that_delta():
    ref, _ = collect(name="ref")
    shifted, _ = collect(Script(prefill_shift={3: 0.3}), name="shifted")
    c = compare(ref, shifted)
    m = c.metrics
    assert m["prefill_max_abs_dlogprob"] == pytest.approx(0.3)
    # one shifted position per prompt (all prompts are longer than 3 tokens)
    assert m["prefill_mean_abs_dlogprob"] == pytest.approx(0.3 * 3 / m["prefill_positions"])
    assert m["decode_max_abs_dlogprob"] == 0.0
    assert m["mean_kl"] == pytest.approx(0.0, abs=1e-12)  # a constant shift leaves the distribution alone
    assert c.samples["prefill_abs_dlogprob"][1][2] == pytest.approx(0.3)  # position 3 is entry 2 (from 1)
    assert [f.split()[0] for f in Thresholds().failures(m)] == ["max_abs_dlogprob"]


def test_a_different_greedy_token_ends_the_common_prefix_there():
    ref, _ = collect(name="ref")
    flipped, _ = collect(Script(flip_decode_at=2), name="flipped")
    c = compare(ref, flipped)
    assert c.samples["greedy_prefix_len"] == [2, 2, 2]
    assert c.metrics["greedy_prefix_mean"] == 2.0 and c.metrics["greedy_identical_frac"] == 0.0
    assert c.metrics["decode_positions"] == 6 and c.metrics["decode_max_abs_dlogprob"] == 0.0
    assert Thresholds().failures(c.metrics) == []
    assert Thresholds(min_greedy_prefix_mean=4).failures(c.metrics) == ["greedy_prefix_mean 2.00 < 4"]


def test_a_server_without_prompt_logprobs_names_the_vllm_feature():
    with pytest.raises(UserError, match="no prompt_logprobs.*vLLM"):
        collect(Script(omit_prompt_logprobs=True))


def test_unreachable_server_is_a_one_line_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="cannot reach"):
        run_parity_requests(f"http://127.0.0.1:{port}", "tiny", SETTINGS, name="gone")


def test_http_errors_carry_the_servers_message():
    with LogprobServer() as server, pytest.raises(UserError, match="HTTP 404.*not found"):
        run_parity_requests(server.base_url, "other-model", SETTINGS)
