"""Sample the CPU time of every vLLM process on the machine once a second, into a CSV a study can
cut by run window: unix time, pid, parent pid, name, utime+stime in clock ticks.

    python3 scripts/device/proc_cpu.py /tmp/res/proc-cpu.csv &
    python3 scripts/device/proc_cpu.py --report proc-cpu.csv[.gz] RUN_DIR/comparison.json

It runs until killed; rows are flushed each second, so a cut job keeps what was sampled. --report
prints each vLLM process's CPU (% of one core) during the measured part of every run of a
benchmarks/peer_clients.py comparison: the last `duration` seconds of the run's window (a vLLM
client spends the start of its window importing)."""

import csv
import gzip
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path


def vllm_procs():
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat") as f:
                data = f.read()
            with open(f"/proc/{e}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        name = data[data.index("(") + 1: data.rindex(")")]
        if not (name.startswith("VLLM") or b"vllm" in cmd):
            continue
        rest = data[data.rindex(")") + 2:].split()
        yield e, rest[1], name.replace(",", " "), int(rest[11]) + int(rest[12])


def main(path: str, interval_s: float = 1.0) -> None:
    with open(path, "a") as out:
        out.write(f"# clock ticks per second: {os.sysconf('SC_CLK_TCK')}\nunix,pid,ppid,name,ticks\n")
        while True:
            now = round(time.time(), 2)
            for pid, ppid, name, ticks in vllm_procs():
                out.write(f"{now},{pid},{ppid},{name},{ticks}\n")
            out.flush()
            time.sleep(interval_s)


def load(path: str) -> tuple[dict[str, list[tuple[float, int]]], dict[str, str], int]:
    """(pid -> [(unix, ticks)], pid -> name, the sampling machine's clock ticks per second)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        lines = f.read().splitlines()
    tck = next((int(line.rsplit(":", 1)[1]) for line in lines if line.startswith("# clock ticks")), 100)
    ticks, names = defaultdict(list), {}
    for r in csv.DictReader(line for line in lines if not line.startswith("#")):
        ticks[r["pid"]].append((float(r["unix"]), int(r["ticks"])))
        names[r["pid"]] = r["name"]
    return ticks, names, tck


def cpu_pct(samples: list[tuple[float, int]], t0: float, t1: float, tck: int) -> float | None:
    """CPU between the first and last sample inside [t0, t1], in % of one core (tck ticks/s = one core)."""
    inside = [s for s in samples if t0 <= s[0] <= t1]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) * 100 / tck


def report(csv_path: str, comparison: str, floor_pct: float = 5.0) -> None:
    ticks, names, tck = load(csv_path)
    root = Path(comparison).parent
    runs = json.loads(Path(comparison).read_text())["runs"]
    for client, rounds in runs.items():
        for i, r in enumerate(rounds):
            if "error" in r:
                continue
            result = root / f"round{i}" / client / ("vllm.json" if client == "vllm" else "peer/serve-1000x1000-r0.json")
            zipped = result.with_name(result.name + ".gz")
            duration = (json.loads(result.read_text())["duration"] if result.is_file() else
                        json.loads(gzip.open(zipped, "rt").read())["duration"] if zipped.is_file() else
                        r["end_unix"] - r["start_unix"])
            t1 = r["end_unix"] - 1
            busy = {f"{names[p]}:{p}": round(c) for p, s in ticks.items()
                    if (c := cpu_pct(s, t1 - duration + 1, t1, tck)) is not None and c >= floor_pct}
            print(f"{client} round {i} ({duration:.1f} s): " + ", ".join(f"{k} {v}%" for k, v in sorted(busy.items())))


if __name__ == "__main__":
    if sys.argv[1] == "--report":
        report(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1])
