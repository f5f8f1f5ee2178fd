"""Shape grids from TOML files in scenarios/ (format: scenarios/decode-grid.toml).

  name = "decode-grid"
  [microbench]
  op = "decode"                       # or "prefill"
  backends = ["fa2", "fa3"]           # optional; the command line's --backends wins
  dtype = "bfloat16"
  page_size = 16
  heads = ["16/8/128", "32/8/128"]    # q_heads/kv_heads/head_dim
  batch = [1, 4]
  context = [1024, 32768]             # decode: KV length; prefill: seqlen = [...] (context = cached prefix)
  q_len = 1                           # decode only (speculative decoding: > 1)
  causal = true                       # prefill only
  max_kv_gib = 40                     # shapes whose inputs would not fit are skipped (and listed)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from attnbench.errors import UserError
from attnbench.microbench import work
from attnbench.microbench.base import DecodeShape, PrefillShape, Shape

DTYPE_ALIASES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16", "half": "float16"}


@dataclass(frozen=True)
class Grid:
    name: str
    op: str  # "decode" or "prefill"
    heads: tuple[tuple[int, int, int], ...] = ((16, 8, 128),)
    batch: tuple[int, ...] = (1, 4)
    lengths: tuple[int, ...] = (1024, 32768)  # decode: context; prefill: seqlen
    context: tuple[int, ...] = (0,)  # prefill only: cached prefix (0 = plain varlen prefill)
    backends: tuple[str, ...] = ()
    dtype: str = "bfloat16"
    page_size: int = 16
    q_len: int = 1
    causal: bool = True
    ragged: str | None = None  # decode: DIST:LO:HI replaces each context value
    max_kv_gib: float = 40.0
    pairs: tuple[tuple[int, int], ...] = ()  # (batch, length) pairs run instead of batch x lengths
    source: str = ""

    def shapes(self) -> tuple[list[Shape], list[str]]:
        """The grid's shapes in run order, and a line per shape skipped because it would not fit."""
        from attnbench.microbench import inputs

        out, skipped = [], []
        limit = self.max_kv_gib * 2**30
        for hq, hkv, d in self.heads:
            common = dict(q_heads=hq, kv_heads=hkv, head_dim=d, dtype=self.dtype, page_size=self.page_size)
            pairs = self.pairs or tuple((b, n) for b in self.batch for n in self.lengths)
            seen_ragged = set()
            for b, n in pairs:
                if self.op == "decode" and self.ragged:
                    if b in seen_ragged:
                        continue  # ragged lengths come from the distribution, not the context list
                    seen_ragged.add(b)
                for ctx in (self.context if self.op == "prefill" else (0,)):
                    if self.op == "decode":
                        lens = inputs.ragged_lengths(self.ragged, b) if self.ragged else (n,) * b
                        shape = DecodeShape(batch=b, context_lens=lens, q_len=self.q_len, **common)
                    else:
                        shape = PrefillShape(seqlens=(n,) * b, causal=self.causal,
                                             context_lens=(ctx,) * b if ctx else None, **common)
                    need = work.footprint_bytes(shape)
                    if need > limit:
                        skipped.append(f"{shape.label()}: inputs need {need / 2**30:.1f} GiB > max_kv_gib {self.max_kv_gib:g}")
                    else:
                        out.append(shape)
        return out, skipped


def parse_heads(spec: str, head_dim: int | None = None) -> tuple[int, int, int]:
    """'16/8/128' or '16/8' (head_dim from --head-dim) -> (q_heads, kv_heads, head_dim)."""
    parts = str(spec).strip().split("/")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) == 2 and head_dim:
        nums.append(head_dim)
    if len(nums) != 3 or min(nums) < 1 or nums[0] % nums[1]:
        raise UserError(f"heads {spec!r}: expected Q/KV or Q/KV/D with Q a multiple of KV, e.g. 16/8 or 32/8/128")
    return tuple(nums)


def parse_ints(spec: str, what: str) -> tuple[int, ...]:
    """'1,4,8' or '1k,32k' -> (1, 4, 8) / (1024, 32768)."""
    out = []
    for part in str(spec).split(","):
        part = part.strip().lower()
        mult = 1024 if part.endswith("k") else 1
        try:
            value = int(part[:-1] if mult > 1 else part) * mult
        except ValueError:
            raise UserError(f"--{what} {spec!r}: expected comma-separated positive integers, e.g. 1,4,8 or 1k,32k") from None
        if value < 1:
            raise UserError(f"--{what} {spec!r}: values must be >= 1")
        out.append(value)
    return tuple(out)


def parse_pairs(spec: str, what: str) -> tuple[tuple[int, int], ...]:
    """'256x2048,1x32k' -> ((256, 2048), (1, 32768)): batch x context (decode) or x seqlen (prefill)."""
    out = []
    for part in str(spec).split(","):
        b, sep, n = part.strip().lower().partition("x")
        if not sep:
            raise UserError(f"--shapes {spec!r}: expected BATCHxLENGTH pairs, e.g. 256x2048,1x32k")
        out.append((parse_ints(b, "shapes")[0], parse_ints(n, what)[0]))
    return tuple(out)


def dtype_name(spec: str) -> str:
    try:
        return DTYPE_ALIASES[spec.lower()]
    except KeyError:
        raise UserError(f"dtype {spec!r}: use bf16 or fp16") from None


def load(path: str | Path) -> Grid:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"grid file {path} not found; pass a TOML file such as scenarios/decode-grid.toml")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    mb = doc.get("microbench")
    if not isinstance(mb, dict):
        raise UserError(f"{path}: no [microbench] table; see scenarios/decode-grid.toml for the format")
    op = mb.get("op")
    if op not in ("decode", "prefill"):
        raise UserError(f"{path}: [microbench] op must be \"decode\" or \"prefill\", got {op!r}")
    known = {"op", "backends", "dtype", "page_size", "heads", "batch", "context", "seqlen", "q_len", "causal",
             "max_kv_gib", "ragged"}
    unknown = set(mb) - known
    if unknown:
        raise UserError(f"{path}: unknown [microbench] keys {sorted(unknown)}; known: {', '.join(sorted(known))}")
    lengths_key = "context" if op == "decode" else "seqlen"
    try:
        grid = Grid(
            name=str(doc.get("name", path.stem)), op=op,
            heads=tuple(parse_heads(h) for h in mb.get("heads", ["16/8/128"])),
            batch=tuple(int(b) for b in mb.get("batch", [1])),
            lengths=tuple(int(n) for n in mb[lengths_key]),
            context=tuple(int(c) for c in mb.get("context", [0])) if op == "prefill" else (0,),
            backends=tuple(mb.get("backends", ())), dtype=dtype_name(mb.get("dtype", "bfloat16")),
            page_size=int(mb.get("page_size", 16)), q_len=int(mb.get("q_len", 1)),
            causal=bool(mb.get("causal", True)), ragged=mb.get("ragged"),
            max_kv_gib=float(mb.get("max_kv_gib", 40)), source=str(path))
    except KeyError as e:
        raise UserError(f"{path}: [microbench] needs {e.args[0]} = [...] for op {op!r}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: bad [microbench] value ({e}); see scenarios/decode-grid.toml") from None
    if not grid.batch or not grid.lengths or min(grid.batch + grid.lengths) < 1:
        raise UserError(f"{path}: batch and {lengths_key} need at least one positive value each")
    return grid


__all__ = ["Grid", "load", "parse_heads", "parse_ints", "parse_pairs", "dtype_name", "replace"]
