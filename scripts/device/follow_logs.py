"""Print what the runs of `attnbench run` write to their logs (DIR/ID/repK/run.log) as it comes, so
the device job's log, which wait.sh brings back, shows progress while a run is going. Progress
bars' carriage returns become line ends; lines matching --drop are left out. Ends once the process
--while has exited and every log is read to its end.

    python3 -m attnbench run scenarios/seed-serve.toml --result-dir /tmp/res & run=$!
    python3 scripts/device/follow_logs.py /tmp/res --while $run --drop '^\\s*$|^\\['
    wait $run
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path


def running(pid: int) -> bool:
    """Whether the process is there and not a zombie (one whose parent has not reaped it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _changed(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class Follower:
    """Every run.log under one result tree, read from where the last look stopped."""

    def __init__(self, root: Path, drop: re.Pattern | None):
        self.root, self.drop = root, drop
        self.offsets: dict[Path, int] = {}
        self.pending: dict[Path, str] = {}  # the text after a log's last line end, until it ends

    def look(self, final: bool = False) -> None:
        for log in sorted(self.root.glob("*/rep*/run.log"), key=_changed):  # a finished run's last lines first
            try:
                with open(log, "rb") as f:
                    f.seek(0, 2)
                    if f.tell() < self.offsets.get(log, 0):  # a new log under the old name (--resume)
                        self.offsets[log], self.pending[log] = 0, ""
                    f.seek(self.offsets.get(log, 0))
                    data = f.read()
            except OSError:
                continue
            self.offsets[log] = self.offsets.get(log, 0) + len(data)
            *lines, rest = re.split(r"\r\n|\r|\n", self.pending.get(log, "") + data.decode(errors="replace"))
            self.pending[log] = rest
            if final and rest:
                lines.append(rest)
            for line in lines:
                if not (self.drop and self.drop.search(line)):
                    print(line, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="the --result-dir of attnbench run")
    ap.add_argument("--while", dest="pid", type=int, required=True, help="follow while this process runs")
    ap.add_argument("--drop", default=r"^\s*$", help="leave out lines matching this regular expression")
    ap.add_argument("--every", type=float, default=1.0, help="seconds between looks")
    a = ap.parse_args()
    follower = Follower(a.root, re.compile(a.drop) if a.drop else None)
    while running(a.pid):
        follower.look()
        time.sleep(a.every)
    follower.look(final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
