"""attnbench's client against `vllm bench serve` on the same running server (issue 2's 3% check):
one fa3 server, the same load (random 1000:1000 x 256, all at once, ignore_eos), the two clients
alternated twice so drift shows.

    python3 scripts/device/vllm_bench_compare.py --backend fa3 --out /tmp/res/vllm-compare"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from attnbench import atomic
from attnbench.backends import registry
from attnbench.models import embedded
from attnbench.results import record
from attnbench.serving.server import ServerSpec, running

KEYS = ("output_throughput", "mean_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "mean_itl_ms", "total_token_throughput")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="fa3")
    ap.add_argument("--input", type=int, default=1000)
    ap.add_argument("--output", type=int, default=1000)
    ap.add_argument("--num-prompts", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--summarize", action="store_true", help="only compare the rounds already under --out")
    a = ap.parse_args()
    if a.summarize:
        return summarize(a.out)
    path, _ = embedded.resolve("qwen3-0.6b")
    spec = ServerSpec(model=path, backend=registry.get(a.backend), served_model_name="qwen3-0.6b",
                      log_path=a.out / "server.log", extra_args=["--load-format", "dummy"])
    rows = []
    with running(spec) as server:
        base = server.base_url.removesuffix("/v1")
        for i in range(a.rounds):
            ours = a.out / f"attnbench-{i}"
            cmd = [sys.executable, "-m", "attnbench", "serve-bench", "--endpoint", server.base_url, "--name", a.backend,
                   "--model", "qwen3-0.6b", "--input", str(a.input), "--output", str(a.output),
                   "--num-prompts", str(a.num_prompts), "--seed", str(i), "--result-dir", str(ours)]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            rec = [r for r in record.load(ours) if r.kind == "serve"][0]
            rows.append({"client": "attnbench", "round": i, "command": " ".join(cmd),
                         **{k: rec.metrics[k] for k in KEYS}})
            theirs = a.out / f"vllm-{i}"
            cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", "--backend", "vllm",
                   "--base-url", base, "--endpoint", "/v1/completions", "--model", "qwen3-0.6b", "--tokenizer", path,
                   "--dataset-name", "random", "--random-input-len", str(a.input), "--random-output-len", str(a.output),
                   "--num-prompts", str(a.num_prompts), "--ignore-eos", "--seed", str(i), "--save-result",
                   "--result-dir", str(theirs), "--result-filename", "vllm.json", "--disable-tqdm"]
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            res = json.loads((theirs / "vllm.json").read_text())
            rows.append({"client": "vllm bench serve", "round": i, "command": " ".join(cmd),
                         **{k: res.get(k) for k in KEYS}})
    mean = {c: {k: sum(r[k] for r in rows if r["client"] == c) / a.rounds for k in KEYS}
            for c in ("attnbench", "vllm bench serve")}
    diff = {k: 100.0 * (mean["attnbench"][k] / mean["vllm bench serve"][k] - 1.0) for k in KEYS}
    atomic.write_json(a.out / "compare.json", {"backend": a.backend, "rows": rows, "mean": mean,
                                                "attnbench_vs_vllm_pct": diff})
    for k in KEYS:
        print(f"{k:<24} attnbench {mean['attnbench'][k]:10.2f}  vllm {mean['vllm bench serve'][k]:10.2f}  "
              f"diff {diff[k]:+.2f}%")


def summarize(out: Path) -> None:
    """Pair each `vllm bench serve` round with the attnbench round that ran right after it (both
    on a warm server: the first round after a start is slower for either client)."""
    rows = []
    for i in range(100):
        ours, theirs = out / f"attnbench-{i}", out / f"vllm-{i}" / "vllm.json"
        if ours.exists():
            rec = [r for r in record.load(ours) if r.kind == "serve"][0]
            rows.append({"client": "attnbench", "round": i, **{k: rec.metrics[k] for k in KEYS}})
        if theirs.exists():
            res = json.loads(theirs.read_text())
            rows.append({"client": "vllm bench serve", "round": i, **{k: res.get(k) for k in KEYS}})
    pairs = [(v, a) for v in rows if v["client"] == "vllm bench serve"
             for a in rows if a["client"] == "attnbench" and a["round"] == v["round"] + 1]
    result = {"rows": rows, "pairs": [{"vllm_round": v["round"], "attnbench_round": a["round"],
                                        "attnbench_vs_vllm_pct": {k: 100.0 * (a[k] / v[k] - 1.0) for k in KEYS}}
                                       for v, a in pairs]}
    atomic.write_json(out / "compare.json", result)
    for r in rows:
        print(f"{r['client']:<17} round {r['round']}: " + "  ".join(f"{k} {r[k]:.2f}" for k in KEYS))
    for p in result["pairs"]:
        print(f"attnbench round {p['attnbench_round']} vs vllm round {p['vllm_round']}: "
              + "  ".join(f"{k} {d:+.1f}%" for k, d in p["attnbench_vs_vllm_pct"].items()))


if __name__ == "__main__":
    main()
