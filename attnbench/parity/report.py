"""What a parity run shows: a terminal table, summary.md and a plot of |Δ logprob| by position.

table(), markdown(), write_summary(), write_plots(): the presentation shape every area shares."""

from __future__ import annotations

from pathlib import Path

from attnbench import atomic, textfmt
from attnbench.parity.metrics import Comparison
from attnbench.records.record import Record

COLUMNS = (  # header, metric key, format spec (textfmt.number)
    ("max |Δlp|", "max_abs_dlogprob", ".4f"),
    ("mean |Δlp|", "mean_abs_dlogprob", ".5f"),
    ("mean KL", "mean_kl", ".2e"),
    ("top-1", "top1_agreement", ".4f"),
    ("top-1 (ties)", "top1_agreement_tie_aware", ".4f"),
    ("top-k overlap", "topk_overlap_mean", ".4f"),
    ("tail mass", "tail_mass_mean", ".4f"),
    ("missed mass", "missed_mass_mean", ".2e"),
    ("greedy prefix mean", "greedy_prefix_mean", ".1f"),
    ("min", "greedy_prefix_min", "d"),
)


def verdict(rec: Record) -> str:
    if rec.status != "ok":
        return "FAILED TO RUN"
    passed = rec.metrics.get("passed")
    return "-" if passed is None else ("pass" if passed else "FAIL")


def rows(records: list[Record], reference: str) -> list[list[str]]:
    """One row per (backend, what it is compared with); the reference backend gets a row too."""
    out = []
    for rec in records:
        against = (("", reference), ("null_", "itself (null)"), ("hf_", "hf-fp32"))
        compared = [(p, a) for p, a in against if rec.metrics.get(p + "max_abs_dlogprob") is not None]
        if rec.status != "ok" or not compared:
            against = "(reference)" if rec.backend == reference and rec.status == "ok" else reference
            out.append([rec.backend, against, *(textfmt.MISSING for _ in COLUMNS), verdict(rec)])
        for prefix, against in compared:
            out.append([rec.backend, against, *(textfmt.number(rec.metrics.get(prefix + k), f) for _, k, f in COLUMNS),
                        verdict(rec)])
    return out


def table(records: list[Record], reference: str, warnings: list[str] = ()) -> str:
    header = ["backend", "vs", *(h for h, _, _ in COLUMNS), "verdict"]
    body = rows(records, reference)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failures = [f"  {rec.backend}: {f}" for rec in records for f in rec.samples.get("threshold_failures", [])]
    failures += [f"  {rec.backend}: {rec.error}" for rec in records if rec.status != "ok"]
    notes = [f"  {w}" for w in warnings]
    return "\n".join(lines + (["", "failures:", *failures] if failures else []) + (["", "warnings:", *notes] if notes else []))


def markdown(records: list[Record], reference: str, warnings: list[str] = ()) -> str:
    scenario = next((r.scenario for r in records), {})
    settings = scenario.get("settings", {})
    rescored = any(r.metrics.get("decode_rescored") for r in records)
    prompts = settings.get("prompts", {})
    header = ["backend", "vs", *(h for h, _, _ in COLUMNS), "verdict"]
    body = rows(records, reference)
    md = [
        "# attnbench parity",
        "",
        f"Model `{scenario.get('model')}`; reference backend `{reference}`"
        + (f"; fp32 transformers reference `{scenario['fp32_reference']}`" if scenario.get("fp32_reference") else "")
        + ".",
        f"{len(scenario.get('prompt_lens', []))} prompts of {scenario.get('prompt_lens')} tokens "
        f"({'natural text from the shipped corpus' if prompts.get('source') == 'text' else 'random token ids'}, "
        f"seed {prompts.get('seed')}), top-{settings.get('top_k')} logprobs, "
        f"{settings.get('max_tokens')} greedy tokens.",
        "",
        "|Δlp|: absolute logprob difference of the actual next token, over teacher-forced prompt positions and "
        + ("every greedy token, the backend's against the reference's teacher-forced logprob of it in the same "
           "context (the reference rescored each continuation)" if rescored else
           "the shared prefix of the greedy continuations") + ". KL: KL(reference || backend) over the union "
        "of both top-k lists. top-1 (ties): top-1 agreement counting near-ties of the reference as agreement. "
        "top-k overlap: share of the reference's top-k in the backend's. tail mass: the backend's probability "
        "outside its top-k (what the top-k metrics cannot see). missed mass: the reference's probability on "
        "its top-k tokens that the backend's top-k lacks. Greedy prefix: identical greedy tokens per prompt.",
        "",
        *textfmt.md_table(header, body),
    ]
    failures = [f"- {rec.backend}: {f}" for rec in records for f in rec.samples.get("threshold_failures", [])]
    failures += [f"- {rec.backend}: failed to run: {rec.error}" for rec in records if rec.status != "ok"]
    if failures:
        md += ["", "## Failures", "", *failures]
    if warnings:
        md += ["", "## Warnings", "", *(f"- {w}" for w in warnings)]
    md += null_section(scenario.get("null"))
    thresholds = scenario.get("thresholds")
    if thresholds:
        md += ["", "Thresholds: " + ", ".join(f"{k} {v}" for k, v in thresholds.items()) + "."]
    md += ["", "![|Δ logprob| by position](parity_dlogprob.png)", ""]
    return "\n".join(md)


def null_section(null: dict | None) -> list[str]:
    """Markdown: what the null pass was and the limit each metric got from it."""
    if not null:
        return []
    md = ["", "## Limits from the null pass", "",
          f"Null: {null['how']}. A backend fails a metric above {null['factor']:g} x the null's spread "
          f"(for an agreement: its disagreement 1 - value), never below {null['floor']:g} of the fixed bf16 limit.",
          ""]
    rows = [[key, textfmt.significant(n["null"]), (">= " if n["kind"] == "min" else "<= ") + textfmt.significant(n["limit"]),
             "floor" if n["from"] == "floor" else f"{null['factor']} x null"] for key, n in null["limits"].items()]
    return md + textfmt.md_table(["metric", "null", "limit", "from"], rows)


def per_position(c: Comparison) -> list[float]:
    """Max over prompts of |Δ logprob| at each position: prompt positions 1.., then the shared
    greedy prefix right after the prompt (a prompt of n tokens has its decode at n, n+1, ...)."""
    width = max((n + len(d) for n, d in zip(c.samples["prompt_len"], c.samples["decode_abs_dlogprob"])), default=0)
    out = [0.0] * width
    for n, pre, dec in zip(c.samples["prompt_len"], c.samples["prefill_abs_dlogprob"], c.samples["decode_abs_dlogprob"]):
        for i, v in enumerate(pre):
            out[i + 1] = max(out[i + 1], v)
        for i, v in enumerate(dec):
            out[n + i] = max(out[n + i], v)
    return out


def plot(comparisons: dict[str, Comparison], path: Path) -> Path | None:
    if not comparisons:
        return None
    from attnbench import figures

    plt = figures.pyplot()

    panels = {}
    for key, c in comparisons.items():
        panels.setdefault(c.reference, []).append((c.backend, c))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
    ordered = sorted(panels.items(), key=lambda kv: kv[0] == "hf-fp32")  # backend reference first
    for ax, (reference, items) in zip(axes[:, 0], ordered):
        for backend, c in items:
            y = [max(v, 1e-7) for v in per_position(c)[1:]]  # position 0 has no context, no logprob
            ax.plot(range(1, len(y) + 1), y, lw=0.7, label=backend)
        ax.set_yscale("log")
        ax.set_ylabel("|Δ logprob| (max over prompts)")
        ax.set_title(f"against {reference}")
        ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("position (prompt, then greedy continuation)")
    fig.tight_layout()
    return figures.save(fig, path, dpi=110)


def write_summary(result_dir: Path, records: list[Record], reference: str, warnings: list[str] = ()) -> Path:
    return atomic.write_text(result_dir / "summary.md", markdown(records, reference, warnings))


def write_plots(result_dir: Path, comparisons: dict[str, Comparison]) -> list[Path]:
    png = plot(comparisons, result_dir / "parity_dlogprob.png")
    return [png] if png else []
