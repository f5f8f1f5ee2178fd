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
        gpqa.load("hub:diamond")


def test_hub_refusal_says_what_to_do(monkeypatch):
    datasets = pytest.importorskip("datasets")  # the evals extra

    def refuse(*a, **k):
        raise PermissionError("403 Forbidden: gated dataset, you must be authenticated")

    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(UserError, match="refused HF_TOKEN.*export HF_TOKEN"):
        gpqa.load("hub:diamond")


def test_hub_rows_are_parsed(monkeypatch):
    rows = [{c: f"{c} {i}" for c in gpqa.COLUMNS} | {"Record ID": f"rec{i}"} for i in range(3)]
    monkeypatch.setattr(gpqa, "_hub_rows", lambda variant, token: rows)
    assert [q.id for q in gpqa.load("hub:diamond")] == ["rec0", "rec1", "rec2"]


TRICKY_CSV = (
    "\ufeffRecord ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3,Extra\r\n"
    'r1,"Line one\r\nline two, with a comma",None,NA,"say ""hi""",n/a,x\r\n'
    "\r\n"
    'r2,Plain?,Ünïcødé ✓,null, NA ,#N/A,\r\n'
    'r3,"Ends with CRLF\r\n",a,b,c,d,\r\n'
).encode()
NUMERIC_CSV = ("Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"
               "n1,Q1,1.50,007,3,x\nn2,Q2,2,1,NA,y\n").encode()


@pytest.mark.parametrize("data", [TRICKY_CSV, NUMERIC_CSV])
def test_csv_rows_are_what_pandas_gives_the_reference(data, tmp_path):
    """The prompt fields as the reference sees them: pandas.read_csv(...).iterrows(), each value
    formatted into the prompt (a missing value formats as 'nan')."""
    pandas = pytest.importorskip("pandas")
    import io

    expected = [{c: f"{row[c]}" for c in gpqa.COLUMNS} for _, row in pandas.read_csv(io.BytesIO(data)).iterrows()]
    path = tmp_path / "q.csv"
    path.write_bytes(data)
    got = [{"Question": q.question, "Correct Answer": q.correct,
            **{f"Incorrect Answer {i + 1}": w for i, w in enumerate(q.incorrect)}} for q in gpqa.load(str(path))]
    assert got == expected
    assert "\r\n" in got[0]["Question"] or data is NUMERIC_CSV


class CSVServer:
    """A loopback HTTP server that serves one CSV file's bytes, counting requests."""

    def __init__(self, data: bytes):
        import http.server
        import threading

        outer = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                self.send_response(200 if self.path.endswith("gpqa_diamond.csv") else 404)
                self.end_headers()
                if self.path.endswith("gpqa_diamond.csv"):
                    self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple-evals/gpqa_{{variant}}.csv"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def test_default_dataset_is_the_reference_csv_and_the_cached_copy_reads_the_same(monkeypatch, tmp_path):
    assert gpqa.OPENAI_CSV == "https://openaipublic.blob.core.windows.net/simple-evals/gpqa_{variant}.csv"
    assert gpqa.source_of("diamond") == gpqa.OPENAI_CSV.format(variant="diamond")
    srv = CSVServer(TRICKY_CSV)
    try:
        monkeypatch.setattr(gpqa, "OPENAI_CSV", srv.url)
        monkeypatch.setenv("ATTNBENCH_CACHE", str(tmp_path))
        downloaded = gpqa.make_samples(gpqa.load("diamond"), repeats=2)
        cached = gpqa.make_samples(gpqa.load("openai:diamond"), repeats=2)
        assert srv.hits == 1
        assert [gpqa.prompt_sha(s.prompt) for s in downloaded] == [gpqa.prompt_sha(s.prompt) for s in cached]
        assert "line one" not in downloaded[0].prompt.lower() or "\r\n" in downloaded[0].prompt
        assert (tmp_path / "datasets" / "gpqa_diamond.csv").read_bytes() == TRICKY_CSV
        with pytest.raises(UserError, match="answered HTTP 404; check the variant"):
            gpqa.load("openai:main")
    finally:
        srv.close()


def test_openai_csv_unreachable(monkeypatch, tmp_path):
    monkeypatch.setattr(gpqa, "OPENAI_CSV", "http://127.0.0.1:9/gpqa_{variant}.csv")
    monkeypatch.setenv("ATTNBENCH_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="cannot download .*pass a local CSV"):
        gpqa.load("main")


def test_hub_variant_must_be_known():
    with pytest.raises(UserError, match="the hub has hub:diamond"):
        gpqa.load("hub:tiny")
