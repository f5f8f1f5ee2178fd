"""GPQA as the reference eval (openai/gpt-oss gpt_oss/evals/gpqa_eval.py) runs it: the same
questions (OpenAI's public simple-evals CSV, read as pandas.read_csv reads it), the same prompt,
the same seeded shuffling of the four options over questions x repeats, the same grading.
Questions can also come from the Hugging Face hub copy (gated), the packaged made-up `mini` set,
or a local CSV/JSONL file with GPQA's columns."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from attnbench.errors import UserError
from attnbench.evals.types import Eval, SamplerResponse, SingleEvalResult, prompt_sha  # noqa: F401 (gpqa.prompt_sha)

# The prompt wording is copied verbatim from the reference so scores are comparable.
QUERY_TEMPLATE = """
{Question}

(A) {A}
(B) {B}
(C) {C}
(D) {D}

Express your final answer as the corresponding option 'A', 'B', 'C', or 'D'.
""".strip()

COLUMNS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
HUB_REPO = "Idavidrein/gpqa"
HUB_VARIANTS = ("diamond", "main", "extended", "experts")
OPENAI_VARIANTS = ("diamond", "main", "extended")
OPENAI_CSV = "https://openaipublic.blob.core.windows.net/simple-evals/gpqa_{variant}.csv"
DATASET_HELP = ("diamond|main|extended (OpenAI's public CSV, as the reference reads), hub:diamond|main|extended|"
                "experts (the Hugging Face copy, needs HF_TOKEN), mini (20 made-up questions), or a local "
                ".csv/.jsonl path")
# what pandas.read_csv reads as missing (its default na_values); the reference then formats the
# missing value into the prompt as "nan"
PANDAS_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                       "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    correct: str
    incorrect: tuple[str, str, str]


@dataclass(frozen=True)
class Sample:
    """One (question, repeat) cell: the options in the order shown and the right letter."""
    question: Question
    repeat: int
    permutation: tuple[int, int, int, int]  # index into (correct, incorrect 1, 2, 3) per letter

    @property
    def id(self) -> str:
        return self.question.id

    @property
    def choices(self) -> list[str]:
        pool = [self.question.correct, *self.question.incorrect]
        return [pool[i] for i in self.permutation]

    @property
    def answer(self) -> str:
        return "ABCD"[self.permutation.index(0)]

    @property
    def prompt(self) -> str:
        a, b, c, d = self.choices
        return QUERY_TEMPLATE.format(Question=self.question.question, A=a, B=b, C=c, D=d)


def make_samples(questions: list[Question], repeats: int, seed: int = 0, limit: int | None = None) -> list[Sample]:
    """The reference's draw sequence: one random.Random(seed); with a limit, first a sample of
    `limit` questions; then one rng.sample(range(4), 4) per cell, repeat-major (all questions of
    repeat 0, then of repeat 1, ...), as `examples * n_repeats` orders them."""
    if repeats < 1:
        raise UserError(f"--repeats must be >= 1 (got {repeats})")
    rng = random.Random(seed)
    if limit is not None:
        if limit < 1:
            raise UserError(f"--limit must be >= 1 (got {limit})")
        questions = rng.sample(questions, min(limit, len(questions)))
    return [Sample(q, r, tuple(rng.sample(range(4), 4))) for r in range(repeats) for q in questions]


# ---- loading ----------------------------------------------------------------------------------

def load(spec: str) -> list[Question]:
    """Questions named by --dataset (see DATASET_HELP)."""
    spec = spec.strip()
    if spec == "mini":
        data = resources.files("attnbench.evals").joinpath("data/mini_mcq.csv").read_bytes()
        return parse_rows(read_csv(data), "mini")
    variant = spec.removeprefix("openai:")
    if variant in OPENAI_VARIANTS:
        return parse_rows(read_csv(_download_cached(OPENAI_CSV.format(variant=variant))), f"gpqa_{variant}.csv")
    if spec.startswith("hub:"):
        variant = spec[4:]
        if variant not in HUB_VARIANTS:
            raise UserError(f"--dataset {spec!r}: the hub has {', '.join('hub:' + v for v in HUB_VARIANTS)}")
        return parse_rows(_hub_rows(variant, os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")),
                          f"{HUB_REPO} gpqa_{variant}")
    path = Path(spec).expanduser()
    if path.suffix.lower() in (".csv", ".jsonl", ".json") or path.exists():
        return load_file(path)
    raise UserError(f"--dataset {spec!r}: not a known dataset nor a file; use {DATASET_HELP}")


def source_of(spec: str) -> str:
    """Where --dataset's questions come from, for the record."""
    variant = spec.strip().removeprefix("openai:")
    return OPENAI_CSV.format(variant=variant) if variant in OPENAI_VARIANTS else spec.strip()


def load_file(path: Path) -> list[Question]:
    if not path.is_file():
        raise UserError(f"--dataset {path}: no such file; pass a CSV/JSONL with GPQA's columns or use --dataset mini")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{n}: not valid JSON ({e.msg}); write one question object per line") from None
        return parse_rows(rows, str(path))
    return parse_rows(read_csv(path.read_bytes()), str(path))


def read_csv(data: bytes) -> list[dict]:
    """Rows as pandas.read_csv (default options) gives them to the reference, for the columns a
    prompt uses: bytes decoded without newline translation (a CRLF inside a quoted field stays
    CRLF), NA-like fields read as missing and formatted as "nan", a column whose values are all
    numbers read as numbers ("1.50" -> "1.5", with a missing value "3" -> "3.0"). A field that is
    empty stays empty here, so that parse_rows can refuse it."""
    text = data.decode("utf-8-sig")
    rows = [r for r in csv.DictReader(io.StringIO(text, newline=""))]
    for column in COLUMNS:
        values = [r.get(column) for r in rows]
        if any(v is None or v == "" for v in values):
            continue  # refused by parse_rows
        present = [v for v in values if v not in PANDAS_NA]
        if present and all(_INT.fullmatch(v) for v in present) and len(present) == len(values):
            typed = [str(int(v)) for v in values]
        elif present and all(_INT.fullmatch(v) or _FLOAT.fullmatch(v) for v in present):
            typed = ["nan" if v in PANDAS_NA else repr(float(v)) for v in values]
        else:
            typed = ["nan" if v in PANDAS_NA else v for v in values]
        for r, v in zip(rows, typed):
            r[column] = v
    return rows


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_rows(rows: list[dict], source: str) -> list[Question]:
    if not rows:
        raise UserError(f"{source}: no questions found")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise UserError(f"{source}: missing column(s) {', '.join(map(repr, missing))}; "
                        f"GPQA files have {', '.join(map(repr, COLUMNS))} (and optionally 'Record ID')")
    out, seen = [], set()
    for n, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise UserError(f"{source}: row {n} is not an object with GPQA's columns")
        values = [str(row.get(c) or "").strip() for c in COLUMNS]
        empty = [c for c, v in zip(COLUMNS, values) if not v]
        if empty:
            raise UserError(f"{source}: row {n} has an empty {empty[0]!r}; fill it or drop the row")
        qid = str(row.get("Record ID") or "").strip() or hashlib.sha1(values[0].encode()).hexdigest()[:12]
        if qid in seen:
            raise UserError(f"{source}: question id {qid!r} appears twice (row {n}); ids must be unique")
        seen.add(qid)
        out.append(Question(qid, row["Question"], row["Correct Answer"],
                            (row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"])))
    return out


def _hub_rows(variant: str, token: str | None) -> list[dict]:
    """GPQA from the hub through `datasets` (the network call tests replace)."""
    fix = (f"accept the terms at https://huggingface.co/datasets/{HUB_REPO} and export HF_TOKEN=<a read token> "
           "(or use --dataset diamond, OpenAI's public CSV, or a local CSV)")
    if not token:
        raise UserError(f"{HUB_REPO} is gated and HF_TOKEN is not set: {fix}")
    try:
        import datasets
    except ImportError:
        raise UserError("loading GPQA from the hub needs `datasets`: pip install 'attnbench[evals]'") from None
    try:
        ds = datasets.load_dataset(HUB_REPO, f"gpqa_{variant}", split="train", token=token)
    except Exception as e:  # datasets raises many types for auth/network problems
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if any(k in msg.lower() for k in ("gated", "401", "403", "unauthorized", "forbidden", "authenticat")):
            raise UserError(f"{HUB_REPO} refused HF_TOKEN ({msg[:120]}): {fix}") from None
        raise UserError(f"could not load {HUB_REPO} gpqa_{variant} ({msg[:160]}); check the network, or {fix}") from None
    return [dict(r) for r in ds]


def _download_cached(url: str) -> bytes:
    """The reference's public CSV, downloaded once into $ATTNBENCH_CACHE/datasets and kept as
    the bytes that came, so a cached run reads exactly what the download read."""
    from attnbench import atomic

    cache = Path(os.environ.get("ATTNBENCH_CACHE", Path.home() / ".cache" / "attnbench")) / "datasets" / url.rsplit("/", 1)[1]
    if cache.is_file():
        return cache.read_bytes()
    data = _fetch(url)
    atomic.write_bytes(cache, data)
    return data


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise UserError(f"{url} answered HTTP {e.code}; check the variant name (diamond, main, extended)") from None
    except OSError as e:
        raise UserError(f"cannot download {url} ({getattr(e, 'reason', e)}); check the network, pass a local CSV "
                        "(--dataset path/to/gpqa_diamond.csv) or put the file in $ATTNBENCH_CACHE/datasets") from None


# ---- the eval ---------------------------------------------------------------------------------

class GPQAEval(Eval):
    """The samples of make_samples, graded by the letter `grader` reads from the final text."""

    name = "gpqa"

    def __init__(self, samples: list[Sample], grader: str = "reference"):
        self.samples = samples
        self.grader = grader

    def grade(self, sample: Sample, response: SamplerResponse) -> SingleEvalResult:
        """Only an answered sample is read; a rejected (HTTP 400) or failed one scores 0, as in
        the reference. The rule that read the letter is kept for reading failures."""
        from attnbench.evals.grader import explain

        value, rule = explain(response.text, self.grader) if response.outcome == "answered" else (None, None)
        return SingleEvalResult(sample, response, float(value == sample.answer),
                                {"answer": sample.answer, "extracted": value, "rule": rule})
