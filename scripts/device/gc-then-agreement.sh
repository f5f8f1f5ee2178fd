# Two of the serving questions left open, in one 30-minute lease with staging (a partial first run,
# results/h200/gc-2026-12-03/, ruled the collector out of question 1; the full run still brings the
# served TPOT of attnbench-fa4 with the current tuning table beside fa3's, and its kernel profile):
# 1. Are the slow 1000:1000 passes the engine core's garbage collections? scenarios/h200-gc.toml
#    (fa3 and attnbench-fa4 side by side, 8 interleaved passes) with VLLM_GC_DEBUG=1, so vLLM logs
#    every collection and serve-bench puts each window's in its records (server_gc_*) and summary.md;
#    then a pass each with 20 engine steps under vLLM's torch profiler (profile-1000x1000.json).
# 2. agreement.sh: vLLM's client against attnbench with token-id and with text prompts on one fa3
#    server with one API-server process (its scripted-server steps come last and are cut first).
# Then, if KERNELS_BUDGET_S is set, what it leaves to the tuning sweep (kernels.sh part sweep), and
# if PROBE_HEADS is set, wide-gqa-probe.sh at those heads (~3 min).
#   GC_LIMIT_S=720 AGREEMENT_LIMIT_S=450 PROBE_HEADS=16/8/128 bash scripts/device/launch.sh gc-then-agreement.sh 480
# Results: /tmp/res/gc/ (serve/rep0/, manifest.json), agreement.sh's (/tmp/res/agreement/,
# /tmp/res/proc-cpu.csv), kernels.sh's (/tmp/res/fa4-sweep/) and the probe's (/tmp/res/wide-gqa/).
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }
limit=${GC_LIMIT_S:-720}
step "engine-core GC: VLLM_GC_DEBUG=1 attnbench run scenarios/h200-gc.toml within ${limit} s"
VLLM_GC_DEBUG=1 python3 -m attnbench run scenarios/h200-gc.toml --result-dir /tmp/res/gc \
  --run-timeout "$limit" --budget-s $(( limit + 30 )) &
run=$!
python3 scripts/device/follow_logs.py /tmp/res/gc --while $run --drop '^\s*$|^\['
wait $run; echo "attnbench run: exit $?"
grep -h -c "GC took" /tmp/res/gc/serve/rep0/*/server.log 2>/dev/null | paste -sd' ' | sed 's/^/GC lines per server log: /'
AGREEMENT_LIMIT_S="${AGREEMENT_LIMIT_S:-480}" bash scripts/device/agreement.sh
if [ -n "${KERNELS_BUDGET_S:-}" ]; then KERNELS_PARTS=sweep bash scripts/device/kernels.sh; fi
if [ -n "${PROBE_HEADS:-}" ]; then HEADS="$PROBE_HEADS" OUT=/tmp/res/wide-gqa bash scripts/device/wide-gqa-probe.sh; fi
step done
