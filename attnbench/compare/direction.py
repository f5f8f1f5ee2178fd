"""Which way is better for each metric: +1 higher is better, -1 lower is better, 0 unknown
(reported, never judged). What a record kind declares (records.kinds) first: every metric of
attnbench's own kinds is declared there. For the metrics of other records (a kind attnbench does
not write, a key added by hand), exact names, then name patterns, first match wins."""

from __future__ import annotations

import re

from attnbench.records import kinds
from attnbench.records.kinds import HIGHER, LOWER, UNKNOWN

EXACT = {  # names no kind declares (records.kinds declares every metric attnbench's own kinds write)
    "n_prompts": UNKNOWN,  # a count: what was done, not how well
    "ms": LOWER,
}

PATTERNS = [  # (regex searched in the name, direction); std_* is spread, not speed
    (r"^std_|^(measured|datasheet)_", UNKNOWN),  # the machine's roofline is not the kernel's speed
    (r"throughput|goodput|tok(en)?s?_per_s|tok_s|tflops|gbps|gb_s|accuracy|score|agreement|pct_|prefix|identical", HIGHER),
    (r"_ms$|_us$|_s$|latency|err|kl|delta|diff|dlogprob", LOWER),
]


def of(metric: str, kind: str | None = None) -> int:
    declared = kinds.metric(kind, metric)
    if declared is not None:
        return declared.direction
    if metric in EXACT:
        return EXACT[metric]
    for pattern, direction in PATTERNS:
        if re.search(pattern, metric):
            return direction
    return UNKNOWN
