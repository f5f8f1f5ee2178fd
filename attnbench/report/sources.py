"""Which records the report reads, and the file each came from (the report links the raw JSON).

Unlike results.record.load, a file the report cannot read as a record is kept as a `Raw` entry
instead of failing the whole report: unknown kinds (newer attnbench, other tools) are listed raw.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnbench.errors import UserError
from attnbench.results.record import KINDS, Record


@dataclass
class Entry:
    record: Record
    path: Path


@dataclass
class Raw:
    """A JSON object the report shows as-is: its kind is unknown, or it did not validate."""

    obj: dict[str, Any]
    path: Path
    problem: str


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted({*path.rglob("*.json"), *path.rglob("*.json.gz")})
    return [path]


def _parse(path: Path) -> Any:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return json.loads(data)


def read(paths: list[Path]) -> tuple[list[Entry], list[Raw]]:
    """Records and raw entries from files and directory trees; non-record JSON (manifests...) is skipped."""
    entries: list[Entry] = []
    raws: list[Raw] = []
    for root in paths:
        root = Path(root)
        if not root.exists():
            raise UserError(f"{root}: no such file or directory; pass result files or directories")
        for f in _files(root):
            try:
                obj = _parse(f)
            except (OSError, EOFError, ValueError) as e:
                if root == f:
                    raise UserError(f"{f}: not readable as JSON ({type(e).__name__}); pass attnbench result files") from None
                continue
            for item in obj if isinstance(obj, list) else [obj]:
                if not isinstance(item, dict) or "kind" not in item:
                    continue
                if item["kind"] not in KINDS:
                    raws.append(Raw(item, f, f"unknown kind {item['kind']!r}"))
                    continue
                try:
                    entries.append(Entry(Record.from_json(item, str(f)), f))
                except UserError as e:
                    raws.append(Raw(item, f, str(e)))
    return entries, raws
