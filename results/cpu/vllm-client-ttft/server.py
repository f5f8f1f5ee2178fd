"""attnbench's scripted server (unchanged), plus a per-request log of server-side arrival times.
Each request: one line "tag arrived_perf_counter pid" to $LOG_DIR/srv_<pid>.log, written in
Script.reply (called right after the body is parsed; the first token is written ttft_s after
`arrived`, which is taken just before the body is parsed)."""
import argparse, os, socket, sys, time, multiprocessing as mp
sys.path.insert(0, "/work/main")
from attnbench.serving.scripted_server import Script, ScriptedServer

LOG_DIR = os.environ.get("LOG_DIR", "/tmp/vct/srvlog")

class LoggingScript(Script):
    _f = None
    def reply(self, path, body, n):
        t = time.perf_counter()
        if self._f is None:
            os.makedirs(LOG_DIR, exist_ok=True)
            self._f = open(f"{LOG_DIR}/srv_{os.getpid()}.log", "a", buffering=1)
        self._f.write(f"{body.get('tag', -1)} {t:.6f} {os.getpid()}\n")
        return None

def serve(script, sock):
    ScriptedServer(script, sock=sock).serve_forever()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1"); ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft", type=float, default=0.05); ap.add_argument("--itl", type=float, default=0.016)
    ap.add_argument("--workers", type=int, default=1); ap.add_argument("--backlog", type=int, default=1024)
    ap.add_argument("--site-backlog", type=int, default=0,
                    help="override aiohttp SockSite's backlog (default 128, which re-listens the socket with 128)")
    a = ap.parse_args()
    if a.site_backlog:
        from aiohttp import web
        orig = web.SockSite.__init__
        def init(self, runner, sock, *, backlog=128, **kw):
            orig(self, runner, sock, backlog=a.site_backlog, **kw)
        web.SockSite.__init__ = init
    script = LoggingScript(ttft_s=a.ttft, itl_s=a.itl, model="scripted")
    sock = socket.socket(); sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((a.host, a.port)); sock.listen(a.backlog); sock.set_inheritable(True)
    print(f"scripted server on http://{a.host}:{sock.getsockname()[1]}/v1 (pid {os.getpid()})", flush=True)
    for _ in range(a.workers - 1):
        mp.get_context("fork").Process(target=serve, args=(script, sock), daemon=True).start()
    serve(script, sock)

if __name__ == "__main__":
    main()
