"""The conversations as one standalone HTML page, laid out like the reference eval's report: a
metrics table, then per sample the prompt, the sampled answer and the grading (correct letter,
extracted letter, score), so a reader can check any score by eye."""

from __future__ import annotations

from html import escape
from typing import Any

from attnbench import textfmt

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }
.msg { padding: .5em 1em; margin: .4em 0; border-radius: 4px; }
.msg.user { background: #dcefe9; color: #0b4f43; }
.msg.assistant { background: #e3dcf2; color: #3d237a; }
.msg.error { background: #f7dede; color: #7a1f1f; }
.role { font-weight: bold; margin-bottom: .3em; }
.wrong { color: #a00; } .right { color: #070; }
table { border-collapse: collapse; } th, td { border: 1px solid #444; padding: .2em .6em; text-align: left; }
pre { white-space: pre-wrap; margin: 0; }
"""


def _message(role: str, content: str, css: str | None = None) -> str:
    return (f'<div class="msg {css or role}"><div class="role">{escape(role)}</div>'
            f"<pre>{escape(content)}</pre></div>")


def sample_html(row: dict[str, Any], prompt: str) -> str:
    """One sample: the prompt conversation, the sampled message, the results."""
    parts = [f"<h3>{escape(str(row['question_id']))} · repeat {row['repeat']}</h3>",
             "<h4>Prompt conversation</h4>", _message("user", prompt), "<h4>Sampled message</h4>"]
    if row.get("error"):
        parts.append(_message("no answer (request failed; scored 0)", row["error"], "error"))
        score = "0 (failed)"
    elif row.get("rejected"):
        parts.append(_message("no answer (HTTP 400; scored 0, as the reference does)", row["rejected"], "error"))
        score = "0 (rejected)"
    else:
        parts.append(_message("assistant", row.get("response") or ""))
        score = f"{row['score']:g}"
    css = "right" if row.get("score") == 1.0 else "wrong"
    notes = []
    if row.get("truncated"):
        notes.append("truncated at the token limit")
    if row.get("rule"):
        notes.append(f"rule: {row['rule']}")
    if row.get("resampled"):
        notes.append(f"asked again {row['resampled']} times for empty content")
    parts += ["<h4>Results</h4>", f"<p>Correct Answer: {escape(row['answer'])}</p>",
              f"<p>Extracted Answer: {escape(str(row.get('extracted')))}</p>",
              f'<p class="{css}">Score: {score}</p>']
    if notes:
        parts.append(f"<p><small>{escape('; '.join(notes))}</small></p>")
    return "\n".join(parts)


def report(title: str, metrics: dict[str, Any], rows: list[dict[str, Any]], prompts: dict[tuple, str]) -> str:
    """`prompts` maps (question_id, repeat) to the prompt text that was sent."""
    table = "\n".join(f"<tr><td>{escape(str(k))}</td><td>{escape(_fmt(v))}</td></tr>" for k, v in metrics.items())
    body = "\n<hr>\n".join(sample_html(r, prompts.get((r["question_id"], r["repeat"]), ""))
                           for r in sorted(rows, key=lambda r: (str(r["question_id"]), r["repeat"])))
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>{escape(title)}</h1>\n<h2>Metrics</h2>\n"
            f"<table><tr><th>Metric</th><th>Value</th></tr>\n{table}\n</table>\n<h2>Examples</h2>\n{body}\n</body></html>\n")


def _fmt(v: Any) -> str:
    return textfmt.significant(v) if isinstance(v, float) else str(v)
