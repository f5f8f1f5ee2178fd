"""vLLM 0.26.0 `vllm bench serve` client, reproduced: same connector/session settings, same task
creation (all tasks created in one synchronous `async for` over a non-sleeping get_request, then
gather), same request function (vLLM's endpoint_request_func.py, imported unchanged), same
preamble (one ready-check request on the session, two GETs of /metrics). Adds timestamps via an
aiohttp TraceConfig and a contextvar that names the request; all times are time.perf_counter()
(CLOCK_MONOTONIC, comparable with the server's log).

Variants (one change at a time): --trust-env 0, --uvloop, --prewarm (open N pooled connections
before the run), --procs P (split the requests over P processes, each its own loop, attnbench-like),
--no-trace (without the TraceConfig), --host localhost (DNS path), --no-preamble.
"""
import argparse, asyncio, contextlib, contextvars, importlib.util, json, os, random, sys, time
import multiprocessing as mp

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("erf", os.path.join(HERE, "vllm026_endpoint_request_func.py"))
erf = importlib.util.module_from_spec(spec); spec.loader.exec_module(erf)
import aiohttp
from tqdm.asyncio import tqdm

REQ = contextvars.ContextVar("REQ", default=None)
STAMPS: dict = {}

def _stamp(name):
    async def cb(session, ctx, params):
        tag = REQ.get()
        if tag is not None and name not in STAMPS[tag]:
            STAMPS[tag][name] = time.perf_counter()
    return cb

def trace_config():
    tc = aiohttp.TraceConfig()
    for ev, name in [("on_request_start", "req_start"), ("on_connection_queued_start", "queued_start"),
                     ("on_connection_queued_end", "queued_end"), ("on_connection_create_start", "conn_start"),
                     ("on_connection_create_end", "conn_end"), ("on_connection_reuseconn", "conn_reuse"),
                     ("on_request_headers_sent", "headers_sent"), ("on_request_chunk_sent", "body_sent"),
                     ("on_request_end", "resp_headers")]:
        getattr(tc, ev).append(_stamp(name))
    return tc

_orig_add_chunk = erf.StreamedResponseHandler.add_chunk
def _add_chunk(self, b):
    tag = REQ.get()
    if tag is not None and "first_bytes" not in STAMPS[tag]:
        STAMPS[tag]["first_bytes"] = time.perf_counter()
    return _orig_add_chunk(self, b)
erf.StreamedResponseHandler.add_chunk = _add_chunk

async def get_request(input_requests, request_rate=float("inf")):
    # vLLM 0.26 get_request with request_rate=inf: delay 0 for all, no await -> yields synchronously
    delay_ts = [0] * len(input_requests)
    start_ts = time.time()
    for i, r in enumerate(input_requests):
        if delay_ts[i] > 0:
            await asyncio.sleep(delay_ts[i])
        yield r, request_rate

async def lag_probe(out, period=0.001):
    while True:
        t = time.perf_counter()
        await asyncio.sleep(period)
        out.append((t, time.perf_counter() - t - period))

def make_prompt(rng, n):
    return " ".join(rng.choice(("alpha", "beta", "gamma", "delta", "omega", "kappa")) + str(rng.randrange(1000))
                    for _ in range(n))

async def run(a, tags, t0=None):
    api_url = f"http://{a.host}:{a.port}/v1/completions"
    base_url = f"http://{a.host}:{a.port}"
    mc = a.max_concurrency
    connector = aiohttp.TCPConnector(limit=mc or 0, limit_per_host=mc or 0, ttl_dns_cache=300, use_dns_cache=True,
                                     keepalive_timeout=60, enable_cleanup_closed=True, force_close=False, ssl=False)
    kw = {} if a.no_trace else {"trace_configs": [trace_config()]}
    session = aiohttp.ClientSession(connector=connector, trust_env=bool(a.trust_env),
                                    timeout=aiohttp.ClientTimeout(total=6 * 60 * 60), **kw)
    rng = random.Random(1234 + tags[0])
    inputs = [erf.RequestFuncInput(prompt=make_prompt(rng, a.prompt_len), api_url=api_url, prompt_len=a.prompt_len,
                                   output_len=a.max_tokens, model="scripted", model_name="scripted",
                                   ignore_eos=True, extra_body={"tag": t}) for t in tags]
    func = erf.async_request_openai_completions
    if not a.no_preamble:
        test = erf.RequestFuncInput(**{**inputs[0].__dict__, "extra_body": {"tag": -1}})
        o = await func(request_func_input=test, session=session)
        assert o.success, o.error
        for _ in range(2):  # fetch_spec_decode_metrics / fetch_diffusion_metrics
            async with session.get(f"{base_url}/metrics") as r:
                await r.text()
    if a.prewarm:
        warm = [erf.RequestFuncInput(**{**inputs[0].__dict__, "output_len": 1, "extra_body": {"tag": -2}})
                for _ in range(a.prewarm)]
        await asyncio.gather(*[func(request_func_input=w, session=session) for w in warm])
        await asyncio.sleep(0.5)
    pbar = tqdm(total=len(inputs), file=open(os.devnull, "w"))
    semaphore = asyncio.Semaphore(mc) if mc else contextlib.nullcontext()
    async def limited_request_func(request_func_input, session, pbar, tag):
        REQ.set(tag)
        STAMPS[tag] = {"task_start": time.perf_counter()}
        async with semaphore:
            return await func(request_func_input=request_func_input, session=session, pbar=pbar)
    lags = []
    probe = asyncio.ensure_future(lag_probe(lags))
    if t0 is not None:  # multi-process: start together
        while time.perf_counter() < t0:
            await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
    prof = None
    if a.profile:
        import cProfile
        prof = cProfile.Profile()
        asyncio.get_running_loop().call_later(a.profile, prof.disable)
        prof.enable()
    start = time.perf_counter()
    tasks = []
    async for inp, _ in get_request(inputs):
        tasks.append(asyncio.create_task(limited_request_func(inp, session, pbar, inp.extra_body["tag"])))
    created = time.perf_counter()
    outputs = await asyncio.gather(*tasks)
    dur = time.perf_counter() - start
    probe.cancel()
    await session.close()
    if prof is not None:
        prof.dump_stats(a.out + ".prof")
    recs = []
    for inp, o in zip(inputs, outputs):
        t = inp.extra_body["tag"]
        d = dict(STAMPS.get(t, {}))
        d.update(tag=t, success=o.success, ttft=o.ttft, st=o.start_time, latency=o.latency,
                 n_itl=len(o.itl), tpot=(o.latency - o.ttft) / max(1, a.max_tokens - 1), error=(o.error or "")[:200])
        recs.append(d)
    return {"start": start, "created": created, "dur": dur, "recs": recs, "lags": lags, "pid": os.getpid()}

def worker(a, tags, t0, q):
    if a.uvloop:
        import uvloop; res = uvloop.run(run(a, tags, t0))
    else:
        res = asyncio.run(run(a, tags, t0))
    q.put(res)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1"); ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--n", type=int, default=256); ap.add_argument("--max-concurrency", type=int, default=256)
    ap.add_argument("--prompt-len", type=int, default=1000); ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--trust-env", type=int, default=1); ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--prewarm", type=int, default=0); ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--no-trace", action="store_true"); ap.add_argument("--no-preamble", action="store_true")
    ap.add_argument("--profile", type=float, default=0.0, help="cProfile the first N seconds of the run")
    ap.add_argument("--te-noop", action="store_true",
                    help="trust_env=True, but the netrc and proxy lookups it runs in threads made trivial (the thread hops stay)")
    ap.add_argument("--te-inline", action="store_true",
                    help="trust_env=True with its real netrc/proxy lookups, but run inline on the loop thread (no thread hops)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.te_inline:
        import aiohttp.client as ac, types
        async def _inline_to_thread(func, *args, **kw):
            return func(*args, **kw)
        ac.asyncio = types.SimpleNamespace(**{k: getattr(asyncio, k) for k in dir(asyncio) if not k.startswith("__")})
        ac.asyncio.to_thread = _inline_to_thread
        _orig_rie = asyncio.BaseEventLoop.run_in_executor
        def _rie(self, executor, func, *args):
            if getattr(func, "__name__", "") == "_get_netrc_auth":
                fut = self.create_future(); fut.set_result(func(*args)); return fut
            return _orig_rie(self, executor, func, *args)
        asyncio.BaseEventLoop.run_in_executor = _rie
    if a.te_noop:
        import aiohttp.client as ac
        ac.ClientSession._get_netrc_auth = lambda self, host: None
        def _noproxy(url):
            raise LookupError("no proxy")
        ac.get_env_proxy_for_url = _noproxy
    if a.procs == 1:
        res = [asyncio.run(run(a, list(range(a.n)))) if not a.uvloop else __import__("uvloop").run(run(a, list(range(a.n))))]
    else:
        per = a.n // a.procs
        a.max_concurrency = per if a.max_concurrency else 0
        q = mp.get_context("fork").Queue()
        t0 = time.perf_counter() + 3.0
        ps = [mp.get_context("fork").Process(target=worker, args=(a, list(range(i * per, (i + 1) * per)), t0, q))
              for i in range(a.procs)]
        for p in ps: p.start()
        res = [q.get() for _ in ps]
        for p in ps: p.join()
    json.dump({"args": vars(a), "procs": res}, open(a.out, "w"))

if __name__ == "__main__":
    main()
