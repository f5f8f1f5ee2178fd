"""Across backends: paired comparisons, summary.md, comparison.json and the score plot, from
the records of this run plus comparable ones that earlier runs left in the same result dir.

table(), markdown(), write_summary(), write_plots(): the presentation shape every area shares (no
terminal table here: the CLI prints one score line per backend)."""

from __future__ import annotations

from pathlib import Path

from attnbench import atomic, stats, textfmt
from attnbench.records.record import Record

PLOT = "gpqa_scores.png"
# settings that must agree for two records to be compared
COMPARABLE = ("dataset", "effort", "api", "grader", "repeats", "limit", "seed", "max_tokens", "temperature")


def cells_of(record: Record) -> dict[tuple, float]:
    """Every sample's score, a rejected or failed one as 0 (the headline's cells)."""
    return {(r["question_id"], r["repeat"]): r["score"] for r in record.samples.get("rows", [])
            if r.get("score") is not None}


def comparisons(records: list[Record], seed: int = 0) -> list[stats.PairedDiff]:
    """Each backend against the first one that has results (paired over common cells)."""
    ok = [r for r in records if cells_of(r)]
    if len(ok) < 2:
        return []
    base = ok[0]
    return [stats.paired_difference(cells_of(base), cells_of(r), base.backend, r.backend, seed) for r in ok[1:]]


def markdown(cfg, records: list[Record], diffs: list[stats.PairedDiff]) -> str:
    first = records[0]
    sc = first.scenario
    lines = [f"# GPQA: {sc.get('model')} · dataset {cfg.dataset} · effort {cfg.effort} · api {cfg.api}", "",
             f"{first.metrics.get('n_questions')} questions x {cfg.repeats} repeats, temperature {cfg.temperature:g}, "
             f"max tokens {cfg.max_tokens}, seed {cfg.seed}, grader {cfg.grader}"
             + (" (not the reference's: bare lowercase letters also count)" if cfg.grader == "lenient" else "")
             + ". The score counts every sample, a request refused (HTTP 400) or failed as wrong, as the reference "
             "does; the answered-only score leaves those out. ± SE is clustered by question and the 95% CI a "
             "bootstrap over questions (other questions from the same population); ± repeats is the spread over "
             "fresh answers to these same questions, what a reproduction of a published figure is held to.", ""]
    rows = []
    for r in records:
        m = r.metrics
        if r.status == "ok" or m.get("n_samples"):
            ci = f"[{100 * m['ci_low']:.1f}, {100 * m['ci_high']:.1f}]" if m.get("ci_low") is not None else textfmt.MISSING
            rows.append([r.backend, r.status, textfmt.points(m.get("score_pct")), textfmt.points(m.get("stderr_pct")), ci,
                         textfmt.points(m.get("stderr_repeat_pct")), textfmt.points(m.get("score_answered_pct")),
                         f"{m.get('n_samples')}/{m.get('n_expected')}", m.get("n_answered"), m.get("rejected_requests"),
                         m.get("failed_requests"), m.get("extraction_failures"), m.get("truncations"),
                         textfmt.number(m.get("mean_completion_tokens"), ".0f")])
        else:
            rows.append([r.backend, "failed", *[textfmt.MISSING] * 12])
    lines += textfmt.md_table(["backend", "status", "score %", "± SE", "95% CI", "± repeats", "answered-only %", "samples",
                               "answered", "HTTP 400", "failed", "extraction failures", "truncations",
                               "mean completion tokens"], rows, align="llrrlrrrrrrrrr")
    notes = [f"- **{r.backend}**: {r.error}" for r in records if r.error]
    for r in records:
        m = r.metrics
        if not r.error and m.get("failed_requests"):
            notes.append(f"- **{r.backend}**: {m['failed_requests']} of {m['n_expected']} samples got no answer within "
                         "the retry time; they count as wrong in the score and are asked again by a re-run")
        if m.get("samples_without_effort"):
            notes.append(f"- **{r.backend}**: {m['samples_without_effort']} of {m['n_expected']} samples went without "
                         f"reasoning effort {cfg.effort!r} (the server answered HTTP 400; scored wrong, as the "
                         "reference does). For a server without reasoning use --effort none.")
        if m.get("empty_resamples"):
            notes.append(f"- **{r.backend}**: {m['empty_resamples']} answers with empty content were asked again")
        sent = r.scenario.get("max_tokens_sent")
        if sent and sent != r.scenario.get("max_tokens"):
            notes.append(f"- **{r.backend}**: max tokens capped to {sent} by the server's max model length")
    if notes:
        lines += ["", *notes]
    per_repeat = [[r.backend, *([f"{100 * v:.1f}" for v in r.samples.get("per_repeat", [])] or [""])] for r in records]
    lines += ["", "## Per-repeat scores (%)", "",
              *textfmt.md_table(["backend", *(f"r{i}" for i in range(cfg.repeats))], per_repeat, "l" + "r" * cfg.repeats)]
    if diffs:
        lines += ["", "## Paired differences", "",
                  "Over the samples both scored; interval, p and verdict from one bootstrap over questions.", "",
                  *[f"- {d.verdict()}" for d in diffs], ""]
        rows = [[f"{d.name_b} vs {d.name_a}", textfmt.number(100 * d.diff, "+.2f"), textfmt.number(100 * d.stderr, ".2f"),
                 f"[{100 * d.ci_low:+.2f}, {100 * d.ci_high:+.2f}]", textfmt.significant(d.p_value, 3), d.n_cells,
                 d.n_questions] for d in diffs]
        lines += textfmt.md_table(["pair", "diff (pts)", "± SE", "95% CI", "bootstrap p", "common samples", "questions"],
                                  rows, align="lrrlrrr")
    with_q = [r for r in records if r.samples.get("per_question")]
    if with_q:
        ids = sorted({q for r in with_q for q in r.samples["per_question"]})
        rows = [[q, *(textfmt.number(r.samples["per_question"].get(q), ".2f") for r in with_q)] for q in ids]
        lines += ["", "## Correct rate per question", "",
                  *textfmt.md_table(["question", *(r.backend for r in with_q)], rows, align="l" + "r" * len(with_q))]
    if (cfg.result_dir / PLOT).exists():
        lines += ["", f"![score per backend]({PLOT})"]
    return "\n".join(lines) + "\n"


def plot(cfg, records: list[Record]) -> Path | None:
    """Score with its 95% CI per backend (matplotlib, Agg)."""
    ok = [r for r in records if r.metrics.get("n_samples")]
    if not ok:
        return None
    from attnbench import figures

    plt = figures.pyplot()

    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(ok), 3.6))
    xs = range(len(ok))
    ys = [r.metrics["score_pct"] for r in ok]
    lo = [max(0.0, y - 100 * r.metrics["ci_low"]) for y, r in zip(ys, ok)]
    hi = [max(0.0, 100 * r.metrics["ci_high"] - y) for y, r in zip(ys, ok)]
    ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=6, color="#3d237a")
    for x, y in zip(xs, ys):
        ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(8, 0), va="center", fontsize=8)
    ax.set_xticks(list(xs), [r.backend for r in ok])
    ax.set_xlim(-0.6, len(ok) - 0.4)
    ax.set_ylabel("GPQA score (%), 95% CI")
    ax.set_title(f"{ok[0].scenario.get('model')} · effort {cfg.effort}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return figures.save(fig, cfg.result_dir / PLOT, dpi=120)


def with_earlier_runs(cfg, records: list[Record]) -> list[Record]:
    """This run's records plus those earlier runs left in the same result dir with the same
    settings (e.g. two --endpoint runs, --name fa3 and --name fa4), earlier ones first."""
    from attnbench.records.record import load

    mine = {r.backend for r in records}
    key = {k: records[0].scenario.get(k) for k in COMPARABLE} if records else {}
    earlier = []
    for path in sorted(cfg.result_dir.glob("*/gpqa.json")):
        found = load(path, on_bad="skip")  # a foreign or torn file is not ours to judge here
        if len(found) != 1:
            continue
        rec = found[0]
        if rec.kind == "gpqa" and rec.backend not in mine and {k: rec.scenario.get(k) for k in COMPARABLE} == key:
            earlier.append(rec)
    return earlier + list(records)


def write_comparison(cfg, diffs: list[stats.PairedDiff]) -> Path:
    """comparison.json: the paired comparisons as data, for scripts."""
    return atomic.write_json(cfg.result_dir / "comparison.json", [
        {"a": d.name_a, "b": d.name_b, "diff": d.diff, "diff_pts": 100 * d.diff, "stderr": d.stderr,
         "ci_low": d.ci_low, "ci_high": d.ci_high, "p_value": d.p_value, "n_cells": d.n_cells,
         "n_questions": d.n_questions, "verdict": d.verdict()} for d in diffs])


def write_plots(cfg, records: list[Record]) -> list[Path]:
    png = plot(cfg, records)
    return [png] if png else []


def write_summary(cfg, records: list[Record], diffs: list[stats.PairedDiff]) -> Path:
    return atomic.write_text(cfg.result_dir / "summary.md", markdown(cfg, records, diffs))
