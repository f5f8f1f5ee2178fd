"""Which records measure the same thing: the identity key of a record, so a baseline and a current
result tree can be lined up. Two records match when kind, backend and the scenario settings agree,
ignoring settings that differ between runs of one study without changing what is measured."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from attnbench.results.record import Record

# Run-specific scenario keys: where it ran, not what ran (an endpoint URL has a fresh port per run;
# seeds change the random prompts but not their lengths; served_model can be a local path).
RUN_SPECIFIC = frozenset({"result_dir", "seed", "endpoint", "served_model", "repeat", "log_path", "port",
                          "command", "utc_time", "cache_dir", "concurrency",
                          # how serve-bench laid the run out: repeats of one load, whatever the order
                          "repeats", "interleaved", "side_by_side", "layout", "client_cpus"})

# Scenario keys that name a record in a table, per kind (the rest is in the key but not shown).
LABEL_KEYS = {
    "serve": ("input_len", "output_len", "num_prompts", "request_rate", "max_concurrency"),
    "microbench": ("op", "q_heads", "kv_heads", "head_dim", "batch", "context", "seqlen", "q_len", "dtype"),
    "gpqa": ("model", "effort", "repeats"),
    "parity": ("model", "reference", "num_prompts"),
}

Key = tuple[str, str, str]  # (kind, backend, canonical JSON of the scenario settings)


def settings(record: Record) -> dict[str, Any]:
    return {k: v for k, v in record.scenario.items() if k not in RUN_SPECIFIC}


def key(record: Record) -> Key:
    return record.kind, record.backend, json.dumps(settings(record), sort_keys=True, default=str)


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
    keys = LABEL_KEYS.get(kind) or tuple(k for k, v in s.items() if isinstance(v, (int, float, str)))[:4]
    return " ".join(f"{k}={s[k]}" for k in keys if s.get(k) is not None) or "-"


def group(records: list[Record]) -> dict[Key, list[Record]]:
    """Records by identity key; several per key are repeats."""
    out: dict[Key, list[Record]] = defaultdict(list)
    for r in records:
        out[key(r)].append(r)
    return dict(out)
