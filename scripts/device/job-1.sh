# Device session 1: the parts written blind (kernel, plugin, microbench adapters, parity/gpqa on
# real weights) get their first real run, so there is time to fix them before session 2.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }

step smollm2; source scripts/device/smollm2.sh
step plugin-check; timeout 180 bash scripts/device/plugin-check.sh 2>&1 | tail -30
step kernel-check
timeout 300 python3 -m attnbench.kernels.fa4_decode.check --out /tmp/res/kernel-check.json 2>&1 | tail -60
step microbench; timeout 420 bash scripts/device/microbench.sh /tmp/res/microbench 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -120
step smollm2-servers
timeout 600 python3 scripts/device/with_servers.py --model /tmp/models/smollm2 --name smollm2 \
  --backends fa2,fa3,fa4,flashinfer,attnbench-fa4 --mem 0.08 --serve-arg=--max-num-seqs --serve-arg=64 \
  --log-dir /tmp/res/smollm2-logs -- \
  python3 -m attnbench parity {endpoints} --model {model} --hf-reference /tmp/models/smollm2 --result-dir /tmp/res/parity-smollm2 ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:fa3} --name fa3 --model {model} --api chat --effort none --dataset mini --repeats 4 --max-tokens 256 --result-dir /tmp/res/gpqa-smollm2 ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:fa4} --name fa4 --model {model} --api chat --effort none --dataset mini --repeats 4 --max-tokens 256 --result-dir /tmp/res/gpqa-smollm2 ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:flashinfer} --name flashinfer --model {model} --api chat --effort none --dataset mini --repeats 4 --max-tokens 256 --result-dir /tmp/res/gpqa-smollm2 ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:fa2} --name fa2 --model {model} --api chat --effort none --dataset mini --repeats 4 --max-tokens 256 --result-dir /tmp/res/gpqa-smollm2 ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:attnbench-fa4} --name attnbench-fa4 --model {model} --api chat --effort none --dataset mini --repeats 4 --max-tokens 256 --result-dir /tmp/res/gpqa-smollm2 \
  2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -80
step done
