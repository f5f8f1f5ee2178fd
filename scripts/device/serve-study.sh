# The serving study on a fresh H200: four backends, both seed shapes, steady-state warm-up and
# three measured passes each (side by side and interleaved where the GPU has room), with the
# GPU, CPU and /metrics observations that the noise table in docs/serving-noise.md is made of.
source scripts/device/env.sh
mkdir -p /tmp/res/serve
step() { echo "=== $(date -u +%T) $*"; }
step machine
{ nproc; free -g; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv; } \
  > /tmp/res/machine.txt 2>&1; cat /tmp/res/machine.txt

# One raw /metrics text per backend while its server is up: the parser's fixture.
(
  for i in $(seq 1 400); do
    for log in /tmp/res/serve/*/server.log; do
      b=$(basename "$(dirname "$log")"); [ -s "/tmp/res/metrics-$b.txt" ] && continue
      port=$(grep -o -- '--port [0-9]*' "$log" 2>/dev/null | tail -1 | cut -d' ' -f2)
      [ -n "$port" ] && grep -q "GPU KV cache size" "$log" 2>/dev/null && sleep 60 && \
        curl -sf "http://127.0.0.1:$port/metrics" -o "/tmp/res/metrics-$b.txt.tmp" && \
        mv "/tmp/res/metrics-$b.txt.tmp" "/tmp/res/metrics-$b.txt"
    done
    sleep 5
  done
) &

step serve-bench
cmd="python3 -m attnbench serve-bench --input 1000,8000 --output 1000,1 --num-prompts 256 --repeats 3 --target-ci 0.03 --max-repeats 5 --backends fa3,flashinfer,fa4,attnbench-fa4 --result-dir /tmp/res/serve"
echo "$cmd" > /tmp/res/serve/command.txt
t0=$(date +%s)
timeout -k 20 -s INT "${STUDY_LIMIT_S:-1440}" $cmd 2>&1 | stdbuf -oL tr '\r' '\n' \
  | grep --line-buffered -vE '^\s*$|^\['   # whole lines as they come, so wait.sh shows progress
echo "exit ${PIPESTATUS[0]}; wall $(( $(date +%s) - t0 )) s" | tee /tmp/res/serve/wall.txt

# How much of each backend's TPOT its attention kernel explains, from the records just written
# (the engine's own TPOT over the repeats); EXPLAIN_S=0 skips it.
if [ "${EXPLAIN_S:-300}" -gt 0 ]; then
  step explain
  timeout -k 10 -s INT "${EXPLAIN_S:-300}" python3 -m attnbench explain /tmp/res/serve --shape 1000x1000 \
    --result-dir /tmp/res/explain 2>&1 | tr '\r' '\n' | grep -vE '^explain ' | tail -40
fi
step done
