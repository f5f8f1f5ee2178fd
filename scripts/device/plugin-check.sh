#!/usr/bin/env bash
# Does vLLM find attnbench-fa4? On the H100 with vLLM staged and attnbench pip-installed (env.sh),
# from the repo root:
#   bash scripts/device/plugin-check.sh             # < 60 s: entry point, vLLM's plugin loader, the
#                                                   # CUSTOM class, vLLM's own selector on this GPU
#   bash scripts/device/plugin-check.sh --kernel    # + the backend's GPU tests: our kernel through
#                                                   # vLLM's packed cache, eager and CUDA-graph replay
#   bash scripts/device/plugin-check.sh --serve     # + `vllm serve --attention-backend CUSTOM` on the
#                                                   # embedded dummy Qwen3-0.6B, one completion (~2-4 min)
# Prints PASS/FAIL per step; exits non-zero if any step failed.
set -u
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 TOKENIZERS_PARALLELISM=false
fail=0 kernel=0 serve=0
for arg in "$@"; do
  case "$arg" in --kernel) kernel=1 ;; --serve) serve=1 ;; *) echo "unknown option $arg"; exit 2 ;; esac
done

python3 - <<'PY' || fail=1
import sys
from importlib.metadata import entry_points

def step(name, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + name + (f": {detail}" if detail else ""), flush=True)
    if not ok:
        sys.exit(1)

eps = [e for e in entry_points(group="vllm.general_plugins") if e.name == "attnbench_fa4"]
step("entry point vllm.general_plugins:attnbench_fa4 visible", bool(eps),
     eps[0].value if eps else "attnbench is not pip-installed here: pip install --no-deps --no-build-isolation -e .")

import torch
import vllm
from vllm.plugins import load_general_plugins
from vllm.v1.attention.backends.registry import AttentionBackendEnum
from attnbench.kernels.vllm_plugin import BACKEND_PATH

load_general_plugins()
path = AttentionBackendEnum.CUSTOM.get_path() if AttentionBackendEnum.CUSTOM.is_overridden() else None
step(f"vLLM {vllm.__version__} plugin loader registers CUSTOM", path == BACKEND_PATH, str(path))

cls = AttentionBackendEnum.CUSTOM.get_class()
step("CUSTOM resolves to our backend class", AttentionBackendEnum[cls.get_name()] is AttentionBackendEnum.CUSTOM,
     f"{cls.__module__}.{cls.__qualname__}")

from vllm.platforms import current_platform
from vllm.v1.attention.backends.fa_utils import is_fa_version_supported
from vllm.v1.attention.selector import AttentionSelectorConfig

step("FA4 (flash_attn.cute) usable for prefill", is_fa_version_supported(4))
chosen = current_platform.get_attn_backend_cls(
    AttentionBackendEnum.CUSTOM,
    AttentionSelectorConfig(head_size=128, dtype=torch.bfloat16, kv_cache_dtype="auto", block_size=16),
    num_heads=16)
step(f"vLLM's selector accepts it on {torch.cuda.get_device_name(0)} (Qwen3-0.6B shapes)",
     chosen == BACKEND_PATH, chosen)
PY

if [ "$fail" = 0 ] && [ "$kernel" = 1 ]; then
  timeout 240 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_vllm_plugin.py 2>&1 | tail -5
  if [ "${PIPESTATUS[0]}" = 0 ]; then echo "PASS backend tests (decode through vLLM's packed cache, CUDA-graph replay)";
  else echo "FAIL backend tests (output above)"; fail=1; fi
fi

if [ "$fail" = 0 ] && [ "$serve" = 1 ]; then
  log=$(mktemp /tmp/plugin-check-serve.XXXX.log)
  model=$(python3 -c "from attnbench.models.embedded import materialize; print(materialize('qwen3-0.6b'))")
  port=8765
  timeout 300 vllm serve "$model" --load-format dummy --attention-backend CUSTOM --max-model-len 4096 \
    --port "$port" --gpu-memory-utilization 0.5 >"$log" 2>&1 &
  pid=$!
  python3 - "$port" <<'PY'
import json, sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(280):
    try:
        urllib.request.urlopen(url + "/health", timeout=2); break
    except Exception:
        time.sleep(1)
models = json.load(urllib.request.urlopen(url + "/v1/models"))
body = json.dumps({"model": models["data"][0]["id"], "prompt": list(range(10, 60)), "max_tokens": 32,
                   "ignore_eos": True}).encode()
req = urllib.request.Request(url + "/v1/completions", body, {"Content-Type": "application/json"})
out = json.load(urllib.request.urlopen(req, timeout=60))
print("completion tokens:", out["usage"]["completion_tokens"])
PY
  served=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if [ "$served" = 0 ] && grep -q "attnbench-fa4: decode-only batches use" "$log" \
     && grep -q "attnbench-fa4: decode kernel ready" "$log"; then
    echo "PASS vllm serve --attention-backend CUSTOM ran our decode kernel (log $log)"
  else
    echo "FAIL vllm serve with CUSTOM (log $log):"; grep -iE "attnbench|error|Traceback" "$log" | tail -20; fail=1
  fi
fi
[ "$fail" = 0 ] && echo "plugin-check: PASS" || echo "plugin-check: FAIL"
exit "$fail"
