"""Absolute timeline of each stage (ms after the first st): p0/p10/p50/p90/p100 over requests."""
import json, sys
sys.path.insert(0, __import__("os").path.dirname(__file__))
from analyze import load_srv
d = json.load(open(sys.argv[1])); arr = load_srv(sys.argv[2])
recs = [r for p in d["procs"] for r in p["recs"] if r["success"]]
t0 = min(r["st"] for r in recs)
for r in recs:
    r["srv_arrival"] = arr.get(r["tag"]); r["first_token"] = r["st"] + r["ttft"]
keys = ["task_start", "st", "req_start", "queued_start", "queued_end", "conn_start", "conn_reuse", "conn_end",
        "headers_sent", "body_sent", "srv_arrival", "resp_headers", "first_bytes", "first_token"]
def q(xs, p): xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))]
print(f"{'stage':14s} {'n':>4s} " + " ".join(f"{p:>7s}" for p in ("p0", "p10", "p50", "p90", "p100")))
for k in keys:
    xs = [1e3 * (r[k] - t0) for r in recs if r.get(k) is not None]
    if xs: print(f"{k:14s} {len(xs):4d} " + " ".join(f"{q(xs, p):7.1f}" for p in (0, .1, .5, .9, 1)))
if len(sys.argv) > 3:  # loop lag over time
    for p in d["procs"]:
        big = [(1e3 * (t - t0), 1e3 * l) for t, l in p["lags"] if l > 0.005 and -50 < 1e3 * (t - t0) < 600]
        print("loop stalls >5ms (t_ms, stall_ms):", [(round(a), round(b)) for a, b in big])
