"""Which records the report reads, and the file each came from (the report links the raw JSON).

The report reads with the store's "collect" policy: a record it cannot read (unknown kind from a
newer attnbench or another tool, another schema version) is listed raw instead of failing the report.
"""

from __future__ import annotations

from pathlib import Path

from attnbench.records.record import Found, Problem, scan

Entry = Found  # a record and the file it came from
Raw = Problem  # a JSON object the report shows as-is, and why it is not a record


def read(paths: list[Path]) -> tuple[list[Entry], list[Raw]]:
    """Records and raw entries from files and directory trees; non-record JSON (manifests...) is skipped."""
    return scan(paths, on_bad="collect")
