"""Stands in for `python -m attnbench` in runner tests (through $ATTNBENCH_RUN_PREFIX): writes one
ok serve record per backend into --result-dir, records the GPUs it saw, and fails on request:
backends in $FAKE_EXIT_FAIL exit 3, backends in $FAKE_RECORD_FAIL write a failed record and exit 0.

Backends in $FAKE_SLOW write their record (the partial results), start a child in their process
group, write "PID CHILD_PID" to RESULT_DIR/pids and sleep a minute; on SIGINT or SIGTERM they note
which in RESULT_DIR/terminated and exit 130, as attnbench saves what it has and stops. With
$FAKE_IGNORE_TERM set they ignore both (only SIGKILL stops them)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1]  # noqa: E731
result_dir = Path(value("--result-dir"))
backends = value("--backends").split(",")
listed = lambda env, backend: backend in os.environ.get(env, "").split(",")  # noqa: E731


def terminated(signum, frame):
    (result_dir / "terminated").write_text(f"{signal.Signals(signum).name}\n")
    sys.exit(130)


if any(listed("FAKE_SLOW", b) for b in backends):  # first thing, so a stop finds the handler in place
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN if os.environ.get("FAKE_IGNORE_TERM") else terminated)
print("fake attnbench:", " ".join(args), flush=True)

for backend in backends:
    if listed("FAKE_EXIT_FAIL", backend):
        print(f"{backend}: server would not start", file=sys.stderr)
        sys.exit(3)
    failed = listed("FAKE_RECORD_FAIL", backend)
    record = {"schema_version": 1, "kind": "serve", "backend": backend, "status": "failed" if failed else "ok",
              "error": "engine died" if failed else None, "scenario": {"command": args[0]},
              "provenance": {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")},
              "output_throughput": 100.0}
    (result_dir / backend).mkdir(parents=True, exist_ok=True)
    (result_dir / backend / "serve-1x1.json").write_text(json.dumps(record))
    if listed("FAKE_SLOW", backend):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        (result_dir / "pids").write_text(f"{os.getpid()} {child.pid}\n")
        time.sleep(60)
