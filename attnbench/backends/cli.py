"""`attnbench backends`: what is registered and whether it runs here."""

from __future__ import annotations

import typer


def backends(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List every registered backend, available or not, and why."""
    import json

    from attnbench.backends.registry import BACKENDS

    rows = [(b.name, b.availability(), b.description) for b in BACKENDS.values()]
    if as_json:
        print(json.dumps([{"name": n, "available": a.ok, "reason": a.reason, "description": d} for n, a, d in rows],
                         indent=1))
        return
    width = max(len(n) for n, _, _ in rows)
    for name, avail, desc in rows:
        state = "available    " if avail.ok else "not available"
        print(f"{name:<{width}}  {state}  {avail.reason}  — {desc}")
