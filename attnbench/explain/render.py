"""explain's output: the terminal table, summary.md and the stacked bar plot (attention vs rest).

table(), markdown(), write_summary(), write_plots(): the presentation shape every area shares."""

from __future__ import annotations

from pathlib import Path

from attnbench import atomic, textfmt
from attnbench.explain.estimate import Gap
from attnbench.explain.run import ShapeResult

REST = "scheduling, sampling, graph launch, python overhead, non-attention layers"
HEADER = ("backend", "kernel", "TPOT mean", "TPOT med", "attn est", "attn share", "rest", "batch", "ctx", "coverage")


def _ms(v: float | None) -> str:
    """Milliseconds per step, to 10 µs."""
    return textfmt.number(v, ".2f")


def _explained(g) -> str:
    return "within noise" if g.within_noise else textfmt.share(g.explained)


def _tpot(e) -> str:
    """The measured TPOT, its CI over repeats, and whose it is (e: engine-side, from /metrics)."""
    cell = _ms(e.tpot_mean_ms) + ("" if e.tpot_half_pct is None else " " + textfmt.plus_minus_pct(e.tpot_half_pct))
    return cell + (" (e)" if e.tpot_source == "engine" else "")


def rows(res: ShapeResult) -> list[list[str]]:
    return [[e.backend, e.kernel, _tpot(e), _ms(e.tpot_median_ms), _ms(e.attn_ms), textfmt.share(e.share),
             _ms(e.rest_ms), f"{e.mix.mean_batch:.0f}", f"{e.mix.mean_context:.0f}", textfmt.share(e.mix.coverage)]
            for e in res.estimates]


def gap_line(g: Gap) -> str:
    line = (f"{g.slower} vs {g.faster}: TPOT +{g.tpot_gap_ms:.2f} ms; attention {g.attn_gap_ms:+.2f} ms "
            f"({_explained(g)}{'' if g.within_noise else ' of the gap'}); rest {g.rest_ms:+.2f} ms")
    if g.kernel_gap_ms is not None:
        line += f" | attention = kernel {g.kernel_gap_ms:+.2f} ms (same batches) + load {g.load_gap_ms:+.2f} ms"
    return line


def _title(res: ShapeResult) -> str:
    layers = {e.model.layers for e in res.estimates}
    per = f", x{layers.pop()} layers" if len(layers) == 1 else ""
    passes = max((e.tpot_passes for e in res.estimates), default=1)
    over = f", mean of {passes} passes ± 95% CI" if passes > 1 else ""
    engine = "; (e): the engine's own TPOT from vLLM's /metrics" if any(e.tpot_source == "engine" for e in res.estimates) else ""
    return f"{res.shape.label}: estimated attention per decode step{per} vs measured TPOT (ms{over}{engine})"


def table(results: list[ShapeResult]) -> str:
    out = []
    for res in results:
        lines = [list(HEADER), *rows(res)]
        widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
        out.append(f"== {_title(res)} ==")
        out += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
                for line in lines]
        out += [gap_line(g) for g in res.gaps]
        out += [f"note: {n}" for n in res.notes]
        out.append("")
    return "\n".join(out).rstrip() + "\n" if out else "(nothing to explain)\n"


def markdown(results: list[ShapeResult], plots: dict | None = None) -> str:
    out = ["# attnbench explain", "",
           "How much of each backend's decode step (measured mean TPOT) the attention kernels account for. "
           "The run's in-flight samples give the decode batches the server ran (batch size, context lengths); "
           "the most frequent compositions are timed in microbench with the served model's head layout, "
           "page size and dtype, weighted by how many token-steps each stood for, and multiplied by the number "
           "of layers. `rest` is everything else in a step: " + REST + ".", ""]
    for res in results:
        out += [f"## {_title(res)}", "", *textfmt.md_table(HEADER, rows(res), align="ll" + "r" * (len(HEADER) - 2)), ""]
        if res.gaps:
            split = any(g.kernel_gap_ms is not None for g in res.gaps)
            head = ["slower vs faster", "TPOT gap", "attention gap", "explained", "rest"]
            head += ["of which kernel (same batches)", "of which load"] if split else []
            gaps = []
            for g in res.gaps:
                cells = [f"{g.slower} vs {g.faster}", _ms(g.tpot_gap_ms), textfmt.number(g.attn_gap_ms, "+.2f"),
                         _explained(g), textfmt.number(g.rest_ms, "+.2f")]
                if split:
                    cells += [textfmt.number(g.kernel_gap_ms, "+.2f"), textfmt.number(g.load_gap_ms, "+.2f")]
                gaps.append(cells)
            out += textfmt.md_table(head, gaps, align="l" + "r" * (len(head) - 1))
            out += ["", "TPOT gap = attention gap + rest; each backend's attention is estimated on its own run's "
                    "batches" + (", and attention gap = kernel (both kernels on the faster run's batches) + load "
                                 "(the slower run's other batches)." if split else "."), ""]
        if plots and res.shape in plots:
            out += [f"![attention vs rest of a step]({plots[res.shape]})", ""]
        for e in res.estimates:
            mix = e.mix
            out += [f"### {e.backend}: decode batch compositions (kernel {e.kernel})", "",
                    f"{mix.decode_samples} of {mix.samples} in-flight samples decoding (source: {mix.source}, "
                    f"every {mix.interval_s} s); kept {len(mix.compositions)} compositions covering "
                    f"{textfmt.share(mix.coverage)} of the token-steps. {textfmt.share(mix.mixed_share)} of decode token-steps had "
                    f"prompts waiting for prefill (mean {mix.mean_waiting_prefill:.1f}); prefill attention is not "
                    "in the estimate, its interference is part of `rest`.", "",
                    *textfmt.md_table(["composition", "weight", "kernel us/layer", "ms/step"],
                                      [[c.label(), f"{c.weight:.3f}", f"{t:.1f}", f"{t * e.model.layers / 1000:.3f}"]
                                       for c, t in zip(mix.compositions, e.layer_us)], align="lrrr")]
            out.append("")
        if res.notes:
            out += [f"- {n}" for n in res.notes] + [""]
    return "\n".join(out).rstrip() + "\n"


def plot(res: ShapeResult, path: Path, device: str = "") -> Path | None:
    """Stacked bars, one per backend: estimated attention at the bottom, the rest of the step on top."""
    if not res.estimates:
        return None
    from attnbench import figures

    plt = figures.pyplot()

    names = [e.backend for e in res.estimates]
    attn = [e.attn_ms for e in res.estimates]
    rest = [max(0.0, e.rest_ms) for e in res.estimates]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(names) + 1.5), 4.5))
    ax.bar(names, attn, color="C3", label="attention (microbench estimate)")
    ax.bar(names, rest, bottom=attn, color="C7", label="rest of the step")
    for i, e in enumerate(res.estimates):
        ax.text(i, e.attn_ms / 2, textfmt.share(e.share), ha="center", va="center", color="white", fontsize=9)
        ax.text(i, max(e.tpot_mean_ms, e.attn_ms), f"{e.tpot_mean_ms:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("ms per decode step (mean TPOT)")
    ax.set_title(f"{res.shape.label}: attention vs rest of a decode step" + (f"\n{device}" if device else ""),
                 fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    ax.margins(y=0.15)
    return figures.save(fig, path, dpi=110, tight_bbox=True)


def _png(res: ShapeResult, result_dir: Path) -> Path:
    return result_dir / f"explain-{res.shape.slug}.png"


def write_plots(results: list[ShapeResult], result_dir: Path, device: str = "") -> dict[str, Path]:
    """One PNG per load shape with estimates; returns them by file name."""
    written = {}
    for res in results:
        png = plot(res, _png(res, result_dir), device)
        if png:
            written[png.name] = png
    return written


def write_summary(results: list[ShapeResult], result_dir: Path, plots: dict[str, Path]) -> Path:
    """summary.md, linking the PNGs write_plots drew (called first: the links name what exists)."""
    names = {res.shape: name for res in results if (name := _png(res, result_dir).name) in plots}
    return atomic.write_text(result_dir / "summary.md", markdown(results, names))
