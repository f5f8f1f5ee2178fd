# Where does the pass-to-pass spread of serving come from? scenarios/h200-noise.toml through
# `attnbench run`: one fa3 server; 8000:1 and 1000:1000 passes with vLLM's engine-core process as
# placed, then on a core of its own (pin_engine.py), then as placed again. NOISE_LIMIT_S (default
# 1200) is the study's budget. Results: /tmp/res/noise/<step>/rep0/ and its manifest.json.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }
step machine
{ nproc; free -g; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv; } \
  > /tmp/res/machine.txt 2>&1; cat /tmp/res/machine.txt
step "noise: attnbench run scenarios/h200-noise.toml within ${NOISE_LIMIT_S:-1200} s"
python3 -m attnbench run scenarios/h200-noise.toml --result-dir /tmp/res/noise --budget-s "${NOISE_LIMIT_S:-1200}" &
run=$!
python3 scripts/device/follow_logs.py /tmp/res/noise --while $run --drop '^\s*$|^\['
wait $run; echo "attnbench run: exit $?"
for d in /tmp/res/noise/*/rep0; do echo "$(basename "$(dirname "$d")"): $(grep -m1 '^| fa3 |' "$d/summary.md" 2>/dev/null | cut -c1-80)"; done
step done
