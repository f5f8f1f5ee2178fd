"""Records lined up by what they measured, so a baseline and a current result tree can be compared.
The identity is declared with the record kinds (records.kinds.key: kind, backend and the scenario
settings, without the ones that differ between runs of one study); here it is grouped and named."""

from __future__ import annotations

import json
from collections import defaultdict

from attnbench.records import kinds
from attnbench.records.record import Record

# The identity is declared with the record kinds; compare lines records up by it.
RUN_SPECIFIC, Key, key, settings = kinds.RUN_SPECIFIC, kinds.Key, kinds.key, kinds.settings


def label(k: Key) -> str:
    """A short human name of the settings: '1000:1000 x256' for serve, 'k=v ...' otherwise."""
    kind, _, blob = k
    s = json.loads(blob)
    if isinstance(s.get("label"), str):  # the command named it (microbench shapes)
        return s["label"]
    if kind == "serve" and "input_len" in s and "output_len" in s:
        out = f"{s['input_len']}:{s['output_len']}"
        if s.get("num_prompts") is not None:
            out += f" x{s['num_prompts']}"
        for extra, word in (("request_rate", "rate"), ("max_concurrency", "conc")):
            if s.get(extra) is not None:
                out += f" {word}={s[extra]}"
        return out
    declared = kinds.get(kind)
    keys = (declared.label_keys if declared else ()) or tuple(k for k, v in s.items() if isinstance(v, (int, float, str)))[:4]
    return " ".join(f"{k}={s[k]}" for k in keys if s.get(k) is not None) or "-"


def group(records: list[Record]) -> dict[Key, list[Record]]:
    """Records by identity key; several per key are repeats."""
    out: dict[Key, list[Record]] = defaultdict(list)
    for r in records:
        out[key(r)].append(r)
    return dict(out)
