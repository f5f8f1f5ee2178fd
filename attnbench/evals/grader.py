"""Which option letter a response chose: the rules and priorities of OpenAI's gpt-oss GPQA
grader (gpt_oss/evals/abcd_grader.py), re-implemented so our scores match theirs.

Each rule is searched once over the whole text; the answer comes from the first rule (in the
order below) that matches. When none does, only a response that is nothing but one letter
(optionally bold/italic, with a trailing '.', ')', ':' or ']') counts; anything else is an
extraction failure (None). The older reference returned the text's first character there; that
scores the same (a leading A-D is already caught by the line rule), but hides failures.
"""

from __future__ import annotations

import re

_WRAP = r"(?:\*{1,2}|_{1,2})"  # markdown emphasis: * ** _ __
_SEP = r"[:\-–]?"  # optional ':' '-' or en dash after "Answer"
_NOT_WORD_BEFORE = r"(?<![A-Za-z0-9])"
_NOT_WORD_AFTER = r"(?![A-Za-z0-9])"

# (name, pattern); earlier entries win.
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
    # any line starting with a capital letter A-D (optionally emphasised), whatever follows
    ("line-start", re.compile(rf"^\s*{_WRAP}?([ABCD]){_WRAP}?\s*[.)\-–:]?\s*.*$", re.M)),
]

_BARE = re.compile(r"\s*[*_]{0,2}\s*([ABCD])\s*[*_]{0,2}\s*[.):\]]?\s*", re.I)


def extract_abcd(text: str | None) -> str | None:
    """'A'..'D' as the reference grader reads `text`, or None when it states no answer."""
    return explain(text)[0]


def explain(text: str | None) -> tuple[str | None, str | None]:
    """(letter, name of the rule that found it) — the rule helps when reading failures."""
    if not text:
        return None, None
    for name, pattern in RULES:
        m = pattern.search(text)
        if m:
            return m.group(1).upper(), name
    m = _BARE.fullmatch(text)
    return (m.group(1).upper(), "bare-letter") if m else (None, None)
