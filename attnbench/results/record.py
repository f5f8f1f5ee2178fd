"""The one result record every command writes: serve, microbench, gpqa, parity, explain.

On disk a record is one flat JSON object, so that tools reading `vllm bench serve
--save-result` files read ours:
  - envelope keys (ENVELOPE below): what ran, where, how it ended;
  - every other scalar (number or null) is a metric — for kind "serve" these are exactly
    vLLM's names (completed, failed, duration, output_throughput, mean_ttft_ms, ...);
  - every other list or object is raw data (per-request or per-sample arrays: ttfts, itls, ...).
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench import atomic
from attnbench.errors import UserError

SCHEMA_VERSION = 1
KINDS = ("serve", "serve-aggregate", "microbench", "gpqa", "parity", "explain")
ENVELOPE = ("schema_version", "kind", "backend", "status", "error", "scenario", "provenance")


@dataclass
class Record:
    kind: str
    backend: str
    scenario: dict[str, Any]
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # "ok" or "failed"
    error: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        clash = (set(self.metrics) | set(self.samples)) & set(ENVELOPE)
        clash |= set(self.metrics) & set(self.samples)
        if clash:
            raise ValueError(f"record keys clash with the envelope or each other: {sorted(clash)}")
        out = {k: getattr(self, k) for k in ENVELOPE}
        out.update(self.metrics)
        out.update(self.samples)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], source: str = "record") -> "Record":
        if not isinstance(obj, dict) or "kind" not in obj:
            raise UserError(f"{source}: not an attnbench record (no 'kind'); pass files written by attnbench")
        version = obj.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UserError(
                f"{source}: record schema_version {version!r}, this attnbench reads {SCHEMA_VERSION}; "
                "re-run the benchmark or use the attnbench version that wrote it"
            )
        if obj["kind"] not in KINDS:
            raise UserError(f"{source}: unknown record kind {obj['kind']!r} (expected one of {', '.join(KINDS)})")
        for key, typ in (("backend", str), ("scenario", dict), ("provenance", dict), ("status", str)):
            if not isinstance(obj.get(key), typ):
                raise UserError(f"{source}: field {key!r} missing or not a {typ.__name__}")
        rest = {k: v for k, v in obj.items() if k not in ENVELOPE}
        metrics = {k: v for k, v in rest.items() if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}
        samples = {k: v for k, v in rest.items() if k not in metrics}
        return cls(
            kind=obj["kind"], backend=obj["backend"], scenario=obj["scenario"], metrics=metrics,
            samples=samples, provenance=obj["provenance"], status=obj["status"], error=obj.get("error"),
        )

    def save(self, path: str | os.PathLike) -> Path:
        return atomic.write_json(path, self.to_json())


def _read(path: Path) -> str:
    """Records are JSON; committed ones with large per-request arrays may be gzipped (.json.gz)."""
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode()
    return path.read_text()


def load(path: str | os.PathLike) -> list[Record]:
    """Records from a file (one record, a list of records) or a directory tree of *.json / *.json.gz files."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_dir():
        records = []
        for f in sorted([*path.rglob("*.json"), *path.rglob("*.json.gz")]):
            try:
                obj = json.loads(_read(f))
            except (json.JSONDecodeError, OSError, EOFError):
                continue
            items = obj if isinstance(obj, list) else [obj]
            records += [Record.from_json(o, str(f)) for o in items if isinstance(o, dict) and "kind" in o]
        return records
    try:
        obj = json.loads(_read(path))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    items = obj if isinstance(obj, list) else [obj]
    return [Record.from_json(o, str(path)) for o in items]
