"""Sample the CPU time of every vLLM process on the machine once a second, into a CSV a study can
cut by run window: unix time, pid, parent pid, name, utime+stime in clock ticks.

    python3 scripts/device/proc_cpu.py /tmp/res/proc-cpu.csv &

It runs until killed; rows are flushed each second, so a cut job keeps what was sampled."""

import os
import sys
import time


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


if __name__ == "__main__":
    main(sys.argv[1])
