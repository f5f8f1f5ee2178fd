"""Which launch configuration a decode call uses, chosen per shape class from measurement.

tuning.json beside this file is the table: one row per shape class of the decode grid (GQA
group x head_dim x page size x batch x context) with the configuration the sweep ranked first
there, or none where nothing was measured. A call takes the row of its geometry whose batch,
then context, is nearest to its own (in log2: 200 sequences go to the 256 row, 1500 tokens to
2048). A row without a winner takes the winner of the nearest measured row of its geometry
(nearest batch, then context, to the row's own): at both classes measured so far the tuned ring
beat the fallback (4271 against 3250 GB/s at B256 x 2048), and served decode replays CUDA graphs
captured at the longest context, so an unmeasured long-context row is what every step would use.
A geometry with no measured row gets `fallback(group)`, the choice made from register counts
before anything was timed. $ATTNBENCH_FA4_TUNING overrides both.

The table is loaded once per process. The sweep that measures it writes it through `Table.save`
(python -m attnbench.microbench.fa4_sweep); nothing here imports torch or the CuTe DSL.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("tuning.json")
TABLE_KIND = "attnbench-fa4-tuning"
ENV = "ATTNBENCH_FA4_TUNING"


@dataclass(frozen=True)
class Tuning:
    num_threads: int
    tokens_per_thread: int
    ctas_per_sm: int  # what fits by registers and shared memory; the planner sizes splits to fill it
    pipeline: bool = False  # double-buffered K/V registers (kernel v2)
    smem_stages: int = 0  # cp.async shared-memory ring of this many steps (kernel v3; v4 per warp)
    mma: bool = False  # tensor cores, kernel_mma.py (v4): tokens_per_thread 1, smem_stages >= 2
    pdl: bool = False  # decode and combine as programmatic dependent launches (v4.1)
    combine_warps: int = 1  # warps per row in the combine, each summing every combine_warps-th split

    def spec(self) -> str:
        """'num_threads=128,tokens_per_thread=2,ctas_per_sm=6,smem_stages=3': the table's and
        $ATTNBENCH_FA4_TUNING's format (fields at their default are left out)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.default is not MISSING and value == f.default:
                continue
            parts.append(f"{f.name}={int(value) if isinstance(value, bool) else value}")
        return ",".join(parts)

    @classmethod
    def parse(cls, spec: str, where: str = ENV) -> Tuning:
        names = {f.name for f in fields(cls)}
        try:
            kw = {k.strip(): v.strip() for k, v in (item.split("=") for item in spec.split(",") if item.strip())}
            if set(kw) - names:
                raise ValueError(f"unknown {sorted(set(kw) - names)}")
            flags = {f.name for f in fields(cls) if isinstance(f.default, bool)}
            return cls(**{k: (v.lower() in ("1", "true") if k in flags else int(v)) for k, v in kw.items()})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}={spec!r} is not 'field=int,...' over {sorted(names)} ({e})") from None


def fallback(group: int) -> Tuning:
    """Per GQA group, from the sm_90a register counts in NOTES.md: each lane keeps q and the
    accumulator of every head of the group, so wider groups trade loads in flight for registers."""
    if group <= 2:
        return Tuning(256, 4, 2)  # 106 regs: 2 CTAs/SM, 64 KB of K/V loads in flight per SM
    if group <= 4:
        return Tuning(128, 2, 3)  # 130 regs
    if group <= 8:
        return Tuning(128, 1, 2)  # ~224 regs
    return Tuning(64, 1, 4)  # spills: correct, slow; 64 threads keep the merge under 48 KB of smem


def from_env() -> Tuning | None:
    spec = os.environ.get(ENV, "").strip()
    return Tuning.parse(spec) if spec else None


@dataclass(frozen=True)
class Row:
    """One shape class. tuning None: not measured (the fallback applies)."""

    group: int
    head_dim: int
    page_size: int
    batch: int
    context: int
    tuning: Tuning | None = None
    gbps: float | None = None  # the winner's GB/s (K+V+q+out bytes) at this shape
    fallback_gbps: float | None = None  # fallback(group)'s GB/s in the same sweep
    source: str | None = None  # key into Table.sources: which GPU, when, which command

    @property
    def geometry(self) -> tuple[int, int, int]:
        return self.group, self.head_dim, self.page_size

    def to_json(self) -> dict:
        d = {"group": self.group, "head_dim": self.head_dim, "page_size": self.page_size, "batch": self.batch,
             "context": self.context, "tuning": self.tuning.spec() if self.tuning else None}
        for key in ("gbps", "fallback_gbps", "source"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d


def _nearest(values: list[int], x: int) -> int:
    """The value nearest to x in log2 (ties go to the smaller value)."""
    lx = math.log2(max(x, 1))
    return min(values, key=lambda v: (abs(math.log2(v) - lx), v))


def _reached(values: list[int], limit: int) -> list[int]:
    """The values some x in [1, limit] is nearest to: each value up to the limit, and the one
    nearest to the limit itself (any x below it is nearer to a smaller value or the same one)."""
    return sorted({_nearest(values, x) for x in [v for v in values if v <= limit] + [limit]})


@dataclass(frozen=True)
class Table:
    rows: tuple[Row, ...] = ()
    sources: dict = field(default_factory=dict)  # source key -> provenance (GPU, date, command)
    about: str = ""

    def __post_init__(self):
        index: dict[tuple, dict[int, dict[int, Row]]] = {}  # geometry -> batch -> context -> row
        for r in self.rows:
            key = (*r.geometry, r.batch, r.context)
            if min(key) < 1:
                raise ValueError(f"tuning table row {key}: every field must be >= 1")
            by_context = index.setdefault(r.geometry, {}).setdefault(r.batch, {})
            if r.context in by_context:
                raise ValueError(f"tuning table has two rows for group/head_dim/page/batch/context {key}")
            by_context[r.context] = r
        object.__setattr__(self, "_index", index)
        # each class's winner, its own or borrowed, found once: choose() runs on every eager decode call
        borrowed = {}
        for r in self.rows:
            m = r if r.tuning is not None else self.nearest_measured(r)
            borrowed[(*r.geometry, r.batch, r.context)] = m.tuning if m is not None else None
        object.__setattr__(self, "_winner", borrowed)

    def row(self, *, group: int, head_dim: int, page_size: int, batch: int, context: int) -> Row | None:
        """The shape class a call falls in, or None when the table has no row of this geometry."""
        by_batch = self._index.get((group, head_dim, page_size))
        if not by_batch:
            return None
        by_context = by_batch[_nearest(list(by_batch), batch)]
        return by_context[_nearest(list(by_context), context)]

    def choose(self, *, group: int, head_dim: int, page_size: int, batch: int, context: int) -> Tuning:
        """The class's measured winner, else the nearest measured class's, else fallback(group)
        ($ATTNBENCH_FA4_TUNING is the launcher's business: it replaces the table, see
        launcher.FA4Decode). A function of the class alone, so `reachable` can enumerate it."""
        r = self.row(group=group, head_dim=head_dim, page_size=page_size, batch=batch, context=context)
        won = self._winner[(*r.geometry, r.batch, r.context)] if r is not None else None
        return won if won is not None else fallback(group)

    def nearest_measured(self, r: Row) -> Row | None:
        """The measured row of r's geometry nearest to r: nearest batch (log2) among the batches
        with a measured row, then nearest context among that batch's measured rows."""
        by_batch = {b: {c: x for c, x in by_c.items() if x.tuning is not None}
                    for b, by_c in self._index.get(r.geometry, {}).items()}
        by_batch = {b: by_c for b, by_c in by_batch.items() if by_c}
        if not by_batch:
            return None
        by_context = by_batch[_nearest(list(by_batch), r.batch)]
        return by_context[_nearest(list(by_context), r.context)]

    def reachable(self, *, group: int, head_dim: int, page_size: int, max_batch: int,
                  max_context: int) -> list[Tuning]:
        """Every tuning `choose` can return for batch <= max_batch and context <= max_context (in
        table order): what a server compiles before it serves. A class is reachable when it is
        the nearest to some batch and context within the limits; the limits themselves reach
        the classes just above them."""
        by_batch = self._index.get((group, head_dim, page_size))
        if not by_batch:
            return [fallback(group)]
        found: dict[Tuning, None] = {}
        for b in _reached(list(by_batch), max_batch):
            for c in _reached(list(by_batch[b]), max_context):
                found[self.choose(group=group, head_dim=head_dim, page_size=page_size, batch=b, context=c)] = None
        return list(found)

    def merged(self, new_rows: list[Row], sources: dict) -> Table:
        """This table with `new_rows` replacing the rows of the same class (others kept)."""
        key = lambda r: (*r.geometry, r.batch, r.context)  # noqa: E731
        by = {key(r): r for r in self.rows}
        by.update({key(r): r for r in new_rows})
        ordered = sorted(by.values(), key=key)
        return Table(tuple(ordered), {**self.sources, **sources}, self.about)

    def to_json(self) -> dict:
        return {"kind": TABLE_KIND, "about": self.about, "sources": self.sources,
                "rows": [r.to_json() for r in self.rows]}

    def save(self, path: str | Path = TABLE_PATH) -> Path:
        """One row per line, so a re-measured class is a one-line diff."""
        from attnbench import atomic

        body = ",\n".join("    " + json.dumps(r.to_json()) for r in self.rows)
        head = json.dumps({"kind": TABLE_KIND, "about": self.about, "sources": self.sources}, indent=2)
        text = head[:-2] + ',\n  "rows": [\n' + body + "\n  ]\n}\n"
        return atomic.write_text(path, text)


def load(path: str | Path = TABLE_PATH) -> Table:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"tuning table {path} unreadable ({e}); restore it with git checkout or rerun the "
                         "sweep (python -m attnbench.microbench.fa4_sweep)") from None
    if not isinstance(doc, dict) or doc.get("kind") != TABLE_KIND:
        raise ValueError(f"{path} is not an attnbench-fa4 tuning table (kind {TABLE_KIND!r})")
    try:
        rows = tuple(Row(**{**r, "tuning": Tuning.parse(r["tuning"], f"{path} tuning") if r.get("tuning") else None})
                     for r in doc.get("rows", []))
    except TypeError as e:
        raise ValueError(f"{path}: bad row ({e}); rows have group, head_dim, page_size, batch, context, tuning") from None
    return Table(rows, dict(doc.get("sources", {})), str(doc.get("about", "")))


@cache
def table() -> Table:
    """The committed table, read once per process."""
    return load(TABLE_PATH)
