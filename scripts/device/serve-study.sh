# The serving study on a fresh H200, scenarios/seed-serve.toml through `attnbench run`: four
# backends, both seed shapes, steady-state warm-up and 3 to 10 measured passes each (side by side
# and interleaved where the GPU has room), with the GPU, CPU and /metrics observations that the
# noise table in docs/serving-noise.md is made of; then explain over its records.
# STUDY_LIMIT_S (default 1440) stops serve-bench, which saves what it has (its run is "partial" in
# /tmp/res/manifest.json); EXPLAIN_S (default 300) is the time kept for explain after that.
# Results: /tmp/res/serve/rep0/ and /tmp/res/explain/rep0/ (each run's run.log there too),
# /tmp/res/manifest.json, /tmp/res/serve/wall.txt, /tmp/res/machine.txt, /tmp/res/metrics-*.txt.
source scripts/device/env.sh
mkdir -p /tmp/res/serve
step() { echo "=== $(date -u +%T) $*"; }
step machine
{ nproc; free -g; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv; } \
  > /tmp/res/machine.txt 2>&1; cat /tmp/res/machine.txt

# One raw /metrics text per backend while its server is up: the parser's fixture.
(
  for i in $(seq 1 400); do
    for log in /tmp/res/serve/rep0/*/server.log; do
      b=$(basename "$(dirname "$log")"); [ -s "/tmp/res/metrics-$b.txt" ] && continue
      port=$(grep -o -- '--port [0-9]*' "$log" 2>/dev/null | tail -1 | cut -d' ' -f2)
      [ -n "$port" ] && grep -q "GPU KV cache size" "$log" 2>/dev/null && sleep 60 && \
        curl -sf "http://127.0.0.1:$port/metrics" -o "/tmp/res/metrics-$b.txt.tmp" && \
        mv "/tmp/res/metrics-$b.txt.tmp" "/tmp/res/metrics-$b.txt"
    done
    sleep 5
  done
) &
fixtures=$!

limit=${STUDY_LIMIT_S:-1440}; explain=${EXPLAIN_S:-300}
step "serve-bench within ${limit} s, then explain: attnbench run scenarios/seed-serve.toml"
# --run-timeout replaces the scenario's limits (serve 1440 s, explain 300 s); the budget keeps
# EXPLAIN_S for explain once serve-bench is stopped
python3 -m attnbench run scenarios/seed-serve.toml --result-dir /tmp/res --run-timeout "$limit" \
  --budget-s $(( limit + explain )) &
run=$!
# whole lines as they come, so wait.sh shows progress; progress bars and explain's own lines left out
python3 scripts/device/follow_logs.py /tmp/res --while $run --drop '^\s*$|^\[|^explain '
wait $run; rc=$?
python3 - <<'PY' | tee /tmp/res/serve/wall.txt  # serve-bench's exit code and wall time, from the manifest
import json
try:
    serve = next(r for r in json.load(open("/tmp/res/manifest.json"))["runs"] if r["id"] == "serve")
    print(f"exit {serve['exit_code']}; wall {serve['duration_s'] or 0:.0f} s ({serve['status']})")
except (OSError, ValueError, KeyError, StopIteration) as e:
    print(f"no serve run in /tmp/res/manifest.json ({type(e).__name__}: {e})")
PY
echo "attnbench run: exit $rc"
kill $fixtures 2>/dev/null
step done
