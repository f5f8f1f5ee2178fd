# Is vLLM's API server what makes identical serving runs differ, and do attnbench and `vllm bench
# serve` agree once it is not? Part 1 is scenarios/h200-frontend.toml: two fa3 servers side by
# side, one with 1 API-server process and one with 4; on each, after a warm-up, 3 interleaved
# rounds of vLLM's client and attnbench, with /metrics around every run. Meanwhile every vLLM
# process's CPU time is sampled each second. Then, in the time left, serve-bench of fa3 and
# attnbench-fa4 with 4 API-server processes and 3 repeats (PART2_S, default 600; below 120 skipped).
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }
t_end=$(( $(date +%s) + ${JOB_LIMIT_S:-1500} ))
left() { echo $(( t_end - $(date +%s) )); }
{ nproc; free -g; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv; } \
  > /tmp/res/machine.txt 2>&1
python3 scripts/device/proc_cpu.py /tmp/res/proc-cpu.csv &
sampler=$!
part2=${PART2_S:-600}  # seconds kept for the serve-bench part; below 120 it is skipped
budget=$(( $(left) - part2 )); [ "$budget" -lt 60 ] && budget=60
step "frontend: scenarios/h200-frontend.toml, ${budget} s ($(left) s left)"
python3 -m attnbench run scenarios/h200-frontend.toml --result-dir /tmp/res/frontend --budget-s $budget 2>&1 | tail -60
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
