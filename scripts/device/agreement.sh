# Do attnbench and `vllm bench serve` agree? scenarios/h200-agreement.toml through `attnbench run`:
# both clients against attnbench's scripted server of known timings (1 and 4 server processes),
# then vLLM's client, attnbench and attnbench-text on one fa3 server with one API-server process.
# Every vLLM process's CPU time is sampled once a second meanwhile (proc_cpu.py).
# AGREEMENT_LIMIT_S (default 1200) is the study's budget. Results: /tmp/res/agreement/<step>/rep0/,
# its manifest.json, /tmp/res/proc-cpu.csv.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }
step machine
{ nproc; free -g; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv; } \
  > /tmp/res/machine.txt 2>&1; cat /tmp/res/machine.txt
python3 scripts/device/proc_cpu.py /tmp/res/proc-cpu.csv &
sampler=$!
step "agreement: attnbench run scenarios/h200-agreement.toml within ${AGREEMENT_LIMIT_S:-1200} s"
python3 -m attnbench run scenarios/h200-agreement.toml --result-dir /tmp/res/agreement --budget-s "${AGREEMENT_LIMIT_S:-1200}" &
run=$!
python3 scripts/device/follow_logs.py /tmp/res/agreement --while $run --drop '^\s*$|^\['
wait $run; echo "attnbench run: exit $?"
kill $sampler 2>/dev/null
for f in /tmp/res/agreement/*/rep0/comparison.md; do echo "== $f"; cat "$f"; done
step done
