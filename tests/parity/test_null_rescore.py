"""Rescored continuations, limits from a null pass, top-k overlap and tail mass, natural-text
prompts: against scripted servers on loopback and hand-computed values."""

import math
import subprocess
import sys

import pytest

from attnbench.errors import UserError
from attnbench.parity import run
from attnbench.parity.collect import Settings, rescore, run_parity_requests
from attnbench.parity.metrics import compare, missed_mass, tail_mass, topk_overlap
from attnbench.parity.prompts import PromptSet, corpus
from attnbench.parity.thresholds import Thresholds

from .logprob_server import VOCAB, LogprobServer, Script

SETTINGS = Settings(PromptSet(num_prompts=3, short_len=6, long_len=20, vocab_size=VOCAB, seed=3), top_k=4, max_tokens=5)
PREFILL = 19 + 5 + 26  # prompt positions of prompts of 20, 6 and 27 tokens
DECODE = 3 * 5


def test_rescoring_compares_every_decode_position_not_only_the_common_prefix():
    with LogprobServer() as ref_server, LogprobServer(Script(flip_decode_at=2, decode_shift={3: 0.3})) as b_server:
        ref = run_parity_requests(ref_server.base_url, "tiny", SETTINGS, name="ref")
        b = run_parity_requests(b_server.base_url, "tiny", SETTINGS, name="b")
        before = compare(ref, b).metrics
        n = len(ref_server.requests)
        rescore(b, "ref", ref_server.base_url, "tiny")
        sent = ref_server.requests[n:]
    # without rescoring, decode stops at the flipped token: the shift at step 3 is never seen
    assert before["decode_positions"] == 3 * 2 and before["decode_max_abs_dlogprob"] == 0.0
    assert before["decode_rescored"] == 0
    assert len(sent) == 3 and all(body["max_tokens"] == 1 and body["prompt_logprobs"] == 4 for body in sent)
    assert sorted(body["prompt"] for body in sent) == sorted(r.prompt_token_ids + r.decode.token_ids for r in b.results)
    assert all(r.rescored.token_ids == r.decode.token_ids for r in b.results) and b.rescored_by == "ref"
    m = compare(ref, b).metrics
    # every step compares: the flipped step 2 agrees (the reference rates b's token as b does),
    # step 3 is off by 0.3 in each of the 3 prompts
    assert m["decode_rescored"] == 1 and m["decode_positions"] == DECODE
    assert m["decode_max_abs_dlogprob"] == pytest.approx(0.3)
    assert m["decode_mean_abs_dlogprob"] == pytest.approx(0.3 * 3 / DECODE)
    assert m["greedy_prefix_mean"] == 2.0  # still reported
    assert compare(b, b).metrics["decode_rescored"] == 0  # rescored by "ref", not by b


def test_overlap_tail_and_missed_mass_by_hand():
    ln = math.log
    assert topk_overlap([1, 2, 3, 4], [4, 3, 9, 8]) == 0.5
    assert topk_overlap([1, 2], [1, 2, 3]) == 1.0  # k: the shorter list
    assert tail_mass([ln(0.5), ln(0.3)]) == pytest.approx(0.2)
    assert tail_mass([ln(0.7), ln(0.6)]) == 0.0  # clamped: rounding can push the sum above 1
    assert missed_mass([1, 2, 3], [ln(0.5), ln(0.3), ln(0.1)], [1, 9, 3]) == pytest.approx(0.3)


def test_thresholds_from_a_null_by_hand():
    t = Thresholds()
    null = {"max_abs_dlogprob": 0.1, "mean_abs_dlogprob": 0.001, "mean_kl": 0.0, "top1_agreement_tie_aware": 0.99,
            "topk_overlap_mean": 0.95}
    lim = t.from_null(null)
    assert lim["max_abs_dlogprob"]["limit"] == pytest.approx(0.3) and lim["max_abs_dlogprob"]["from"] == "null"
    assert lim["mean_abs_dlogprob"]["limit"] == pytest.approx(0.005) and lim["mean_abs_dlogprob"]["from"] == "floor"
    assert lim["mean_kl"]["limit"] == pytest.approx(0.25 * 0.005)
    assert lim["top1_agreement_tie_aware"]["limit"] == pytest.approx(1 - 3 * 0.01)  # floor 0.25 x 0.02 is less
    assert lim["topk_overlap_mean"]["limit"] == pytest.approx(1 - 3 * 0.05)
    ok = {"max_abs_dlogprob": 0.29, "mean_abs_dlogprob": 0.004, "mean_kl": 0.001, "top1_agreement_tie_aware": 0.975,
          "topk_overlap_mean": 0.86}
    assert t.failures(ok, null_limits=lim) == []
    bad = {**ok, "max_abs_dlogprob": 0.31, "topk_overlap_mean": 0.84}
    assert t.failures(bad, null_limits=lim) == ["max_abs_dlogprob 0.31 > 0.3 (3 x the null's 0.1)",
                                                "topk_overlap_mean 0.8400 < 0.85 (3 x the null's 0.05)"]
    assert Thresholds(null_factor=5).from_null(null)["max_abs_dlogprob"]["limit"] == pytest.approx(0.5)
    assert "topk_overlap_mean" not in str(t.failures(bad))  # without a null, overlap is not judged


def _run(tmp_path, ref_script, **others):
    with LogprobServer(ref_script) as ref, LogprobServer(others.pop("b", None)) as b, \
            LogprobServer(others.pop("c", None)) as c:
        records = run.run(run.Parity(settings=SETTINGS, result_dir=tmp_path, hf_reference="off",
                                     endpoints={"a": ref.base_url, "b": b.base_url, "c": c.base_url}))
        null_prompts = [body["prompt"] for body in ref.requests[3:6]]
    assert sorted(null_prompts) == sorted(SETTINGS.prompts.prompts())  # the null resends the same prompts
    return {r.backend: r for r in records}


def test_a_null_spread_sets_the_limits(tmp_path):
    # the reference's second pass (requests 3..5) moves prompt position 3 by 0.1 in every prompt
    ref = Script(later_from=3, later_prefill_shift={3: 0.1})
    recs = _run(tmp_path, ref, b=Script(prefill_shift={3: 0.25}), c=Script(prefill_shift={3: 0.35}))
    positions = PREFILL + DECODE
    a = recs["a"]
    assert a.metrics["null_max_abs_dlogprob"] == pytest.approx(0.1)
    assert a.metrics["null_mean_abs_dlogprob"] == pytest.approx(0.3 / positions)
    assert a.metrics["passed"] == 1  # 0.1 is within the bf16 estimates: the reference repeats itself
    limits = a.scenario["null"]["limits"]
    assert limits["max_abs_dlogprob"]["limit"] == pytest.approx(0.3)
    assert limits["mean_abs_dlogprob"]["limit"] == pytest.approx(3 * 0.3 / positions)
    assert recs["b"].metrics["passed"] == 1, recs["b"].samples["threshold_failures"]  # 0.25 <= 3 x 0.1
    assert recs["c"].metrics["passed"] == 0
    assert recs["c"].samples["threshold_failures"] == [
        "vs a: max_abs_dlogprob 0.35 > 0.3 (3 x the null's 0.1)",
        f"vs a: mean_abs_dlogprob {1.05 / positions:.4g} > {0.9 / positions:.4g} (3 x the null's {0.3 / positions:.3g})"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| max_abs_dlogprob | 0.1 | <= 0.3 | 3.0 x null |" in summary and "a collected again" in summary
    # judged again from the collections, the null is found there
    again = {r.backend: r for r in run.rejudge(tmp_path / "collected", tmp_path / "again", None, Thresholds())}
    assert again["c"].samples["threshold_failures"] == recs["c"].samples["threshold_failures"]


def test_a_reference_that_does_not_repeat_itself_fails(tmp_path):
    recs = _run(tmp_path, Script(later_from=3, later_prefill_shift={3: 0.4}))
    assert recs["a"].metrics["passed"] == 0
    assert recs["a"].samples["threshold_failures"][0].startswith("vs itself (a-null): max_abs_dlogprob 0.4 > 0.25")


def _word_tokenizer(folder, size=250):
    """A word-level tokenizer of the corpus' commonest words (ids < VOCAB, the scripted model's)."""
    import collections

    from tokenizers import Tokenizer, models, pre_tokenizers

    words = collections.Counter(w for p in corpus() for w in p.split())
    vocab = {"[UNK]": 0, **{w: i + 1 for i, (w, _) in enumerate(words.most_common(size - 1))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return tok


def test_the_corpus_is_shipped_and_text_prompts_are_exact_lengths_of_it(tmp_path):
    passages = corpus()
    assert 40 <= len(passages) <= 64 and len(set(passages)) == len(passages) and all(len(p) > 100 for p in passages)
    tok = _word_tokenizer(tmp_path / "tok")
    p = PromptSet(num_prompts=4, short_len=6, long_len=900, source="text", tokenizer=str(tmp_path / "tok"))
    prompts = p.prompts()
    assert [len(x) for x in prompts] == p.lengths() == [900, 6, 907, 13]
    assert prompts == PromptSet(**{**p.__dict__}).prompts()
    assert prompts != PromptSet(**{**p.__dict__, "seed": 1}).prompts()
    known = tok.decode([t for t in prompts[0] if t != 0]).split()
    assert len(known) > 500 and all(w in " ".join(passages).split() for w in known[:50])
    with pytest.raises(UserError, match="--prompts text needs the model's tokenizer"):
        PromptSet(source="text")
    with pytest.raises(UserError, match="no tokenizer.json"):
        PromptSet(source="text", tokenizer=str(tmp_path)).prompts()


def test_text_prompts_end_to_end(tmp_path):
    _word_tokenizer(tmp_path / "tok")
    with LogprobServer() as a, LogprobServer() as b:
        p = subprocess.run([sys.executable, "-c", "from attnbench.cli import main; main()", "parity",
                            "--endpoint", f"a={a.base_url}", "--endpoint", f"b={b.base_url}", "--prompts", "text",
                            "--tokenizer", str(tmp_path / "tok"), "--num-prompts", "2", "--short-len", "6",
                            "--long-len", "40", "--top-k", "4", "--max-tokens", "3", "--result-dir", str(tmp_path / "r")],
                           capture_output=True, text=True, timeout=60)
        sent = a.requests[0]["prompt"]
    assert p.returncode == 0, p.stderr
    assert "natural text" in (tmp_path / "r" / "summary.md").read_text()
    assert sent == PromptSet(num_prompts=2, short_len=6, long_len=40, source="text",
                             tokenizer=str(tmp_path / "tok")).prompts()[0]
