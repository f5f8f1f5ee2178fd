"""Stands in for `python -m attnbench` in runner tests (through $ATTNBENCH_RUN_PREFIX): writes one
ok serve record per backend into --result-dir, records the GPUs it saw, and fails on request:
backends in $FAKE_EXIT_FAIL exit 3, backends in $FAKE_RECORD_FAIL write a failed record and exit 0."""

import json
import os
import sys
from pathlib import Path

args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1]  # noqa: E731
result_dir = Path(value("--result-dir"))
backends = value("--backends").split(",")
print("fake attnbench:", " ".join(args))
for backend in backends:
    if backend in os.environ.get("FAKE_EXIT_FAIL", "").split(","):
        print(f"{backend}: server would not start", file=sys.stderr)
        sys.exit(3)
    failed = backend in os.environ.get("FAKE_RECORD_FAIL", "").split(",")
    record = {"schema_version": 1, "kind": "serve", "backend": backend, "status": "failed" if failed else "ok",
              "error": "engine died" if failed else None, "scenario": {"command": args[0]},
              "provenance": {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")},
              "output_throughput": 100.0}
    (result_dir / backend).mkdir(parents=True, exist_ok=True)
    (result_dir / backend / "serve-1x1.json").write_text(json.dumps(record))
