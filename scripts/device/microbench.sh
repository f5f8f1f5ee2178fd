#!/usr/bin/env bash
# The microbench grids on the H200, robust on a cold machine: scenarios/h200-microbench.toml through
# `attnbench run` (fa2, fa3, fa4 heuristic and --fa4-splits 1, flashinfer, attnbench-fa4; one
# backend per step, in order of importance: the reference decode and prefill shapes, flashinfer's
# JIT warm-up, the decode and prefill grids, other head layouts at a few corners, a ragged smoke,
# then summarize). Results under RESULT_DIR (default /tmp/res/microbench): decode/rep0/,
# prefill/rep0/ and smoke/rep0/ (each with summary.md, plots/, one JSON per backend), every step's
# run.log in STEP/rep0/, manifest.json.
#
#   bash scripts/device/launch.sh microbench.sh 540
#
# Budget: the whole job, env.sh included, ends within MICROBENCH_BUDGET_S (default 530 s; give it a
# 540 s slot): what is left after env.sh is the study's --budget-s. Each step's limit is cut to the
# budget left, the budget cuts from the end of the list, and its last 16 s are kept for the final
# `microbench summarize` (summary.md and plots from every JSON record), which runs whatever the
# steps before it left. A step stopped by its limit keeps every shape it finished.
set -u
t0=$SECONDS
out="${1:-/tmp/res/microbench}"
budget="${MICROBENCH_BUDGET_S:-530}"
source scripts/device/env.sh
left=$((budget - (SECONDS - t0)))
echo "=== $(date -u +%T) microbench: attnbench run scenarios/h200-microbench.toml within ${left} s"
python3 -m attnbench run scenarios/h200-microbench.toml --result-dir "$out" --budget-s "$left" &
run=$!
python3 scripts/device/follow_logs.py "$out" --while $run  # each step's lines as they come
wait $run; echo "attnbench run: exit $?"
echo "=== $(date -u +%T) microbench done (budget ${budget} s)"; ls -R "$out" | head -40
