"""One way to draw a PNG: matplotlib without a display, imported only by the code that draws (so
commands that never plot never load it), and each figure written atomically and then freed."""

from __future__ import annotations

import io
from pathlib import Path

from attnbench import atomic


def pyplot():
    """matplotlib.pyplot on the Agg backend: no display needed, the same on a laptop and a GPU box."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, dpi: int = 100, tight_bbox: bool = False) -> Path:
    """Write `fig` as a PNG at `path` (its folder made), atomically, and close it. Lay out first
    (fig.tight_layout()), or pass tight_bbox for figures whose legend sits outside the axes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight_bbox else {}))
    fig.clf()
    pyplot().close(fig)
    return atomic.write_bytes(path, buf.getvalue())
