"""GPQA as the reference eval (openai/gpt-oss gpt_oss/evals/gpqa_eval.py) runs it: the same
prompt, the same seeded shuffling of the four options over questions x repeats, the same
grading. Questions come from the Hugging Face hub (gated), the public CSV the reference reads,
the packaged made-up `mini` set, or a local CSV/JSONL file with GPQA's columns."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from attnbench.errors import UserError

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
OPENAI_CSV = "https://openaipublic.blob.core.windows.net/simple-evals/gpqa_{variant}.csv"
DATASET_HELP = ("diamond|main|extended|experts (Hugging Face hub, needs HF_TOKEN), openai:diamond (the "
                "reference's public CSV), mini (20 made-up questions), or a local .csv/.jsonl path")


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
        text = resources.files("attnbench.evals").joinpath("data/mini_mcq.csv").read_text(encoding="utf-8")
        return parse_rows(list(csv.DictReader(io.StringIO(text))), "mini")
    if spec in HUB_VARIANTS:
        return parse_rows(_hub_rows(spec, os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")),
                          f"{HUB_REPO} gpqa_{spec}")
    if spec.startswith("openai:"):
        variant = spec.split(":", 1)[1] or "diamond"
        return parse_rows(_read_csv_text(_download_cached(OPENAI_CSV.format(variant=variant))), spec)
    path = Path(spec).expanduser()
    if path.suffix.lower() in (".csv", ".jsonl", ".json") or path.exists():
        return load_file(path)
    raise UserError(f"--dataset {spec!r}: not a known dataset nor a file; use {DATASET_HELP}")


def load_file(path: Path) -> list[Question]:
    if not path.is_file():
        raise UserError(f"--dataset {path}: no such file; pass a CSV/JSONL with GPQA's columns or use --dataset mini")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{n}: not valid JSON ({e.msg}); write one question object per line") from None
        return parse_rows(rows, str(path))
    return parse_rows(_read_csv_text(text), str(path))


def _read_csv_text(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


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
           "(or use --dataset openai:diamond, or a local CSV)")
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


def _download_cached(url: str) -> str:
    """The reference's public CSV, downloaded once into $ATTNBENCH_CACHE/datasets."""
    from attnbench import atomic

    cache = Path(os.environ.get("ATTNBENCH_CACHE", Path.home() / ".cache" / "attnbench")) / "datasets" / url.rsplit("/", 1)[1]
    if cache.is_file():
        return cache.read_text(encoding="utf-8")
    text = _fetch(url)
    atomic.write_text(cache, text)
    return text


def _fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read().decode("utf-8-sig")
    except urllib.error.HTTPError as e:
        raise UserError(f"{url} answered HTTP {e.code}; check the variant name (diamond, main, extended)") from None
    except OSError as e:
        raise UserError(f"cannot download {url} ({getattr(e, 'reason', e)}); check the network or pass a local CSV") from None


# ---- the eval ---------------------------------------------------------------------------------

def prompt_sha(prompt: str) -> str:
    return hashlib.sha1(prompt.encode()).hexdigest()[:16]


class GPQAEval:
    """Asks each sample once through a Sampler, at most `concurrency` at a time, and grades the
    final text; every finished row goes to `on_row` at once (the cache appends it)."""

    def __init__(self, samples: list[Sample]):
        self.samples = samples

    @staticmethod
    def grade(sample: Sample, reply, base: dict) -> dict:
        from attnbench.evals.grader import explain

        letter, rule = explain(reply.text) if reply.error is None else (None, None)
        return {
            **base, "question_id": sample.question.id, "repeat": sample.repeat,
            "prompt_sha": prompt_sha(sample.prompt), "answer": sample.answer, "extracted": letter, "rule": rule,
            "score": None if reply.error else float(letter == sample.answer), "response": reply.text,
            "finish": reply.finish, "truncated": reply.truncated, "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens, "attempts": reply.attempts,
            "latency_s": round(reply.latency_s, 3), "effort_sent": reply.effort_sent, "error": reply.error,
        }

    async def run(self, sampler, todo: list[Sample], base: dict, on_row, concurrency: int = 64) -> None:
        import asyncio

        import aiohttp

        queue: asyncio.Queue[Sample] = asyncio.Queue()
        for s in todo:
            queue.put_nowait(s)

        async def worker(session):
            while True:
                try:
                    sample = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                reply = await sampler(session, sample.prompt)
                on_row(sample, self.grade(sample, reply, base))

        conn = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=conn) as session:
            await asyncio.gather(*(worker(session) for _ in range(min(concurrency, len(todo)) or 1)))
