# Machine A: the kernel self-check (fast feedback), then issue 2's main run:
# four vLLM servers, two load shapes each.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }

step kernel-check
timeout 240 python3 -m attnbench.kernels.fa4_decode.check --out /tmp/res/kernel-check.json 2>&1

step serve-bench
cmd="attnbench serve-bench --input 1000,8000 --output 1000,1 --num-prompts 256 --backends fa2,fa3,fa4,flashinfer --result-dir /tmp/res/serve"
echo "$cmd" > /tmp/res/serve.command
timeout 1500 python3 -m attnbench ${cmd#attnbench } 2>&1 | tr '\r' '\n' | grep -v '^\s*$'
step done
