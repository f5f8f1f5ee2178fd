# Device fragment (prepared, not yet run): parity across backends on real and random weights, the
# broken-attention check, and GPQA on SmolLM2 with paired comparisons. Results under /tmp/res/.
# Every parity run includes the null pass (fa3 restarted, prompts in another order) that sets its
# limits, and fa3 rescoring every continuation; summary.md lists the limits the null gave.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }
B=fa3,fa2,fa4,flashinfer,attnbench-fa4  # fa3 first: the reference
step smollm2; source scripts/device/smollm2.sh
step parity-smollm2
timeout -k 10 900 python3 -m attnbench parity --backends $B --model /tmp/models/smollm2 \
  --hf-reference /tmp/models/smollm2 --result-dir /tmp/res/parity-smollm2 2>&1 | tail -30
step parity-smollm2-text
timeout -k 10 900 python3 -m attnbench parity --backends $B --model /tmp/models/smollm2 --prompts text \
  --hf-reference off --result-dir /tmp/res/parity-smollm2-text 2>&1 | tail -30
step parity-qwen3-random
timeout -k 10 900 python3 -m attnbench parity --backends $B --model qwen3-0.6b --random-weights \
  --result-dir /tmp/res/parity-qwen3-random 2>&1 | tail -30
step parity-broken
ATTNBENCH_PARITY_MODEL=/tmp/models/smollm2 timeout -k 10 900 python3 -m pytest -q -s -m gpu \
  tests/parity/test_gpu.py -k broken 2>&1 | tail -30
step gpqa-smollm2
g="--model {model} --api chat --effort none --dataset mini --repeats 8 --max-tokens 256 --result-dir /tmp/res/gpqa-smollm2"
timeout -k 10 900 python3 scripts/device/with_servers.py --model /tmp/models/smollm2 --name smollm2 \
  --backends fa3,fa4,flashinfer,attnbench-fa4 --mem 0.1 --serve-arg=--max-num-seqs --serve-arg=64 \
  --log-dir /tmp/res/gpqa-smollm2-logs -- \
  python3 -m attnbench gpqa --endpoint {endpoint:fa3} --name fa3 $g ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:fa4} --name fa4 $g ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:flashinfer} --name flashinfer $g ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:attnbench-fa4} --name attnbench-fa4 $g \
  2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -40
cat /tmp/res/gpqa-smollm2/summary.md 2>/dev/null | head -30
step done
