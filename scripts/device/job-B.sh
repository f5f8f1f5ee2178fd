# Device machine B: real-server runs of parity and GPQA (SmolLM2-135M, three backends side by
# side), the microbench grids, and serve-bench for FA3 vs attnbench-fa4 with the warm-up pass.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }

step smollm2; source scripts/device/smollm2.sh
step smollm2-servers
g="--model {model} --api chat --effort none --dataset mini --repeats 4 --max-tokens 256 --result-dir /tmp/res/gpqa-smollm2"
timeout -k 10 360 python3 scripts/device/with_servers.py --model /tmp/models/smollm2 --name smollm2 \
  --backends fa3,flashinfer,attnbench-fa4 --mem 0.1 --serve-arg=--max-num-seqs --serve-arg=64 \
  --log-dir /tmp/res/smollm2-logs -- \
  python3 -m attnbench parity {endpoints} --model {model} --hf-reference /tmp/models/smollm2 --result-dir /tmp/res/parity-smollm2 ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:fa3} --name fa3 $g ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:flashinfer} --name flashinfer $g ';;' \
  python3 -m attnbench gpqa --endpoint {endpoint:attnbench-fa4} --name attnbench-fa4 $g \
  2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -60
step microbench; timeout 545 bash scripts/device/microbench.sh /tmp/res/microbench 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -80
step serve-bench
cmd="python3 -m attnbench serve-bench --input 1000,8000 --output 1000,1 --num-prompts 256 --backends fa3,attnbench-fa4 --result-dir /tmp/res/serve-warm"
echo "$cmd" > /tmp/res/serve-warm-command.txt
timeout -k 10 -s INT 660 $cmd 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | grep -vE '^\[' | tail -60
step done
