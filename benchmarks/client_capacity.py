"""How fast the serve-bench client can go: stream from a local scripted server that offers more
tokens per second than any real server, and see what the client measures.

    python benchmarks/client_capacity.py --streams 256 --itl-ms 4 --tokens 400 --out results/cpu/client-capacity.json

The server offers streams / itl tokens/s (256 / 4 ms = 64,000 tok/s). The client keeps up when
the measured output throughput is close to the offered one and the measured ITL stays at the
scripted ITL (a client that falls behind shows larger, bunched-up gaps)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnbench import atomic, provenance  # noqa: E402
from attnbench.serving import client, metrics, scripted_server, workload  # noqa: E402


def run_once(base: str, streams: int, itl_s: float, tokens: int, workers: int) -> dict:
    prompts = workload.prompts(streams, 32, 1000, 0)
    reqs = [client.Request(p, tokens, 0.0) for p in prompts]
    t0 = time.process_time()
    results = client.run(client.ClientConfig(base, "scripted", workers=workers), reqs)
    m = metrics.compute(results)
    return {"client_workers": workers, "completed": m["completed"], "failed": m["failed"],
            "output_throughput": m["output_throughput"], "max_output_tokens_per_s": m["max_output_tokens_per_s"],
            "offered_tok_s": streams / itl_s, "scripted_itl_ms": itl_s * 1e3,
            "median_itl_ms": m["median_itl_ms"], "mean_itl_ms": m["mean_itl_ms"], "p99_itl_ms": m["p99_itl_ms"],
            "mean_tpot_ms": m["mean_tpot_ms"], "duration": m["duration"],
            "parent_cpu_s": time.process_time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=256)
    ap.add_argument("--itl-ms", type=float, default=4.0)
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--server-workers", type=int, default=1)
    ap.add_argument("--client-workers", default="1,2")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    with scripted_server.spawned(0.05, a.itl_ms / 1e3, workers=a.server_workers) as base:
        runs = [run_once(base, a.streams, a.itl_ms / 1e3, a.tokens, int(w)) for w in a.client_workers.split(",")]
    out = {"benchmark": "client-capacity", "streams": a.streams, "tokens_per_stream": a.tokens,
           "server_workers": a.server_workers, "cpu_count": os.cpu_count(), "runs": runs,
           "command": " ".join(sys.argv), "provenance": provenance.collect()}
    for r in runs:
        print(f"client workers {r['client_workers']}: {r['output_throughput']:8.0f} tok/s measured "
              f"(offered {r['offered_tok_s']:.0f}), median ITL {r['median_itl_ms']:.2f} ms "
              f"(scripted {r['scripted_itl_ms']:.2f}), p99 ITL {r['p99_itl_ms']:.2f} ms, failed {r['failed']}")
    if a.out:
        atomic.write_json(a.out, out)


if __name__ == "__main__":
    main()
