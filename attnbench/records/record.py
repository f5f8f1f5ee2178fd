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
from attnbench.records import kinds

SCHEMA_VERSION = 1
KINDS = kinds.NAMES
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
            raise UserError(f"{source}: unknown kind {obj['kind']!r} (expected one of {', '.join(KINDS)})")
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
        """JSON, gzipped when the name ends in .gz (as committed records with large arrays are)."""
        if str(path).endswith(".gz"):
            return atomic.write_bytes(path, gzip.compress(json.dumps(self.to_json()).encode(), mtime=0))
        return atomic.write_json(path, self.to_json())


def _read(path: Path) -> str:
    """Records are JSON; committed ones with large per-request arrays may be gzipped (.json.gz)."""
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode()
    return path.read_text()


BAD = ("raise", "skip", "collect")


@dataclass
class Found:
    record: Record
    path: Path  # the file it came from


@dataclass
class Problem:
    """A JSON object with a 'kind' that is no record this attnbench reads, and why."""

    obj: dict[str, Any]
    path: Path
    problem: str


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted({*path.rglob("*.json"), *path.rglob("*.json.gz")})
    return [path]


def scan(paths: list[str | os.PathLike], on_bad: str = "raise") -> tuple[list[Found], list[Problem]]:
    """Records from files (one record or a list of them) and directory trees of *.json / *.json.gz.

    Inside a directory, files that are not JSON and JSON without a 'kind' are not records (manifests,
    torn writes) and are passed over under every policy. What is bad: a path named here that is not
    JSON, and an object with a 'kind' that does not validate (unknown kind, another schema version).
    on_bad says what happens to it: "raise" a UserError, "skip" it, or "collect" it as a Problem
    (a named path that is not JSON still raises: there is no object to collect)."""
    if on_bad not in BAD:
        raise ValueError(f"on_bad must be one of {BAD}, not {on_bad!r}")
    found: list[Found] = []
    problems: list[Problem] = []
    for root in map(Path, paths):
        if not root.exists():
            raise UserError(f"{root}: no such file or directory; pass result files or directories")
        for f in _files(root):
            try:
                obj = json.loads(_read(f))
            except (ValueError, OSError, EOFError) as e:  # bad JSON, bad UTF-8, bad gzip, unreadable
                if f != root or on_bad == "skip":
                    continue
                where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else f" ({type(e).__name__})"
                raise UserError(f"{f}: not readable as JSON{where}; pass files written by attnbench") from None
            for item in obj if isinstance(obj, list) else [obj]:
                if not (isinstance(item, dict) and "kind" in item) and (f != root or on_bad != "raise"):
                    continue  # not a record; a file named under "raise" says so below
                try:
                    found.append(Found(Record.from_json(item, str(f)), f))
                except UserError as e:
                    if on_bad == "raise":
                        raise
                    if on_bad == "collect":
                        problems.append(Problem(item, f, str(e)))
    return found, problems


def load(path: str | os.PathLike, on_bad: str = "raise") -> list[Record]:
    """The records of one file or directory tree (see scan for what is bad and the policies)."""
    return [f.record for f in scan([path], on_bad)[0]]
