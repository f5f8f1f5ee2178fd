"""A stand-in for `vllm serve` with vLLM's process shape: it starts slowly, spawns an "engine"
child in its process group, then serves the scripted OpenAI server on --host/--port.

Behaviour per attention backend from the environment, e.g. FAKE_VLLM_MODE_FLASHINFER=crash:
ok | crash (exits 3 while starting) | hang (never healthy) | ignore-term (ignores SIGTERM).
FAKE_VLLM_START_S: seconds before it listens. FAKE_VLLM_PIDS: file that gets the pids."""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from attnbench.serving.scripted_server import Script, ScriptedServer  # noqa: E402


def main() -> None:
    args = sys.argv[1:]
    assert args[0] == "serve", args
    opt = {args[i]: args[i + 1] for i in range(2, len(args) - 1) if args[i].startswith("--")}
    backend = opt.get("--attention-backend", "DEFAULT")
    mode = os.environ.get(f"FAKE_VLLM_MODE_{backend}", os.environ.get("FAKE_VLLM_MODE", "ok"))
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if os.environ.get("FAKE_VLLM_PIDS"):
        with open(os.environ["FAKE_VLLM_PIDS"], "a") as f:
            f.write(f"{os.getpid()} {engine.pid}\n")
    print(f"INFO fake vllm: backend {backend}, mode {mode}, args {args}, started at {time.time():.3f}", flush=True)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:  # like vLLM: SIGTERM shuts the engine down, then the API server exits
        def shutdown(*_):
            engine.terminate()
            engine.wait()
            os._exit(0)

        signal.signal(signal.SIGTERM, shutdown)
    start_s = float(os.environ.get("FAKE_VLLM_START_S", "0.5"))
    time.sleep(start_s / 2)  # "profiling", then the KV cache is taken, then "CUDA graphs"
    print(f"INFO {time.strftime('%m-%d %H:%M:%S')} [kv_cache_utils.py:1] GPU KV cache size: 4096 tokens (at {time.time():.3f})", flush=True)
    time.sleep(start_s / 2)
    if mode == "crash":
        print("ERROR fake vllm: CUDA error: no kernel image is available for execution on the device", flush=True)
        sys.exit(3)
    if mode == "hang":
        print("INFO fake vllm: capturing CUDA graphs ...", flush=True)
        time.sleep(600)
    name = opt.get("--served-model-name", args[1])
    script = Script(ttft_s=float(os.environ.get("FAKE_VLLM_TTFT", "0.02")),
                    itl_s=float(os.environ.get("FAKE_VLLM_ITL", "0.002")), model=name)
    print("INFO fake vllm: Application startup complete.", flush=True)
    ScriptedServer(script, host=opt["--host"], port=int(opt["--port"])).serve_forever()


if __name__ == "__main__":
    main()
