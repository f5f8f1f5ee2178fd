"""Answer extraction follows the gpt-oss reference's rules and priorities (abcd_grader.py).
Expected letters were checked against the reference implementation."""

import pytest

from attnbench.evals.grader import explain, extract_abcd


@pytest.mark.parametrize("text, letter, rule", [
    ("**Answer:** C", "C", "wrapped-answer-word"),
    # no rule takes "**Answers** – b"; the line rule reads the A of "**Answers" (as the reference does)
    ("Reasoning...\n**Answers** – b", "A", "line-start"),
    ("Answer: D\nbecause (A) is wrong", "D", "answer-line"),
    ("answer: Because it is so", "B", "answer-line"),  # the reference reads the B of "Because"
    ("Thus the Answer: (C).", "C", "answer-paren"),
    ("Final answers - d", "D", "answer-letter"),
    ("I pick option b.", "B", "option-choice"),
    ("So \\boxed{B}.", "B", "boxed"),
    ("$\\boxed{\\text{D } 2.08\\times10^{-6}}$", "D", "boxed"),
    ("Either (A) or [C] -- (A) it is", "A", "bracketed"),
    ("It must be **B** here", "B", "emphasised"),
    ("the best is \\textbf{C}", "C", "textbf"),
    ("Best: **D) the last one**", "D", "emphasised-option"),
    ("B. Paris is the capital", "B", "line-start"),
    ("Let me think.\nC) 12", "C", "line-start"),
    ("b", "B", "bare-letter"),
    ("  **c**  ", "C", "bare-letter"),
    ("d)", "D", "bare-letter"),
])
def test_extracts_like_the_reference(text, letter, rule):
    assert explain(text) == (letter, rule)


@pytest.mark.parametrize("text", ["", None, "I do not know.", "The answer is probably paris", "dunno", "e"])
def test_no_answer_is_none(text):
    assert extract_abcd(text) is None


def test_priority_beats_position():
    # "(A)" comes first in the text, but an explicit "Answer: C" has priority
    assert extract_abcd("(A) looks plausible, (B) too.\nAnswer: C") == "C"
    # a boxed letter outranks a bare bracketed one
    assert extract_abcd("(A) no. \\boxed{D}") == "D"
    # "The answer is C" matches none of the answer rules; the reference finds no letter
    assert extract_abcd("The answer is C") is None
