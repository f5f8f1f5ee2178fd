# attnbench-fa4 with prefill on vLLM's pick (FA3 on SM90): the vLLM plugin's GPU tests, then fa3
# against ours side by side in the seed study's load (scenarios/seed-serve.toml, those two
# backends: one pair of servers, both shapes, 3-10 interleaved passes, then explain), then the
# agreement run (agreement.sh: its fa3 steps first). One job inside one 30-minute lease:
#   PAIR_LIMIT_S=660 AGREEMENT_LIMIT_S=720 bash scripts/device/launch.sh ours-vs-fa3-then-agreement.sh 540
# Results: /tmp/res/plugin-gpu.log, /tmp/res/pair/ (serve/rep0/, explain/rep0/, manifest.json),
# and agreement.sh's (/tmp/res/agreement/, /tmp/res/proc-cpu.csv).
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }
pair=${PAIR_LIMIT_S:-660}
step "vLLM plugin tests, GPU ones among them (150 s at most)"
timeout 150 python3 -m pytest -q -p no:cacheprovider -rA tests/kernels/test_vllm_plugin.py \
  > /tmp/res/plugin-gpu.log 2>&1
echo "exit $?"; tail -3 /tmp/res/plugin-gpu.log
step "fa3 against attnbench-fa4 within ${pair} s: attnbench run scenarios/seed-serve.toml --backends fa3,attnbench-fa4"
python3 -m attnbench run scenarios/seed-serve.toml --backends fa3,attnbench-fa4 --result-dir /tmp/res/pair \
  --run-timeout "$pair" --budget-s $(( pair + 60 )) &
run=$!
python3 scripts/device/follow_logs.py /tmp/res/pair --while $run --drop '^\s*$|^\[|^explain '
wait $run; echo "attnbench run: exit $?"
bash scripts/device/agreement.sh
step done
