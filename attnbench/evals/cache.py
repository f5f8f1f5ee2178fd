"""Finished samples, one JSON line each, appended and flushed as they arrive: a re-run of the
same command (after Ctrl-C, a crash or a killed job) asks only what is missing. A row is reused
only for the same question, repeat and settings asked of the same server: each row carries the
key of the server identity (see `server_key`), so a changed server is asked again."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

# what identifies one answer: (endpoint/model, backend, effort, question id, repeat)
KEY_FIELDS = ("target", "backend", "effort", "question_id", "repeat")


def key(row: dict[str, Any]) -> tuple:
    return tuple(row[f] for f in KEY_FIELDS)


def server_key(identity: dict[str, Any]) -> str:
    """A short stable hash of what is known about a server (model, revision, backend, serve
    args, vLLM version, ...): answers from another server are not reused."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Cache:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: dict[tuple, dict[str, Any]] = {}
        self._file = None
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        # bytes, decoded line by line: a line torn inside a multi-byte character is skipped like
        # any other torn line instead of failing the whole read
        with open(self.path, "rb") as f:
            for line in f:
                try:
                    row = json.loads(line.decode("utf-8"))
                    self.rows[key(row)] = row  # a later line for the same key wins
                except (ValueError, KeyError, TypeError):
                    continue  # the torn last line of an interrupted run

    def get(self, row_key: tuple, **same: Any) -> dict[str, Any] | None:
        """The cached row for this key when it was asked with the same prompt and settings."""
        row = self.rows.get(row_key)
        if row is None or any(row.get(f) != v for f, v in same.items()):
            return None
        return row

    def append(self, row: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            if self._file.tell() and not self._ends_with_newline():
                self._file.write("\n")  # keep a torn line from swallowing this one
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._file.flush()
        self.rows[key(row)] = row

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
