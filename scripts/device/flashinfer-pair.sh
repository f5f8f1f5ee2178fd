# attnbench-fa4 beside flashinfer (scenarios/h200-flashinfer-pair.toml: both seed shapes,
# interleaved, a profiled pass each, then explain) in one lease with staging, then, if PROBE_HEADS
# is set, wide-gqa-probe.sh at those heads (~4 min: the sweep's pdl and combine_warps refinements).
#   PAIR_LIMIT_S=1080 PROBE_HEADS=16/8/128 bash scripts/device/launch.sh flashinfer-pair.sh 540
# Results: /tmp/res/pair/ (serve/rep0/, explain/rep0/, manifest.json), the probe's /tmp/res/wide-gqa/.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }
limit=${PAIR_LIMIT_S:-1080}
step "attnbench-fa4 beside flashinfer: attnbench run scenarios/h200-flashinfer-pair.toml within ${limit} s"
python3 -m attnbench run scenarios/h200-flashinfer-pair.toml --result-dir /tmp/res/pair \
  --run-timeout "$limit" --budget-s $(( limit + 270 )) &
run=$!
python3 scripts/device/follow_logs.py /tmp/res/pair --while $run --drop '^\s*$|^\['
wait $run; echo "attnbench run: exit $?"
if [ -n "${PROBE_HEADS:-}" ]; then HEADS="$PROBE_HEADS" OUT=/tmp/res/wide-gqa bash scripts/device/wide-gqa-probe.sh; fi
step done
