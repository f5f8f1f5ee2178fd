"""The conversation report shows what was asked, what came back and how it was graded, escaped."""

from attnbench.evals import html


def row(**kw):
    base = {"question_id": "q1", "repeat": 0, "answer": "B", "extracted": "B", "rule": "answer-letter", "score": 1.0,
            "response": "Answer: B", "truncated": False, "error": None}
    return base | kw


def test_sample_sections_and_grading():
    page = html.report("GPQA test", {"accuracy": 0.5}, [row(), row(question_id="q2", extracted=None, rule=None,
                                                                score=0.0, response="<script>x</script>", truncated=True)],
                       {("q1", 0): "What is 1 + 1?\n\n(A) 3\n(B) 2", ("q2", 0): "Q2 & more"})
    assert page.startswith("<!DOCTYPE html>") and "<td>accuracy</td><td>0.5</td>" in page
    assert page.count("<h4>Prompt conversation</h4>") == 2 and page.count("<h4>Sampled message</h4>") == 2
    assert "<p>Correct Answer: B</p>" in page and "<p>Extracted Answer: None</p>" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>" not in page
    assert "Q2 &amp; more" in page and "truncated at the token limit" in page
    assert '<p class="right">Score: 1</p>' in page and '<p class="wrong">Score: 0</p>' in page


def test_failed_request_is_shown_as_such():
    page = html.report("t", {}, [row(error="gave up after 6 attempts: HTTP 500", score=0.0, extracted=None)], {})
    assert "no answer (request failed; scored 0)" in page and "gave up after 6 attempts" in page
    assert "Score: 0 (failed)" in page


def test_rejected_request_is_shown_as_scored_wrong():
    page = html.report("t", {}, [row(rejected="reasoning is not supported", score=0.0, extracted=None)], {})
    assert "no answer (HTTP 400; scored 0, as the reference does)" in page and "reasoning is not supported" in page
    assert "Score: 0 (rejected)" in page
