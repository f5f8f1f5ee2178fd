# Device machine A (H100, 2026-11-24): the serving table and the end-to-end check in one
# serve-bench invocation, after quick checks of our kernel and its vLLM plugin.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }

step kernel-check
timeout -k 5 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_fa4_acceptance.py --junitxml /tmp/res/kernel-check-quick.xml 2>&1 | tail -25
step plugin-check; timeout 120 bash scripts/device/plugin-check.sh 2>&1 | tail -12
step serve-bench
cmd="python3 -m attnbench serve-bench --input 1000,8000 --output 1000,1 --num-prompts 256 --backends fa3,attnbench-fa4,flashinfer,fa4,fa2 --result-dir /tmp/res/serve"
echo "$cmd" > /tmp/res/serve-command.txt
timeout -k 10 -s INT 1500 $cmd 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -150
step vllm-compare
# (the client comparison that ran here is now scripts/device/frontend.sh over benchmarks/peer_clients.py)
step done
