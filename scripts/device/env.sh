# Sourced by job scripts: the staged environment, attnbench installed (its vLLM plugin entry
# point must be visible to vLLM; from the directory the job runs in: /tmp/ab under launch.sh, the
# checkout in a direct call), caches on local disk.
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e "$PWD" >/tmp/pip-install.log 2>&1 \
  || { echo "env: pip install -e failed:"; tail -5 /tmp/pip-install.log; }
# A machine with part of the staging (a late call hands back the machine, and the next call's
# receive.sh finds 1 of 8 parts) stops the job here, before it spends minutes on failing steps.
python3 - <<'PY' || { echo "env: the staged packages are missing (run every .stage/pNN/receive.sh first); job stopped"; exit 3; }
import importlib, sys, torch
print("torch", torch.__version__, torch.cuda.get_device_name(0))
failed = []
for m in ("vllm", "flashinfer", "flash_attn.cute", "cutlass", "openai", "datasets", "attnbench"):
    try:
        mod = importlib.import_module(m); print("import", m, getattr(mod, "__version__", "ok"))
    except Exception as e:
        print("import", m, "FAILED:", type(e).__name__, e); failed.append(m)
sys.exit(3 if failed else 0)
PY
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
