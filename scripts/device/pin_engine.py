"""Give each vLLM engine-core process a core of its own, or undo it: the experiment behind the
serving-noise question of whether the engine core's CPU time varies from pass to pass because it
shares its cores with the API servers and the other server.

    python3 scripts/device/pin_engine.py pin --cores 10,11 --save /tmp/res/affinity.json
    python3 scripts/device/pin_engine.py restore --save /tmp/res/affinity.json

`pin` puts the engine-core processes (named VLLM::EngineCore by vLLM; sorted by pid) one per core
of --cores, every thread of them, and moves every other vLLM process's threads off those cores.
The affinities it replaced go to --save first, so `restore` can put them back. It prints what it
did, one line per process."""

import argparse
import json
import os
import sys
from pathlib import Path

ENGINE = "VLLM::EngineCor"  # /proc comm is cut to 15 characters


def vllm_processes(proc: str = "/proc") -> dict[int, str]:
    """pid -> name of every vLLM process: named VLLM::..., or running vllm."""
    out = {}
    for e in os.listdir(proc):
        if not e.isdigit():
            continue
        try:
            name = Path(proc, e, "comm").read_text().strip()
            cmd = Path(proc, e, "cmdline").read_bytes()
        except OSError:
            continue
        if name.startswith("VLLM") or b"vllm.entrypoints" in cmd:
            out[int(e)] = name
    return out


def threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def plan(procs: dict[int, str], cores: list[int], affinity: dict[int, set[int]]) -> dict[int, set[int]]:
    """The new affinity of each thread: engine cores one per core in pid order, the others off
    those cores (a thread left with no core keeps its own)."""
    engines = sorted(p for p, n in procs.items() if n.startswith(ENGINE))
    if len(engines) > len(cores):
        raise SystemExit(f"pin_engine: {len(engines)} engine-core processes but {len(cores)} cores in --cores")
    own = {e: {c} for e, c in zip(engines, cores)}
    new = {}
    for tid, cpus in affinity.items():
        pid = next((p for p in procs if tid in threads(p)), None)
        if pid in own:
            new[tid] = own[pid]
        else:
            new[tid] = (cpus - set(cores)) or cpus
    return new


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("pin", "restore"))
    ap.add_argument("--cores", default="", help="comma-separated cores, one per engine-core process (pin)")
    ap.add_argument("--save", required=True, help="JSON file of the affinities pin replaced")
    a = ap.parse_args(argv)
    if a.action == "restore":
        saved = json.loads(Path(a.save).read_text())
        for tid, cpus in saved.items():
            try:
                os.sched_setaffinity(int(tid), set(cpus))
            except OSError as e:
                print(f"pin_engine: thread {tid}: {e}", file=sys.stderr)
        print(f"pin_engine: restored {len(saved)} threads")
        return 0
    cores = [int(c) for c in a.cores.split(",") if c.strip()]
    if not cores:
        raise SystemExit("pin_engine: pin needs --cores, e.g. --cores 11")
    procs = vllm_processes()
    affinity = {t: os.sched_getaffinity(t) for p in procs for t in threads(p)}
    new = plan(procs, cores, affinity)
    tmp = Path(f"{a.save}.tmp")  # whole or not at all: restore must never read half a file
    tmp.write_text(json.dumps({t: sorted(c) for t, c in affinity.items()}))
    os.replace(tmp, a.save)
    for tid, cpus in new.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError as e:  # a thread that ended meanwhile
            print(f"pin_engine: thread {tid}: {e}", file=sys.stderr)
    for p, name in sorted(procs.items()):
        print(f"pin_engine: {p} {name}: cores {sorted(new.get(p, affinity.get(p, set())))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
