"""Table over rounds: per variant, each round's mean/median/std TTFT (vLLM's definition) and stage means."""
import glob, json, os, re, statistics as S, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from analyze import load_srv
prefix = sys.argv[1] if len(sys.argv) > 1 else "S"
runs = {}
for d in sorted(glob.glob(f"/tmp/vct/runs/{prefix}[0-9]*_*_1")):
    m = re.match(rf"{prefix}(\d+)_(.*)_1$", os.path.basename(d))
    if not m or not os.path.exists(f"{d}/res.json"): continue
    runs.setdefault(m.group(2), []).append(d)
def f(xs): return f"{1e3*S.mean(xs):6.1f}"
print(f"| variant | round: TTFT mean / median / std (ms) | st->body sent | body sent->srv arrival | srv arrival->1st token | SYN drops |")
print("|---|---|---|---|---|---|")
for name, ds in runs.items():
    cells, a, b, c, ov = [], [], [], [], []
    for d in ds:
        res = json.load(open(f"{d}/res.json")); arr = load_srv(f"{d}/srv")
        recs = [r for p in res["procs"] for r in p["recs"] if r["success"]]
        t = [r["ttft"] for r in recs]
        cells.append(f"{1e3*S.mean(t):.0f}/{1e3*S.median(t):.0f}/{1e3*S.pstdev(t):.0f}")
        a += [r["body_sent"] - r["st"] for r in recs if r.get("body_sent")]
        b += [arr[r["tag"]] - r["body_sent"] for r in recs if r.get("body_sent") and r["tag"] in arr]
        c += [r["st"] + r["ttft"] - arr[r["tag"]] for r in recs if r["tag"] in arr]
        ov.append(open(f"{d}/overflows.txt").read().split()[-1] if os.path.exists(f"{d}/overflows.txt") else "?")
    print(f"| {name} | {'; '.join(cells)} | {f(a) if a else 'n/a'} | {f(b) if b else 'n/a'} | {f(c)} | {','.join(ov)} |")
