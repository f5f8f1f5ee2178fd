"""Do other load generators measure the same server as attnbench does? Run attnbench and, when
installed, vLLM's benchmark client (`vllm bench serve`), guidellm and aiperf against one running
OpenAI-compatible server with the same load, interleaved round by round (so drift hits every
client alike), and print each metric's ratio attnbench/peer with its run-to-run spread.

    python benchmarks/peer_clients.py --endpoint http://127.0.0.1:8080 --model smollm2 \\
        --tokenizer /path/to/model-folder --input 128 --output 32 --num-prompts 16 --concurrency 4 \\
        --rounds 3 --out results/cpu/peer-clients

The peers' command lines follow vllm 0.26, guidellm 0.8.1 and aiperf 0.13.0; `--peer-arg
NAME=ARG` appends an argument to one client's command (repeatable), e.g.
--attnbench-arg=--prompt-format --attnbench-arg=text for a server that takes text only.
attnbench's own settings are clients too, so one suspect of a disagreement can be tested at a
time: `attnbench` (token-id prompts, no warm-up), `attnbench-text` (text prompts made as vLLM's
random dataset makes them), `attnbench-warm` (token ids after serve-bench's steady-state warm-up).
Around every run the server's /metrics is read, so each row also carries what the server measured
for that window: a reference common to every client. `--reference vllm` divides by vLLM's client.

Which client bends under load? `--scripted TTFT_MS,ITL_MS` (instead of `--endpoint`) runs the
rounds against attnbench's scripted server started for them (`--server-workers` processes), whose
timings are known: its row `script` is what a client should measure, and the ratios are divided
by it (script/client), e.g. `--scripted 50,16 --input 1000 --output 1000 --num-prompts 256
--concurrency 256` offers 256 / 16 ms = 16k tok/s.

See docs/peer-clients.md for a server to run this against on a CPU machine."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnbench import atomic, provenance, stats  # noqa: E402
from attnbench.serving import prometheus, scripted_server  # noqa: E402

METRICS = ("output_throughput", "mean_ttft_ms", "mean_tpot_ms")  # compared
SERVER = ("server_mean_ttft_ms", "server_mean_tpot_ms")  # what the server measured for the same window
COUNTS = ("completed", "failed")
# attnbench's settings that a disagreement may come from, one at a time (serve-bench's flags)
VARIANTS = {"attnbench": [], "attnbench-text": ["--prompt-format", "text"],
            "attnbench-warm": ["--warmup", "{num_prompts}", "--max-warmup-passes", "5"]}
CLIENTS = (*VARIANTS, "vllm", "guidellm", "aiperf")


# ---- what each client writes -> one dict of the compared metrics -----------------------------------

def parse_vllm(path: Path) -> dict:
    """`vllm bench serve --save-result` JSON; attnbench's serve records carry the same keys."""
    d = json.loads(Path(path).read_text())
    completed = int(d["completed"])
    failed = d.get("failed")
    if failed is None:  # older vLLM: only the request count
        failed = max(0, int(d.get("num_prompts", completed)) - completed)
    return {"completed": completed, "failed": int(failed), "output_throughput": float(d["output_throughput"]),
            "mean_ttft_ms": float(d["mean_ttft_ms"]), "mean_tpot_ms": float(d["mean_tpot_ms"])}


parse_attnbench = parse_vllm


def parse_guidellm(path: Path) -> dict:
    """guidellm's benchmarks JSON (first benchmark). Its `inter_token_latency_ms` is (last token -
    first token) / (tokens - 1) per request, what vLLM calls TPOT; its `time_per_output_token_ms`
    includes the first token's wait and is not compared."""
    bench = json.loads(Path(path).read_text())["benchmarks"][0]
    m = bench["metrics"]

    def ok(key: str) -> dict:
        return m[key]["successful"]

    totals = m.get("request_totals") or bench.get("request_totals") or {}
    completed = totals.get("successful", ok("request_latency").get("count"))
    failed = totals.get("errored", (m["request_latency"].get("errored") or {}).get("count", 0))
    return {"completed": int(completed), "failed": int(failed or 0),
            "output_throughput": float(ok("output_tokens_per_second")["mean"]),
            "mean_ttft_ms": float(ok("time_to_first_token_ms")["mean"]),
            "mean_tpot_ms": float(ok("inter_token_latency_ms")["mean"])}


def parse_aiperf(path: Path) -> dict:
    """aiperf's profile_export_aiperf.json. Its `inter_token_latency` is per request (latency -
    TTFT) / (tokens - 1), vLLM's TPOT."""
    d = json.loads(Path(path).read_text())
    errors = d.get("error_request_count")
    # request_count counts the successful requests (completed_request_count includes the failed)
    return {"completed": int(d["request_count"]["avg"]),
            "failed": int(errors["avg"]) if isinstance(errors, dict) else int(errors or 0),
            "output_throughput": float(d["output_token_throughput"]["avg"]),
            "mean_ttft_ms": float(d["time_to_first_token"]["avg"]),
            "mean_tpot_ms": float(d["inter_token_latency"]["avg"])}


PARSERS = {**{v: parse_attnbench for v in VARIANTS}, "vllm": parse_vllm, "guidellm": parse_guidellm,
           "aiperf": parse_aiperf}


# ---- the comparison --------------------------------------------------------------------------------

def spread_pct(values: list[float]) -> float:
    """Half the range over the mean, in percent: how far one run may sit from the middle."""
    mean = statistics.fmean(values)
    return 100 * (max(values) - min(values)) / (2 * mean) if mean else 0.0


def compare(runs: dict[str, list[dict]], reference: str = "attnbench") -> dict:
    """Per client: each metric's mean and spread over rounds, its requests lost; per other client:
    the ratio reference/client of each metric, paired round by round (mean, min, max, and the 95%
    t-interval on the log ratios)."""
    out = {"clients": {}, "ratios": {}}
    ok = {c: [r for r in rounds if "error" not in r] for c, rounds in runs.items()}
    for client, rounds in ok.items():
        out["clients"][client] = {
            "rounds": len(rounds), "failed_rounds": len(runs[client]) - len(rounds),
            "lost": sum(r["failed"] for r in rounds),
            **{k: {"mean": statistics.fmean(r[k] for r in rounds), "spread_pct": spread_pct([r[k] for r in rounds])}
               for k in METRICS + SERVER if all(r.get(k) is not None for r in rounds) and rounds}}
    for client, rounds in runs.items():
        pairs = [(a, b) for a, b in zip(runs.get(reference, []), rounds) if "error" not in a and "error" not in b]
        if client == reference or not pairs:
            continue
        out["ratios"][client] = {}
        for k in METRICS:
            ci = stats.ratio_ci([a[k] for a, _ in pairs], [b[k] for _, b in pairs], paired=True)
            out["ratios"][client][k] = {"mean": statistics.fmean(a[k] / b[k] for a, b in pairs),
                                        "min": min(a[k] / b[k] for a, b in pairs),
                                        "max": max(a[k] / b[k] for a, b in pairs),
                                        "ci_low": ci.ci_low, "ci_high": ci.ci_high, "ci": ci.method}
    return out


def format_table(result: dict, reference: str = "attnbench") -> str:
    server = any(k in c for c in result["clients"].values() for k in SERVER)
    head = "| client | rounds | lost | output tok/s | mean TTFT (ms) | mean TPOT (ms) |"
    lines = [head + (" server TTFT (ms) | server TPOT (ms) |" if server else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if server else "")]
    for client, c in result["clients"].items():
        cells = [f"{c[k]['mean']:.1f} ±{c[k]['spread_pct']:.0f}%" if k in c else "-"
                 for k in METRICS + (SERVER if server else ())]
        lines.append(f"| {client} | {c['rounds']} | {c['lost']} | " + " | ".join(cells) + " |")
    if result["ratios"]:
        lines += ["", f"| {reference} / client | output tok/s | mean TTFT | mean TPOT |", "|---|---:|---:|---:|"]
        for client, r in result["ratios"].items():
            cells = [f"{r[k]['mean']:.2f} ({r[k]['min']:.2f}-{r[k]['max']:.2f}{_ci(r[k])})" for k in METRICS]
            lines.append(f"| {client} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ci(r: dict) -> str:
    low, high = r.get("ci_low"), r.get("ci_high")
    return "" if low is None or low != low else f"; 95% CI {low:.2f}-{high:.2f}"


def scripted_truth(ttft_ms: float, itl_ms: float, num_prompts: int, concurrency: int, output: int) -> dict:
    """What a client should measure of the scripted server: each request's first token ttft after
    it arrives, then one every itl, so TPOT = itl. With c requests at a time the n requests run in
    ceil(n / c) waves of ttft + (output - 1) x itl each: output tok/s = n x output / that total."""
    waves = math.ceil(num_prompts / max(1, min(concurrency, num_prompts)))
    duration_s = waves * (ttft_ms + (output - 1) * itl_ms) / 1e3
    return {"completed": num_prompts, "failed": 0, "output_throughput": num_prompts * output / duration_s,
            "mean_ttft_ms": float(ttft_ms), "mean_tpot_ms": float(itl_ms)}


# ---- running the clients ---------------------------------------------------------------------------

def installed() -> list[str]:
    """attnbench always; the peers whose command is on PATH."""
    return [*VARIANTS] + (["vllm"] if _vllm_cli() else []) + [
        c for c in ("guidellm", "aiperf") if shutil.which(c)]


def _vllm_cli() -> list[str] | None:
    """vLLM's CLI through this Python when vllm imports here (its `vllm` script may name another
    interpreter), else the `vllm` on PATH."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    return ["vllm"] if shutil.which("vllm") else None


def command(client: str, a: argparse.Namespace, seed: int, out: Path) -> tuple[list[str], Path]:
    """The client's command line for one round and the file it writes its results to."""
    root = a.endpoint.rstrip("/").removesuffix("/v1")
    n, i, o, c = str(a.num_prompts), str(a.input), str(a.output), str(a.concurrency)
    extra = [v.split("=", 1)[1] for v in a.peer_arg if v.split("=", 1)[0] == client]
    if client in VARIANTS:
        cmd = [sys.executable, "-m", "attnbench", "serve-bench", "--endpoint", root, "--model", a.model,
               "--input", i, "--output", o, "--num-prompts", n, "--max-concurrency", c, "--warmup", "0",
               "--repeats", "1", "--seed", str(seed), "--name", "peer", "--result-dir", str(out),
               "--prompt-format", "token-ids", "--tokenizer", a.tokenizer]
        if a.vocab_size:
            cmd += ["--vocab-size", str(a.vocab_size)]
        cmd += [x.format(num_prompts=n) for x in VARIANTS[client]]  # later flags win
        return cmd + extra, out / "peer" / f"serve-{i}x{o}-r0.json"  # the one measured pass
    if client == "vllm":
        return ([*(_vllm_cli() or ["vllm"]), "bench", "serve", "--backend", "openai", "--base-url", root, "--endpoint", "/v1/completions",
                 "--model", a.model, "--tokenizer", a.tokenizer, "--dataset-name", "random",
                 "--random-input-len", i, "--random-output-len", o, "--num-prompts", n, "--max-concurrency", c,
                 "--ignore-eos", "--seed", str(seed), "--save-result", "--result-dir", str(out),
                 "--result-filename", "vllm.json", *extra], out / "vllm.json")
    if client == "guidellm":  # 0.8 takes its settings as a scenario file
        scenario = {"spec": {
            "backend": {"kind": "openai_http", "target": root, "model": a.model, "request_format": "/v1/completions",
                        "extras": {"body": {"ignore_eos": True, "min_tokens": a.output}}},
            "profile": {"kind": "concurrent", "streams": [a.concurrency]},
            "constraints": [{"kind": "max_requests", "count": a.num_prompts}],
            "tokenizer": {"kind": "huggingface_auto", "model": a.tokenizer},
            "data": [{"kind": "synthetic_text", "prompt_tokens": a.input, "output_tokens": a.output}],
            "seed": {"kind": "static", "value": seed},
            "outputs": [{"kind": "json", "path": str(out / "guidellm.json")}]}}
        atomic.write_json(out / "guidellm-scenario.json", scenario)
        return (["guidellm", "run", "--scenario", str(out / "guidellm-scenario.json"), "--disable-console-interactive",
                 *extra], out / "guidellm.json")
    if client == "aiperf":
        return (["aiperf", "profile", "--model", a.model, "--url", root, "--endpoint-type", "completions",
                 "--streaming", "--tokenizer", a.tokenizer, "--concurrency", c, "--request-count", n,
                 "--isl", i, "--isl-stddev", "0", "--osl", o, "--osl-stddev", "0",
                 "--extra-inputs", "ignore_eos:true", "--extra-inputs", f"min_tokens:{o}",
                 "--use-server-token-count",  # output tokens from the usage, as attnbench counts them
                 "--random-seed", str(seed), "--artifact-dir", str(out), "--ui-type", "none",
                 *extra], out / "profile_export_aiperf.json")
    raise ValueError(f"unknown client {client!r}")


def run_round(client: str, a: argparse.Namespace, seed: int, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cmd, result = command(client, a, seed, out)
    t0, start_unix = time.monotonic(), time.time()
    before = prometheus.scrape(a.endpoint)  # a warm-up inside the command is in the window too: see below
    with open(out / "client.log", "wb") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    server = prometheus.window_delta(before, prometheus.scrape(a.endpoint))
    if not result.is_file():
        tail = (out / "client.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{client} wrote no {result.name} (exit code {code}): {' / '.join(tail)}")
    res = PARSERS[client](result)
    if client in VARIANTS:  # serve-bench read /metrics around its measured pass alone
        obs = json.loads(result.read_text()).get("observation") or {}
        server = obs if obs.get("server_metrics") == "ok" else server
    elif server.get("server_requests") not in (None, res["completed"] + res["failed"]):
        server = {"server_metrics": "mixed"}  # the window held more than the measured requests
    return {**res, **{k: server.get(k) for k in SERVER}, "exit_code": code,
            "wall_s": round(time.monotonic() - t0, 2), "start_unix": round(start_unix, 2),
            "end_unix": round(time.time(), 2), "command": " ".join(cmd)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--endpoint", help="the server's base URL")
    where.add_argument("--scripted", metavar="TTFT_MS,ITL_MS",
                       help="run against attnbench's scripted server with these timings, started here")
    ap.add_argument("--server-workers", type=int, default=1, help="--scripted: the server's processes")
    ap.add_argument("--model", required=True, help="the served model name")
    ap.add_argument("--tokenizer", required=True, help="local folder with the model's tokenizer (the peers need one)")
    ap.add_argument("--input", type=int, default=128)
    ap.add_argument("--output", type=int, default=32)
    ap.add_argument("--num-prompts", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--vocab-size", type=int, default=None, help="attnbench's token-id range (default: detected)")
    ap.add_argument("--clients", default=None, help=f"comma-separated subset of {','.join(CLIENTS)} (default: installed)")
    ap.add_argument("--peer-arg", action="append", default=[], help="NAME=ARG appended to one client's command")
    ap.add_argument("--attnbench-arg", action="append", default=[], help="shorthand for --peer-arg attnbench=ARG")
    ap.add_argument("--out", type=Path, default=Path("results/cpu/peer-clients"))
    ap.add_argument("--report-only", action="store_true", help="re-read the rounds already under --out, run nothing")
    ap.add_argument("--reference", default=None,
                    help="the client the others are divided by (e.g. vllm; default attnbench, or script with --scripted)")
    a = ap.parse_args(argv)
    a.peer_arg += [f"attnbench={v}" for v in a.attnbench_arg]
    truth = None
    if a.scripted:
        try:
            ttft_ms, itl_ms = (float(v) for v in a.scripted.split(","))
        except ValueError:
            ap.error(f"--scripted {a.scripted!r}: give TTFT_MS,ITL_MS, e.g. --scripted 50,16")
        truth = scripted_truth(ttft_ms, itl_ms, a.num_prompts, a.concurrency, a.output)
    a.reference = a.reference or ("script" if truth else "attnbench")
    clients = a.clients.split(",") if a.clients else installed()
    earlier = json.loads((a.out / "comparison.json").read_text()) if a.report_only else None
    head = {k: earlier[k] for k in ("command", "provenance")} if earlier else {
        "command": " ".join([sys.executable, *sys.argv]), "provenance": provenance.collect()}
    with (scripted_server.spawned(ttft_ms / 1e3, itl_ms / 1e3, a.server_workers, a.model) if truth and not earlier
          else contextlib.nullcontext(a.endpoint)) as a.endpoint:
        runs = rounds(a, clients, head, truth, earlier)
    print(save(a, runs, head))


def rounds(a: argparse.Namespace, clients: list[str], head: dict, truth: dict | None = None,
           earlier: dict | None = None) -> dict[str, list[dict]]:
    """Every client once per round, in turn (or re-read from `earlier` rounds); with a scripted
    server its truth is the row "script"."""
    runs: dict[str, list[dict]] = ({"script": []} if truth else {}) | {c: [] for c in clients}
    for r in range(a.rounds):
        if truth:
            runs["script"].append(dict(truth))
        for client in clients:
            out = a.out / f"round{r}" / client
            if earlier:
                res = {**earlier["runs"][client][r], **PARSERS[client](command(client, a, r, out)[1])}
            else:
                try:
                    res = run_round(client, a, seed=r, out=out)
                except (RuntimeError, OSError) as e:  # one client failing must not cost the others' rounds
                    res = {"error": f"{type(e).__name__}: {e}"}
            runs[client].append(res)
            print(f"round {r} {client}: " + (f"failed: {res['error']}" if "error" in res else
                  f"{res['completed']} ok, {res['failed']} lost, " + ", ".join(f"{k} {res[k]:.2f}" for k in METRICS)),
                  file=sys.stderr, flush=True)
        save(a, runs, head)  # after every round: a job cut short keeps what it measured
    return runs


def save(a: argparse.Namespace, runs: dict[str, list[dict]], head: dict) -> str:
    result = compare(runs, a.reference)
    table = format_table(result, a.reference)
    atomic.write_json(a.out / "comparison.json", {**head, "load": vars(a) | {"out": str(a.out)}, "runs": runs, **result})
    atomic.write_text(a.out / "comparison.md", table + "\n")
    return table


if __name__ == "__main__":
    main()
