"""Which option letter a response chose.

`reference` (the default) awards exactly what OpenAI's gpt-oss GPQA grader
(gpt_oss/evals/abcd_grader.py) awards: each rule below is searched once over the whole text and
the first rule, in this order, that matches gives the letter. When none matches, the reference
returns the text's first character (after one leading '**'), case-sensitive; that character is
kept as the extracted value, so a response of plain "c" is not C and scores 0.

`lenient` adds one rule after those: a response that is nothing but one letter, any case,
optionally emphasised and followed by '.', ')', ':' or ']' ("c", "**d**", "* A"). Scores made
with it are not the reference's; records say which grader was used.
"""

from __future__ import annotations

import re

GRADERS = ("reference", "lenient")

_WRAP = r"(?:\*{1,2}|_{1,2})"  # markdown emphasis: * ** _ __
_SEP = r"[:\-–]?"  # optional ':' '-' or en dash after "Answer"
_NOT_WORD_BEFORE = r"(?<![A-Za-z0-9])"
_NOT_WORD_AFTER = r"(?![A-Za-z0-9])"

# (name, pattern); earlier entries win. Only the "answer"/"option" rules ignore case.
RULES: list[tuple[str, re.Pattern[str]]] = [
    # "**Answer:** C", "_Answers -_ b": the word wrapped in markdown, the letter after it
    ("wrapped-answer-word", re.compile(rf"{_WRAP}answers?\s*{_SEP}{_WRAP}\s*([ABCD])\b", re.I)),
    # a line starting "Answer: C" / "**Answer** **C**" (no end anchor: "Answer: Because" reads B)
    ("answer-line", re.compile(rf"^\s*{_WRAP}?answer:?{_WRAP}?\s*:?\s*{_WRAP}?([ABCD]){_WRAP}?\s*", re.I | re.M)),
    # "Answer: (C)"
    ("answer-paren", re.compile(rf"\banswers?\b\s*{_SEP}\s*\(\s*([ABCD])\s*\)", re.I)),
    # "Answer: C", "answers - d"
    ("answer-letter", re.compile(rf"\banswers?\b\s*{_SEP}\s*([ABCD])\b", re.I)),
    # "Option B", "choice: c"
    ("option-choice", re.compile(rf"\b(?:option|choice)\b\s*{_SEP}\s*([ABCD])\b", re.I)),
    # LaTeX \boxed{...C...}: the first capital A-D inside the braces
    ("boxed", re.compile(r"\\boxed\{[^}]*?([ABCD])[^}]*\}")),
    ("boxed-textbf", re.compile(r"\\boxed\{[^}]*?\\textbf\{[^}]*?([ABCD])[^}]*\}[^}]*\}")),
    ("boxed-text", re.compile(r"\\boxed\{[^}]*?\\text\{[^}]*?([ABCD])[^}]*\}[^}]*\}")),
    # a lone "(B)" or "[B]"
    ("bracketed", re.compile(rf"{_NOT_WORD_BEFORE}[(\[]\s*([ABCD])\s*[)\]]{_NOT_WORD_AFTER}")),
    # "*A*", "**B**", "_C_", "__D__"
    ("emphasised", re.compile(rf"{_NOT_WORD_BEFORE}{_WRAP}([ABCD]){_WRAP}{_NOT_WORD_AFTER}")),
    # LaTeX \textbf{...C...}
    ("textbf", re.compile(r"\\textbf\{[^}]*?([ABCD])[^}]*\}")),
    # "**D) some text**"
    ("emphasised-option", re.compile(rf"{_NOT_WORD_BEFORE}{_WRAP}\s*([ABCD])\)[^*_\n]+?{_WRAP}{_NOT_WORD_AFTER}")),
    # any line starting with a capital letter A-D (optionally emphasised), whatever follows:
    # "Because ..." reads B, as in the reference
    ("line-start", re.compile(rf"^\s*{_WRAP}?([ABCD]){_WRAP}?\s*[.)\-–:]?\s*.*$", re.M)),
]

_BARE = re.compile(r"\s*[*_]{0,2}\s*([ABCD])\s*[*_]{0,2}\s*[.):\]]?\s*", re.I)


def extract_abcd(text: str | None, grader: str = "reference") -> str:
    """What the grader reads from `text`: 'A'..'D', or (no rule matched) the reference's
    fallback, the first character, which scores only if it equals the right letter."""
    return explain(text, grader)[0]


def explain(text: str | None, grader: str = "reference") -> tuple[str, str]:
    """(extracted value, name of the rule that produced it): the rule helps when reading failures."""
    if grader not in GRADERS:
        from attnbench.errors import UserError

        raise UserError(f"--grader {grader!r}: use reference (as gpt-oss scores) or lenient")
    text = text or ""
    for name, pattern in RULES:
        m = pattern.search(text)
        if m:
            return m.group(1).upper(), name
    if grader == "lenient":
        m = _BARE.fullmatch(text)
        if m:
            return m.group(1).upper(), "bare-letter"
    return text.removeprefix("**")[:1], "first-character"


def is_letter(value: str | None) -> bool:
    """Whether an extracted value names an option (anything else is an extraction failure)."""
    return value in ("A", "B", "C", "D")
