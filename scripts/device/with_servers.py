"""Start one vLLM server per backend side by side on the one GPU (small models, a slice of the
memory each), run commands against all of them, stop them all.

    python3 scripts/device/with_servers.py --model /tmp/models/smollm2 --backends fa3,fa4,flashinfer \
        --mem 0.12 --serve-arg=--enforce-eager --log-dir /tmp/res/logs -- \
        attnbench parity {endpoints} --result-dir /tmp/res/parity

`{endpoints}` becomes `--endpoint fa3=http://127.0.0.1:PORT/v1 --endpoint fa4=...` (the servers
that came up), `{endpoint:NAME}` one server's URL, `{model}` the served model name."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from attnbench.backends import registry
from attnbench.models import embedded
from attnbench.serving.server import ServerFailed, ServerSpec, VllmServer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen3-0.6b")
    ap.add_argument("--name", default=None, help="served model name")
    ap.add_argument("--backends", required=True)
    ap.add_argument("--mem", type=float, default=0.12, help="--gpu-memory-utilization per server")
    ap.add_argument("--serve-arg", action="append", default=[])
    ap.add_argument("--log-dir", type=Path, default=Path("/tmp/res/logs"))
    ap.add_argument("--ready-timeout", type=float, default=600)
    ap.add_argument("commands", nargs="+", help="after --: commands separated by ';;'")
    a = ap.parse_args()
    path, _ = embedded.resolve(a.model)
    extra = ["--gpu-memory-utilization", str(a.mem), *a.serve_arg]
    if a.model in embedded.EMBEDDED:
        extra = ["--load-format", "dummy", *extra]
    name = a.name or (a.model if a.model in embedded.EMBEDDED else Path(a.model).name)
    servers = [VllmServer(ServerSpec(model=path, backend=registry.get(b), served_model_name=name,
                                     log_path=a.log_dir / f"{name}-{b}.log", extra_args=extra,
                                     ready_timeout_s=a.ready_timeout))
               for b in a.backends.split(",")]
    up = []
    try:
        for s in servers:
            s.start()

        def ready(s):
            try:
                s.wait_ready()
                return s
            except ServerFailed as e:
                print(f"with_servers: {e.reason}", *e.log_tail[-6:], sep="\n    ", flush=True)
                return None

        with ThreadPoolExecutor(len(servers)) as pool:
            up = [s for s in pool.map(ready, servers) if s]
        print("with_servers: up:", ", ".join(f"{s.label}={s.base_url}" for s in up), flush=True)
        endpoints = " ".join(f"--endpoint {s.label}={s.base_url}" for s in up)
        rc = 0
        for cmd in " ".join(a.commands).split(";;"):
            cmd = cmd.strip().replace("{endpoints}", endpoints).replace("{model}", name)
            for s in up:
                cmd = cmd.replace(f"{{endpoint:{s.label}}}", s.base_url)
            print(f"with_servers: $ {cmd}", flush=True)
            rc |= subprocess.call(shlex.split(cmd))
        return rc
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    sys.exit(main())
