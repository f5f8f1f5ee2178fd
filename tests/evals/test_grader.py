"""The default grader awards exactly what the gpt-oss reference grader (gpt_oss/evals/abcd_grader.py
of openai/gpt-oss as at 7b58334; the file is unchanged since its first commit, 243a1b0) awards. `reference_extract` below restates the reference's rules as written there: the same regular
expressions with the same flags (verbose mode included, where '#' starts a comment and blanks are
ignored), every pattern searched, the matches sorted by (priority, match length), and the same
fallback. It is independent of attnbench.evals.grader, which is written differently (ordered rules,
first match wins); the tests check that the two agree on many tricky answers."""

import re

import pytest

from attnbench.evals.grader import explain, extract_abcd, is_letter

_W = r"(?:\*{1,2}|_{1,2})"
_REFERENCE = [
    re.compile(r"""(?ix) (?:\*{1,2}|_{1,2}) Answer[s]? \s*[:\-–]? (?:\*{1,2}|_{1,2}) \s* ([ABCD])\b""", re.X),
    re.compile(r"""(?ix) ^\s* (?:\*{1,2}|_{1,2})? Answer:? (?:\*{1,2}|_{1,2})? \s*:?\s*
                   (?:\*{1,2}|_{1,2})? ([ABCD]) (?:\*{1,2}|_{1,2})? \s*""", re.MULTILINE),
    re.compile(r"(?ix)\bAnswer[s]?\b\s*[:\-–]?\s*\(\s*([ABCD])\s*\)"),
    re.compile(r"(?ix)\bAnswer[s]?\b\s*[:\-–]?\s*([ABCD])\b"),
    re.compile(r"(?ix)\b(?:Option|Choice)\b\s*[:\-–]?\s*([ABCD])\b"),
    re.compile(r"(?x)\\boxed\{[^}]*?([ABCD])[^}]*\}", re.MULTILINE),
    re.compile(r"(?x)\\boxed\{[^}]*?\\textbf\{[^}]*?([ABCD])[^}]*\}[^}]*\}", re.MULTILINE),
    re.compile(r"(?x)\\boxed\{[^}]*?\\text\{[^}]*?([ABCD])[^}]*\}[^}]*\}", re.MULTILINE),
    re.compile(r"(?x)(?<![A-Za-z0-9])[\(\[]\s*([ABCD])\s*[\)\]](?![A-Za-z0-9])"),
    re.compile(r"(?x)(?<![A-Za-z0-9])(?:\*{1,2}|_{1,2})([ABCD])(?:\*{1,2}|_{1,2})(?![A-Za-z0-9])"),
    re.compile(r"(?x)\\textbf\{[^}]*?([ABCD])[^}]*\}"),
    re.compile(r"""(?x) (?<![A-Za-z0-9]) (?:\*{1,2}|_{1,2}) \s*([ABCD])\) [^*_\n]+? (?:\*{1,2}|_{1,2})
                   (?![A-Za-z0-9])"""),
    re.compile(r"""(?x)^\s* (?:\*{1,2}|_{1,2})? ([ABCD]) (?:\*{1,2}|_{1,2})? \s*[\.\)\-–:]? \s*.*$""",
               re.MULTILINE),
]


def reference_extract(text: str) -> str | None:
    matches = []
    for prio, pat in enumerate(_REFERENCE):
        m = pat.search(text)
        if m:
            letter = m.group(1).upper()
            if letter in "ABCD":
                matches.append((prio, m, letter))
    matches.sort(key=lambda t: (t[0], len(t[1].group(0))))
    for _, _, letter in matches:
        return letter
    return text.removeprefix("**")[:1]


def reference_score(text: str, right: str) -> float:
    return 1.0 if reference_extract(text) == right else 0.0


TRICKY = [
    # plain and markdown
    "Answer: C", "answer: c", "ANSWER: D", "Answer:C", "Answer : B", "Answer - A", "Answer – B", "Answers: (D)",
    "**Answer:** C", "**Answer**: C", "*Answer:* b", "__Answer__ D", "_Answers -_ b", "**Answer: C**",
    "**Final Answer:** **B**", "Final answer: **D**", "The final answer is **C**.", "**C**", "*C*", "__D__", "_a_",
    "**D) the last one**", "Best: **D) the last one**", "** C **", "**c**", "* A", "**Answers** – b",
    # several answer lines, priorities against position
    "Answer: A\nAnswer: B", "I first thought (A).\nAnswer: C", "(A) looks plausible, (B) too.\nAnswer: C",
    "Option B is tempting.\nAnswer: D", "Answer: (B)\nAnswer: C", "answer is (B)", "The answer is C",
    "Thus the Answer: (C).", "Final answers - d", "I pick option b.", "Choice: A", "choices: B",
    "Answer: D\nbecause (A) is wrong", "answer: Because it is so", "Answer: Both are wrong",
    # LaTeX
    "So \\boxed{B}.", "$\\boxed{C}$", "\\boxed{\\text{D}}", "\\boxed{\\textbf{A}}", "\\boxed{\\textbf{(B)}}",
    "$\\boxed{\\text{D } 2.08\\times10^{-6}}$", "\\boxed{b}", "\\boxed{x = 4}", "\\boxed{}", "the best is \\textbf{C}",
    "\\textbf{c}", "(A) no. \\boxed{D}", "\\text{Answer: B}", "$$\\boxed{\\mathrm{C}}$$",
    # brackets and line starts
    "Either (A) or [C] -- (A) it is", "[B]", "(b)", "x(C)", "(C)x", "( D )", "B. Paris is the capital",
    "Let me think.\nC) 12", "A", "B.", "C)", "D:", "D -", "A good answer needs care.", "Because of symmetry.",
    "  B", "\n\nD", "\u00a0C", "Consider the options.", "Definitely.", "b", "d)", "  **c**  ", "e", "E",
    # lowercase, other languages, full-width letters
    "the answer is b", "Réponse : C", "Respuesta: B", "Antwort: D", "答案：C", "答案是 C", "Ответ: B", "正解は（Ｂ）",
    "Ａ", "Answer: Ｃ", "**Ｄ**", "Ｂ.", "答案：\\boxed{A}",
    # empty, reasoning only, refusals, option text
    "", " ", "\n", "Let me think step by", "I am not sure about this one.", "I don't know.",
    "No response (bad request).", "The mitochondria is the powerhouse of the cell.",
    "10^-6 m", "It is 2.08 x 10^-6 m", "The correct option is the one with 12 protons.", "***A", "**",
    "**A", "**Answer", "Answer:", "answer", "Option", "option d", "OPTION: c",
    # answers hidden inside words or after long text
    "ABCD", "CAB", "BAD idea", "Dear reader", "An answer of A", "x" * 50 + "\nAnswer: A",
    "Reasoning...\n**Answers** – b", "Step 1: ...\nStep 2: ...\n\n**Answer: B**",
]


@pytest.mark.parametrize("text", TRICKY)
def test_default_grader_is_the_reference(text):
    assert extract_abcd(text) == reference_extract(text)
    for right in "ABCD":
        got = 1.0 if extract_abcd(text) == right else 0.0
        assert got == reference_score(text, right), (text, right)


def test_agrees_on_random_answers():
    """Random strings built from the characters the rules care about."""
    import random

    rng = random.Random(7)
    atoms = ["Answer", "answer", "Answers", "Option", "choice", ":", " ", "\n", "*", "**", "_", "(", ")", "[", "]",
             "A", "B", "C", "D", "a", "c", "\\boxed{", "\\text{", "\\textbf{", "}", "-", "–", ".", "x", "1", "is",
             "Ｂ", "答案"]
    for _ in range(3000):
        text = "".join(rng.choice(atoms) for _ in range(rng.randint(0, 12)))
        assert extract_abcd(text) == reference_extract(text), repr(text)


@pytest.mark.parametrize("text, value, rule", [
    ("**Answer:** C", "C", "wrapped-answer-word"),
    ("Reasoning...\n**Answers** – b", "A", "line-start"),  # the A of "**Answers", as the reference reads it
    ("Answer: D\nbecause (A) is wrong", "D", "answer-line"),
    ("answer: Because it is so", "B", "answer-line"),
    ("Thus the Answer: (C).", "C", "answer-paren"),
    ("Final answers - d", "D", "answer-letter"),
    ("I pick option b.", "B", "option-choice"),
    ("So \\boxed{B}.", "B", "boxed"),
    ("Either (A) or [C] -- (A) it is", "A", "bracketed"),
    ("It must be **B** here", "B", "emphasised"),
    ("the best is \\textbf{C}", "C", "textbf"),
    ("Best: **D) the last one**", "D", "emphasised-option"),
    ("Because of symmetry.", "B", "line-start"),
    # no rule: the first character, case-sensitive, so these score nothing
    ("b", "b", "first-character"),
    ("  **c**  ", " ", "first-character"),
    ("**c**", "c", "first-character"),
    ("Ａ", "Ａ", "first-character"),
    ("", "", "first-character"),
    ("The answer is C", "T", "first-character"),
])
def test_rules_are_named(text, value, rule):
    assert explain(text) == (value, rule)


def test_none_is_read_as_empty():
    assert extract_abcd(None) == "" and not is_letter(extract_abcd(None))


@pytest.mark.parametrize("text, letter", [("b", "B"), ("  **c**  ", "C"), ("d)", "D"), ("* A", "A")])
def test_lenient_grader_adds_bare_letters(text, letter):
    assert explain(text, "lenient") == (letter, "bare-letter")
    assert not is_letter(extract_abcd(text)) or extract_abcd(text) != letter  # the reference does not award it


def test_lenient_grader_keeps_every_reference_match():
    for text in TRICKY:
        if is_letter(reference_extract(text)):
            assert extract_abcd(text, "lenient") == reference_extract(text), text


def test_unknown_grader_is_a_user_error():
    from attnbench.errors import UserError

    with pytest.raises(UserError, match="--grader 'strict'"):
        extract_abcd("A", "strict")
