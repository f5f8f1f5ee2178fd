"""The report's own figures: history over runs, the microbench roofline, metrics with confidence intervals.

Callers pass pyplot in (see `pyplot()`), so matplotlib is imported only when a report is built.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

from attnbench import figures


pyplot = figures.pyplot  # callers pass pyplot in, so matplotlib loads only when a report is built
save = figures.save


def parse_time(stamp: object) -> _dt.datetime | None:
    try:
        return _dt.datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


@dataclass
class Point:
    time: _dt.datetime
    sha: str
    value: float


def history(plt, title: str, series: dict[str, dict[str, list[Point]]], path: Path) -> Path:
    """series: metric label -> backend -> points; one panel per metric, one line per backend."""
    n = len(series)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.8 * n + 0.6), squeeze=False, sharex=True)
    backends = sorted({b for per in series.values() for b in per})
    colors = {b: f"C{i % 10}" for i, b in enumerate(backends)}
    ticks: list[tuple[_dt.datetime, str]] = []
    for ax, (metric, per_backend) in zip(axes[:, 0], series.items()):
        for backend, points in sorted(per_backend.items()):
            points = sorted(points, key=lambda p: p.time)
            ax.plot([p.time for p in points], [p.value for p in points], marker="o", label=backend,
                    color=colors[backend])
            ticks += [(p.time, p.sha) for p in points]
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    # one tick per run (points closer than an hour share one), labelled by date and commit
    ticks.sort()
    kept: list[tuple[_dt.datetime, str]] = []
    for t, sha in ticks:
        if not kept or (t - kept[-1][0]).total_seconds() > 3600:
            kept.append((t, sha))
    if len(kept) <= 12:
        axes[-1, 0].set_xticks([t for t, _ in kept])
        axes[-1, 0].set_xticklabels([f"{t:%Y-%m-%d %H:%M}\n{sha[:7]}" for t, sha in kept], fontsize=8)
    axes[-1, 0].set_xlabel("run (UTC time, attnbench git sha)")
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


@dataclass
class RoofPoint:
    backend: str
    group: str  # marker: decode / prefill / ... when the scenario says
    gbps: float
    tflops: float


def roofline(plt, title: str, points: list[RoofPoint], bw_gbps: float | None, peak_tflops: float | None,
             roof_source: str, path: Path) -> Path | None:
    """Achieved TFLOP/s over arithmetic intensity, under the bandwidth roof and the compute roof."""
    import numpy as np

    pts = [p for p in points if p.gbps and p.gbps > 0 and p.tflops and p.tflops > 0]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5))
    # intensity (FLOP/byte) = (TFLOP/s * 1e12) / (GB/s * 1e9): the ratio of the two achieved rates
    intensity = [p.tflops * 1e3 / p.gbps for p in pts]
    backends = sorted({p.backend for p in pts})
    groups = sorted({p.group for p in pts})
    markers = "osD^v<>PX*"
    for p, x in zip(pts, intensity):
        ax.scatter([x], [p.tflops], color=f"C{backends.index(p.backend) % 10}",
                   marker=markers[groups.index(p.group) % len(markers)], s=28, alpha=0.85)
    xs = np.geomspace(min(intensity) / 2, max(intensity) * 2, 200)
    if bw_gbps:
        roof = xs * bw_gbps / 1e3  # TFLOP/s = intensity * GB/s / 1000
        if peak_tflops:
            roof = np.minimum(roof, peak_tflops)
        label = f"roof ({roof_source}): {bw_gbps:,.0f} GB/s" + (f", {peak_tflops:,.0f} TFLOP/s" if peak_tflops else "")
        ax.plot(xs, roof, color="black", lw=1.2, label=label)
    elif peak_tflops:
        ax.axhline(peak_tflops, color="black", lw=1.2, label=f"compute roof ({roof_source}) {peak_tflops:,.0f} TFLOP/s")
    for b in backends:
        ax.scatter([], [], color=f"C{backends.index(b) % 10}", marker="o", label=b)
    if len(groups) > 1:
        for g in groups:
            ax.scatter([], [], color="gray", marker=markers[groups.index(g) % len(markers)], label=g)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)


@dataclass
class Interval:
    label: str
    value: float
    low: float | None
    high: float | None
    failed: bool = False


def intervals(plt, title: str, xlabel: str, rows: list[Interval], path: Path) -> Path | None:
    """One horizontal bar per run: the value and its confidence interval."""
    rows = [r for r in rows if r.value is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        lo = r.value - r.low if r.low is not None else 0
        hi = r.high - r.value if r.high is not None else 0
        ax.errorbar([r.value], [y], xerr=[[max(lo, 0)], [max(hi, 0)]], fmt="o", capsize=4,
                    color="C3" if r.failed else "C0")
    ax.set_yticks(ys)
    ax.set_yticklabels([r.label for r in rows], fontsize=8)
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.xaxis.set_major_locator(plt.MaxNLocator(6))
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    return save(fig, path)
