"""A stand-in for `vllm serve` with vLLM's process shape: it starts slowly, spawns an "engine"
child in its process group, then serves the scripted OpenAI server on --host/--port. Requests
for logprobs get the parity tests' tiny model (tests/parity/logprob_server.py), others scripted
tokens (FAKE_VLLM_TTFT, FAKE_VLLM_ITL).

Behaviour per attention backend from the environment, FAKE_VLLM_MODE_<BACKEND><FA VERSION> or
FAKE_VLLM_MODE_<BACKEND> (e.g. FAKE_VLLM_MODE_FLASH_ATTN3, FAKE_VLLM_MODE_FLASHINFER), else
FAKE_VLLM_MODE: ok | crash (exits 3 while starting) | hang (never healthy) | ignore-term (ignores
SIGTERM) | shift:X (adds X to the logprobs at prompt position 3). FAKE_VLLM_START_S: seconds
before it listens. FAKE_VLLM_PIDS: file that gets the pids. FAKE_VLLM_ARGS: file that gets each
command line as a JSON list. VLLM_CACHE_ROOT: where it leaves a compile cache, as vLLM does. With
--profiler-config, /start_profile and /stop_profile write a trace of gemm_bf16 (300 us a step) and
attention_<BACKEND><FA VERSION> (FAKE_VLLM_ATTN_US_<that>, default 450 us)."""

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from attnbench.serving.scripted_server import ScriptedServer  # noqa: E402
from tests.parity import logprob_server  # noqa: E402


class Script(logprob_server.Script):
    def reply(self, path, body, n):
        asks = body.get("logprobs") is not None or body.get("prompt_logprobs") is not None
        return super().reply(path, body, n) if asks else None


def main() -> None:
    args = sys.argv[1:]
    assert args[0] == "serve", args
    env = os.environ
    if env.get("FAKE_VLLM_ARGS"):
        with open(env["FAKE_VLLM_ARGS"], "a") as f:
            f.write(json.dumps(args) + "\n")
    opt = {args[i]: args[i + 1] for i in range(2, len(args) - 1) if args[i].startswith("--")}
    backend = opt.get("--attention-backend", "DEFAULT")
    key = backend + opt.get("--attention-config.flash_attn_version", "")
    mode = env.get(f"FAKE_VLLM_MODE_{key}") or env.get(f"FAKE_VLLM_MODE_{backend}") or env.get("FAKE_VLLM_MODE", "ok")
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if env.get("FAKE_VLLM_PIDS"):
        with open(env["FAKE_VLLM_PIDS"], "a") as f:
            f.write(f"{os.getpid()} {engine.pid}\n")
    print(f"INFO fake vllm: backend {key}, mode {mode}, args {args}, started at {time.time():.3f}", flush=True)
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:  # like vLLM: SIGTERM shuts the engine down, then the API server exits
        def shutdown(*_):
            engine.terminate()
            engine.wait()
            os._exit(0)

        signal.signal(signal.SIGTERM, shutdown)
    start_s = float(env.get("FAKE_VLLM_START_S", "0.5"))
    time.sleep(start_s / 2)  # "compiling" (into vLLM's compile cache) and "profiling", then the KV cache is taken
    if env.get("VLLM_CACHE_ROOT"):
        os.makedirs(os.path.join(env["VLLM_CACHE_ROOT"], "torch_compile_cache", "fake"), exist_ok=True)
    print(f"INFO {time.strftime('%m-%d %H:%M:%S')} [kv_cache_utils.py:1] GPU KV cache size: 4096 tokens (at {time.time():.3f})", flush=True)
    time.sleep(start_s / 2)
    if mode == "crash":
        print("ERROR fake vllm: CUDA error: no kernel image is available for execution on the device", flush=True)
        sys.exit(3)
    if mode == "hang":
        print("INFO fake vllm: capturing CUDA graphs ...", flush=True)
        time.sleep(600)
    shift = {3: float(mode.split(":")[1])} if mode.startswith("shift:") else {}
    script = Script(ttft_s=float(env.get("FAKE_VLLM_TTFT", "0.02")), itl_s=float(env.get("FAKE_VLLM_ITL", "0.002")),
                    model=opt.get("--served-model-name", args[1]), metrics=True, prefill_shift=shift)
    if "--profiler-config" in opt:  # vLLM's torch profiler: traces of `max_iterations` steps, its kernels named by backend
        profiler = json.loads(opt["--profiler-config"])
        script.profile_dir, script.profile_steps = profiler["torch_profiler_dir"], profiler["max_iterations"]
        script.profile_kernels = (("gemm_bf16", 300.0), (f"attention_{key}", float(env.get(f"FAKE_VLLM_ATTN_US_{key}", "450"))))
    print("INFO fake vllm: Application startup complete.", flush=True)
    ScriptedServer(script, host=opt.get("--host", "127.0.0.1"), port=int(opt["--port"])).serve_forever()


if __name__ == "__main__":
    main()
