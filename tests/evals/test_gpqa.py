"""GPQA prompts and option shuffling are the reference's; datasets load or fail with one line."""

import hashlib
import json
import random
from pathlib import Path

import pytest

from attnbench.errors import UserError
from attnbench.evals import gpqa

FIXTURE = Path(__file__).parent / "fixtures" / "mini_gpqa.csv"


def test_prompt_text_is_the_reference_template():
    qs = gpqa.load(str(FIXTURE))
    s = gpqa.make_samples(qs, repeats=8, seed=0)[0]
    assert s.prompt == (
        "What is 7 + 5?\n\n(A) 14\n(B) 11\n(C) 12\n(D) 13\n\n"
        "Express your final answer as the corresponding option 'A', 'B', 'C', or 'D'."
    )
    assert s.answer == "C"


def test_fixture_prompts_match_the_reference_run():
    """Values recorded by running the reference eval (gpt-oss 0.0.9, GPQAEval(n_repeats=8)) on this
    fixture: the correct letter of all 160 samples in order, and a digest of every prompt."""
    samples = gpqa.make_samples(gpqa.load(str(FIXTURE)), repeats=8, seed=0)
    assert "".join(s.answer for s in samples) == (
        "CDCBCCCDACADADCBCBAABDCBBDAAAACCCACBDCBA" "ADAADCDABDDCDABADAACCCDCACDBADCBCABDACAA"
        "DAADCACABBBCBDCAADABADCADCACDBDACCCBDBAA" "CADAAAAAADDBAABACBDADCBBBCADDBCBBBBBBDBD")
    digest = hashlib.sha256("\x00".join(s.prompt for s in samples).encode()).hexdigest()
    assert digest == "11c8a4f47101adb732ab7900f0eded2a0651d933f769ff9fe055ffca8c094e77"


def test_shuffling_is_the_reference_draw_sequence():
    qs = gpqa.load(str(FIXTURE))
    samples = gpqa.make_samples(qs, repeats=3, seed=0)
    # the reference: rng = Random(0); examples * n_repeats; one rng.sample(range(4), 4) each
    rng = random.Random(0)
    expected = [tuple(rng.sample(range(4), 4)) for _ in range(3 * len(qs))]
    assert [s.permutation for s in samples] == expected
    assert [(s.question.id, s.repeat) for s in samples[:2]] == [("mini01", 0), ("mini02", 0)]
    assert samples[len(qs)].repeat == 1 and samples[len(qs)].question.id == "mini01"
    for s in samples:  # the correct text sits at the answer letter
        assert s.choices["ABCD".index(s.answer)] == s.question.correct


def test_limit_samples_questions_first_like_the_reference():
    qs = gpqa.load(str(FIXTURE))
    samples = gpqa.make_samples(qs, repeats=1, seed=0, limit=5)
    rng = random.Random(0)
    picked = rng.sample(qs, 5)
    assert [s.question.id for s in samples] == [q.id for q in picked]
    assert [s.permutation for s in samples] == [tuple(rng.sample(range(4), 4)) for _ in range(5)]


def test_packaged_mini_set_equals_the_fixture():
    assert gpqa.load("mini") == gpqa.load(str(FIXTURE))
    assert len(gpqa.load("mini")) == 20


def test_jsonl_and_missing_record_id(tmp_path):
    p = tmp_path / "q.jsonl"
    row = {c: f"{c} text" for c in gpqa.COLUMNS}
    p.write_text(json.dumps(row) + "\n\n")
    (q,) = gpqa.load(str(p))
    assert q.correct == "Correct Answer text" and len(q.id) == 12


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        gpqa.load(str(tmp_path / "nope.csv"))


def test_malformed_columns(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("Question,Answer\nWhat?,Yes\n")
    with pytest.raises(UserError, match="missing column.*'Correct Answer'"):
        gpqa.load(str(p))
    p.write_text(",".join(gpqa.COLUMNS) + "\nQ,right,,w2,w3\n")
    with pytest.raises(UserError, match="row 1 has an empty 'Incorrect Answer 1'"):
        gpqa.load(str(p))


def test_bad_jsonl_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text("{not json}\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: not valid JSON"):
        gpqa.load(str(p))


def test_unknown_dataset_name():
    with pytest.raises(UserError, match="not a known dataset"):
        gpqa.load("gpqa-diamondz")


def test_hub_without_token_says_what_to_do(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(UserError, match="gated and HF_TOKEN is not set: accept the terms at https://huggingface.co/datasets/Idavidrein/gpqa"):
        gpqa.load("diamond")


def test_hub_refusal_says_what_to_do(monkeypatch):
    datasets = pytest.importorskip("datasets")  # the evals extra

    def refuse(*a, **k):
        raise PermissionError("403 Forbidden: gated dataset, you must be authenticated")

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(UserError, match="refused HF_TOKEN.*export HF_TOKEN"):
        gpqa.load("diamond")


def test_hub_rows_are_parsed(monkeypatch):
    rows = [{c: f"{c} {i}" for c in gpqa.COLUMNS} | {"Record ID": f"rec{i}"} for i in range(3)]
    monkeypatch.setattr(gpqa, "_hub_rows", lambda variant, token: rows)
    assert [q.id for q in gpqa.load("diamond")] == ["rec0", "rec1", "rec2"]


def test_openai_csv_is_downloaded_once(monkeypatch):
    calls = []

    def fetch(url):
        calls.append(url)
        return FIXTURE.read_text()

    monkeypatch.setattr(gpqa, "_fetch", fetch)
    assert len(gpqa.load("openai:diamond")) == 20
    assert len(gpqa.load("openai:diamond")) == 20
    assert calls == ["https://openaipublic.blob.core.windows.net/simple-evals/gpqa_diamond.csv"]


def test_openai_csv_unreachable(monkeypatch):
    def fail(url):
        raise UserError(f"cannot download {url} (offline); check the network or pass a local CSV")

    monkeypatch.setattr(gpqa, "_fetch", fail)
    with pytest.raises(UserError, match="cannot download"):
        gpqa.load("openai:main")
