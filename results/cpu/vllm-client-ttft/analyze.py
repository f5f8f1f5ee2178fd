"""Summarise a harness run (+ the server's arrival log): TTFT as vLLM computes it (first parsed
token - st), and split into stages, per request: st -> connection ready -> headers/body written ->
server arrival -> (+ scripted ttft) first token written -> first bytes in the client."""
import glob, json, statistics as S, sys

def load_srv(logdir):
    arr = {}
    for f in glob.glob(f"{logdir}/srv_*.log"):
        for line in open(f):
            tag, t, pid = line.split(); tag = int(tag)
            if tag >= 0: arr[tag] = float(t)
    return arr

def ms(xs):
    xs = [x * 1e3 for x in xs if x is not None]
    if not xs: return "n/a"
    return f"mean {S.mean(xs):7.1f} med {S.median(xs):7.1f} std {S.pstdev(xs):6.1f} min {min(xs):7.1f} max {max(xs):7.1f}"

def main(path, logdir, ttft_s):
    d = json.load(open(path)); arr = load_srv(logdir)
    recs = [r for p in d["procs"] for r in p["recs"]]
    ok = [r for r in recs if r["success"]]
    print(f"{path}: {len(ok)}/{len(recs)} ok; args", {k: v for k, v in d["args"].items() if k not in ("out",)})
    for p in d["procs"]:
        lag = [l for t, l in p["lags"]]
        print(f"  pid {p['pid']}: create-tasks {1e3*(p['created']-p['start']):.1f} ms, dur {p['dur']:.3f} s, "
              f"max loop lag {1e3*max(lag or [0]):.1f} ms")
    print("  TTFT (vLLM: first token parsed - st)     ", ms([r["ttft"] for r in ok]))
    t0 = min(r["st"] for r in ok)
    def rel(key, ref):
        return [r[key] - r[ref] for r in ok if r.get(key) is not None and r.get(ref) is not None]
    for r in ok:
        if r["tag"] in arr: r["srv_arrival"] = arr[r["tag"]]
        r["first_token"] = r["st"] + r["ttft"]
        r["t0"] = t0
    conn_key = "conn_end" if any("conn_end" in r for r in ok) else "conn_reuse"
    for r in ok:
        r["conn_ready"] = r.get("conn_end", r.get("conn_reuse"))
    rows = [("st - first st (spread of st)", "st", "t0"),
            ("st -> connection ready", "conn_ready", "st"),
            ("connection ready -> body sent", "body_sent", "conn_ready"),
            ("st -> body sent (client side done)", "body_sent", "st"),
            ("body sent -> server arrival", "srv_arrival", "body_sent"),
            ("st -> server arrival", "srv_arrival", "st"),
            ("server arrival -> first bytes", "first_bytes", "srv_arrival"),
            ("first bytes -> first token parsed", "first_token", "first_bytes"),
            ("server arrival (abs, from first st)", "srv_arrival", "t0"),
            ("first token (abs, from first st)", "first_token", "t0"),
            ("TTFT from connection ready", "first_token", "conn_ready"),
            ("TTFT from server arrival", "first_token", "srv_arrival")]
    for name, k, ref in rows:
        print(f"  {name:40s}", ms(rel(k, ref)))
    tp = [r["tpot"] for r in ok]
    print(f"  TPOT (latency-ttft)/(n-1)               ", ms(tp))
    print(f"  scripted truth: TTFT {1e3*ttft_s:.1f} ms from server arrival")

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.05)
