"""serve-bench's plots (matplotlib PNG): throughput bars, TTFT/TPOT CDFs, output tokens/s over time.

Each figure's title names the load shape and the GPU, so a PNG read on its own says what it shows.

table(), markdown(), write_summary() (in summary.py), write_plots(): the presentation shape every area shares.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnbench import figures
from attnbench.records.record import Record
from attnbench.serving import aggregate
from attnbench.serving.shape import Shape


def _gpu(records: list[Record]) -> str:
    names = []
    for rec in records:
        name = rec.provenance.get("gpu_name")
        if name and name not in names:
            names.append(name)
    return ", ".join(names) or "GPU unknown"


def _by_shape(records: list[Record]) -> dict[Shape, list[aggregate.Group]]:
    out: dict[Shape, list[aggregate.Group]] = {}
    for g in aggregate.groups(records):
        out.setdefault(Shape.of(g.passes[0]), []).append(g)
    return out


def _shown(g: aggregate.Group) -> Record:
    """The pass a distribution plot shows for a group: its last pass used (or its last pass)."""
    return (g.used or g.passes)[-1]


def _colors(records: list[Record]) -> dict[str, str]:
    """One colour per backend, the same in every figure."""
    names = list(dict.fromkeys(r.backend for r in records))
    palette = [f"C{i}" for i in range(10)]
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _finish(fig, title: str, path: Path) -> Path:
    """Title, tight layout, write the PNG atomically, free the figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return figures.save(fig, path)


def _whisker(ax, x: float, sp, capsize: float = 4) -> None:
    """The 95% CI of a mean over repeats, as an error bar (nothing for a single run)."""
    if sp is not None and sp.n > 1 and sp.ci_high == sp.ci_high:
        ax.errorbar(x, sp.mean, yerr=[[sp.mean - sp.ci_low], [sp.ci_high - sp.mean]], color="black",
                    capsize=capsize, lw=1)


def _throughput(plt, shapes: dict[Shape, list[aggregate.Group]], colors: dict[str, str], gpu: str,
                path: Path) -> Path:
    """One panel pair per shape (own y scale: 1000:1000 and 8000:1 differ by 1000x): output and total
    tok/s; with repeats, the bar is the mean, the whisker its 95% CI and each dot one pass."""
    n = len(shapes)
    fig, axes = plt.subplots(2, n, figsize=(max(5.0, 1.2 + 0.9 * max(len(g) for g in shapes.values())) * n, 7),
                             squeeze=False)
    for j, (shape, groups) in enumerate(shapes.items()):
        for i, (key, label) in enumerate((("output_throughput", "output tokens/s"),
                                          ("total_token_throughput", "total tokens/s (in + out)"))):
            ax = axes[i][j]
            names = [g.backend for g in groups]
            spreads = [g.spread(key) if g.used else None for g in groups]
            means = [sp.mean if sp and sp.n else None for sp in spreads]
            bars = ax.bar(range(len(groups)), [v or 0 for v in means], color=[colors[b] for b in names])
            ax.set_xticks(range(len(groups)), names)
            def high(sp, g) -> float:  # the top of what is drawn for one bar: CI, dots or the bar
                vals = [sp.mean if sp is not None and sp.n else 0.0, *g.values(key).values()]
                if sp is not None and sp.n > 1 and sp.ci_high == sp.ci_high:
                    vals.append(sp.ci_high)
                return max(vals)

            top = max([high(sp, g) for sp, g in zip(spreads, groups)] + [0.0]) or 1.0
            for x, (bar, sp, g) in enumerate(zip(bars, spreads, groups)):
                _whisker(ax, x, sp)
                if sp is not None and sp.n > 1:
                    ax.plot([x] * sp.n, list(g.values(key).values()), "o", color="black", ms=3, alpha=0.6)
                v = sp.mean if sp is not None and sp.n else None
                text = "FAILED" if not g.used else ("n/a" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.2f}")
                if sp is not None and sp.n > 1 and sp.half_width_pct == sp.half_width_pct:
                    text += f"\n±{sp.half_width_pct:.1f}%"
                ax.text(bar.get_x() + bar.get_width() / 2, high(sp, g) + top * 0.02, text, ha="center", va="bottom",
                        fontsize=8, color="red" if not g.used else "black")
            ax.set_ylim(0, top * 1.3)
            ax.set_ylabel(label)
            ax.set_title(f"{label.split(' (')[0]}: {shape.label}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            ax.tick_params(axis="x", labelrotation=20)
    return _finish(fig, f"Serving throughput per backend · {gpu}", path)


def _cdf(ax, values_ms: list[float], label: str, color: str) -> bool:
    import numpy as np

    v = np.sort(np.asarray([x for x in values_ms if x is not None], dtype=float))
    if not v.size:
        return False
    # empirical CDF: the k-th smallest of n values has F = k / n (and F = 0 just below the smallest)
    ax.step(np.concatenate([v[:1], v]), np.arange(v.size + 1) / v.size, where="post", label=label, color=color)
    return True


def _latency(plt, shape: Shape, groups: list[aggregate.Group], colors: dict[str, str], gpu: str, path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, name in ((axes[0], "ttfts", "TTFT"), (axes[1], "tpots", "TPOT")):
        drawn = False
        for g in groups:  # every request of the passes used, pooled
            ms = [x * 1000.0 for rec in g.used for x in rec.samples.get(key) or [] if x is not None]
            drawn |= _cdf(ax, ms, g.backend, colors[g.backend])
        if drawn:
            ax.legend(fontsize=8, loc="lower right")
        else:
            reason = "one output token per request" if key == "tpots" and shape.output_len <= 1 else "no samples"
            ax.text(0.5, 0.5, f"no {name} ({reason})", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(f"{name} (ms)")
        ax.set_ylabel("fraction of requests")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{name} CDF" + (" (first token excluded)" if key == "tpots" else ""), fontsize=10)
        ax.grid(alpha=0.3)
    return _finish(fig, f"Latency distributions · {shape.label} · {gpu}", path)


def _timeline(plt, shape: Shape, groups: list[aggregate.Group], colors: dict[str, str], gpu: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    drawn = False
    for rec in [_shown(g) for g in groups]:
        tl = rec.samples.get("timeline") or {}
        if rec.status != "ok" or not tl.get("t"):
            continue
        # bucket i holds the tokens that arrived in [i, i+1) s: draw it over that second
        ax.step(list(tl["t"]) + [tl["t"][-1] + 1], list(tl["output_tok_s"]) + [tl["output_tok_s"][-1]],
                where="post", label=rec.backend, color=colors[rec.backend])
        drawn = True
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no timeline recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("time since the run started (s)")
    ax.set_ylabel("output tokens/s (1 s buckets)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"Output tokens/s over time · {shape.label} · {gpu}", fontsize=10)
    return _finish(fig, "", path)


def _server_tpot(shapes: dict[Shape, list[aggregate.Group]]) -> bool:
    return any(g.values("server_mean_tpot_ms") for groups in shapes.values() for g in groups)


def _decode_shapes(shapes: dict[Shape, list[aggregate.Group]]) -> dict[Shape, list[aggregate.Group]]:
    """The shapes with a TPOT: more than one output token per request."""
    return {shape: groups for shape, groups in shapes.items() if shape.output_len > 1}


def _tpot(plt, shapes: dict[Shape, list[aggregate.Group]], colors: dict[str, str], gpu: str, path: Path) -> Path:
    """Per decode shape: each backend's mean TPOT as the client saw it and as vLLM's engine
    timed it (/metrics), with 95% CIs; the gap between the two is time spent delivering tokens."""
    fig, axes = plt.subplots(1, len(shapes), figsize=(max(6.0, 1.6 * max(len(g) for g in shapes.values())) * len(shapes),
                                                      4.8), squeeze=False)
    for ax, (shape, groups) in zip(axes[0], shapes.items()):
        width = 0.38
        for k, (key, side, alpha) in enumerate((("mean_tpot_ms", "client", 1.0), ("server_mean_tpot_ms", "server", 0.45))):
            for x, g in enumerate(groups):
                sp = g.spread(key)
                if not sp.n:
                    continue
                xpos = x + (k - 0.5) * width
                ax.bar(xpos, sp.mean, width, color=colors[g.backend], alpha=alpha,
                       label=side if x == 0 else None, edgecolor="black", linewidth=0.5)
                _whisker(ax, xpos, sp, capsize=3)
                ax.text(xpos, 0.3, f"{sp.mean:.1f}", ha="center", va="bottom", fontsize=8, rotation=90)
        ax.set_xticks(range(len(groups)), [g.backend for g in groups])
        ax.set_ylabel("mean TPOT (ms), lower is better")
        ax.set_title(f"TPOT, client (solid) and engine (/metrics, pale): {shape.label}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="x", labelrotation=20)
    return _finish(fig, f"Time per output token per backend · {gpu}", path)


def figure_names(records: list[Record]) -> list[tuple[str, str]]:
    """(file name, caption) of every figure write_plots draws for these records, in order."""
    shapes = _by_shape(records)
    names = [("throughput.png", "Output and total throughput per backend")] if shapes else []
    if _server_tpot(_decode_shapes(shapes)):
        names.append(("tpot.png", "Mean TPOT per backend, client and engine (vLLM /metrics)"))
    for shape in shapes:
        names += [(f"latency-{shape.slug}.png", f"TTFT and TPOT CDFs, {shape.label}"),
                  (f"timeline-{shape.slug}.png", f"Output tokens/s over time, {shape.label}")]
    return names


def write_plots(result_dir: str | os.PathLike, records: list[Record]) -> list[Path]:
    """throughput.png, latency-<shape>.png (TTFT and TPOT CDFs), timeline-<shape>.png in RESULT_DIR."""
    plt = figures.pyplot()

    result_dir = Path(result_dir)
    serve = [r for r in records if r.kind == "serve"]
    if not serve:
        return []
    shapes = _by_shape(serve)
    colors = _colors(serve)
    gpu = _gpu(serve)
    names = iter(name for name, _ in figure_names(serve))
    paths = [_throughput(plt, shapes, colors, gpu, result_dir / next(names))]
    decode = _decode_shapes(shapes)
    if _server_tpot(decode):
        paths.append(_tpot(plt, decode, colors, gpu, result_dir / next(names)))
    for shape, recs in shapes.items():
        paths.append(_latency(plt, shape, recs, colors, gpu, result_dir / next(names)))
        paths.append(_timeline(plt, shape, recs, colors, gpu, result_dir / next(names)))
    return paths
