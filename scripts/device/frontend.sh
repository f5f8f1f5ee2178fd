# Is vLLM's API server what makes identical serving runs differ, and do attnbench and `vllm bench
# serve` agree once it is not? Two fa3 servers side by side, one with 1 API-server process and
# one with 4; on each, after a warm-up, 3 interleaved rounds of vLLM's client and attnbench
# (token ids; on the 4-process server also text prompts as vLLM's random dataset makes them), with
# /metrics around every run and every vLLM process's CPU time sampled each second. Then, in the
# time left, serve-bench of fa3 and attnbench-fa4 with 4 API-server processes and 3 repeats.
# API1_CLIENTS / API4_CLIENTS choose the clients per server (benchmarks/peer_clients.py --clients).
source scripts/device/env.sh
mkdir -p /tmp/res/frontend
step() { echo "=== $(date -u +%T) $*"; }
t_end=$(( $(date +%s) + ${JOB_LIMIT_S:-1500} ))
left() { echo $(( t_end - $(date +%s) )); }
{ nproc; free -g; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv; } \
  > /tmp/res/machine.txt 2>&1
python3 scripts/device/proc_cpu.py /tmp/res/proc-cpu.csv &
sampler=$!
tok=$(python3 -c "from attnbench.models import embedded; print(embedded.materialize('qwen3-0.6b'))")
load="--input 1000 --output 1000 --num-prompts 256"
warm() { echo "python3 -m attnbench serve-bench --endpoint {endpoint:$1} --model {model} $load --warmup 256 --max-warmup-passes 1 --repeats 1 --result-dir /tmp/res/frontend/warm-$1"; }
peers() { echo "python3 benchmarks/peer_clients.py --endpoint {endpoint:$1} --model {model} --tokenizer $tok $load --concurrency 256 --rounds 3 --clients $2 --reference vllm --out /tmp/res/frontend/$1"; }

step "frontend: fa3 with 1 and with 4 API-server processes, side by side ($(left) s left)"
part2=${PART2_S:-600}  # seconds kept for the serve-bench part; below 120 it is skipped
timeout -k 10 -s TERM $(( $(left) - part2 )) python3 scripts/device/with_servers.py \
  --backends fa3-api1=fa3,fa3-api4=fa3 --serve-arg-for fa3-api4=--api-server-count=4 --mem 0.45 \
  --log-dir /tmp/res/frontend/logs -- \
  $(warm fa3-api4) ";;" $(peers fa3-api4 "${API4_CLIENTS:-vllm,attnbench,attnbench-text}") ";;" \
  $(warm fa3-api1) ";;" $(peers fa3-api1 "${API1_CLIENTS:-vllm,attnbench}") 2>&1 | tail -60
echo "frontend exit ${PIPESTATUS[0]}"

[ "$part2" -lt 120 ] && { kill $sampler; step "done (no time kept for serve-bench)"; exit 0; }
step "serve-bench fa3, attnbench-fa4 with 4 API-server processes ($(left) s left)"
mkdir -p /tmp/res/serve-api4
cmd="python3 -m attnbench serve-bench --input 1000,8000 --output 1000,1 --num-prompts 256 --repeats 3 --backends fa3,attnbench-fa4 --serve-arg=--api-server-count=4 --result-dir /tmp/res/serve-api4"
echo "$cmd" > /tmp/res/serve-api4/command.txt
t0=$(date +%s)
timeout -k 20 -s INT $(( $(left) - 15 )) $cmd 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | grep -vE '^\[' | tail -80
echo "exit ${PIPESTATUS[0]}; wall $(( $(date +%s) - t0 )) s" | tee /tmp/res/serve-api4/wall.txt
kill $sampler
step done
