"""A stand-in for `vllm serve` that answers parity requests with the scripted logprob model
(logprob_server.py) on --port. Per backend (FLASH_ATTN2, FLASH_ATTN3, FLASHINFER, ...) from the
environment: FAKE_PARITY_<KEY>=crash exits while starting, =shift:X adds X to the logprobs at
prompt position 3. FAKE_PARITY_ARGS: a file that gets each command line as a JSON list."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from tests.parity.logprob_server import LogprobServer, Script  # noqa: E402


def main() -> None:
    args = sys.argv[1:]
    assert args[0] == "serve", args
    if os.environ.get("FAKE_PARITY_ARGS"):
        with open(os.environ["FAKE_PARITY_ARGS"], "a") as f:
            f.write(json.dumps(args) + "\n")
    opt = {args[i]: args[i + 1] for i in range(2, len(args) - 1) if args[i].startswith("--")}
    key = opt.get("--attention-backend", "DEFAULT") + opt.get("--attention-config.flash_attn_version", "")
    mode = os.environ.get(f"FAKE_PARITY_{key}", "ok")
    print(f"INFO fake vllm: {key} {mode}", flush=True)
    if mode == "crash":
        print("ERROR fake vllm: CUDA error: no kernel image is available for execution on the device", flush=True)
        sys.exit(3)
    script = Script(model=opt.get("--served-model-name", args[1]))
    if mode.startswith("shift:"):
        script.prefill_shift = {3: float(mode.split(":")[1])}
    LogprobServer(script, port=int(opt["--port"])).serve_forever()


if __name__ == "__main__":
    main()
