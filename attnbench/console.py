"""Terminal output shared by commands: a live status line and a progress bar, both quiet
when stderr is not a terminal (CI logs get occasional plain lines instead)."""

from __future__ import annotations

import sys
import time


class StatusLine:
    """Rewrites one line on a TTY; elsewhere prints at most every `every_s` seconds."""

    def __init__(self, every_s: float = 30.0, stream=None, rewrite: bool = True):
        self.stream = stream or sys.stderr  # looked up now, not at import (pytest swaps it)
        self.tty = rewrite and self.stream.isatty()  # rewrite=False: lines, for a status beside another
        self.every_s = every_s
        self._last = 0.0
        self._width = 0

    def __call__(self, text: str) -> None:
        if self.tty:
            cols = 160
            text = text[:cols]
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()
        elif time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            print(text, file=self.stream, flush=True)

    def done(self, text: str | None = None) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
        self._width = 0
        if text:
            print(text, file=self.stream, flush=True)


class Progress:
    """`n/total` with a rate and an optional suffix (e.g. running accuracy)."""

    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label, self.n = total, label, 0
        self.t0 = time.monotonic()
        self.line = StatusLine(every_s=10.0, stream=stream)

    def update(self, k: int = 1, suffix: str = "") -> None:
        self.set(self.n + k, suffix)

    def set(self, done: int, suffix: str = "") -> None:
        """Show `done` finished (a count from elsewhere, e.g. the client's; never above total)."""
        self.n = min(done, self.total)
        elapsed = time.monotonic() - self.t0
        width = 30
        filled = int(width * self.n / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.line(f"{self.label} [{bar}] {self.n}/{self.total} {elapsed:5.1f}s {suffix}")

    def close(self) -> None:
        self.line.done()
