#!/usr/bin/env bash
# attnbench-fa4 on the H200, in up to three parts, each a scenario run by `attnbench run` (each fits
# one device session alone); everything lands under /tmp/res/ (sanitizer/, fa4-sweep/,
# microbench-kernels/), each step in its own STEP/rep0/ with its run.log.
#
#   bash scripts/device/launch.sh kernels.sh 570        # then wait.sh calls, as for the other jobs
#   KERNELS_PARTS="sweep" bash scripts/device/kernels.sh
#
# Parts (KERNELS_PARTS, default "sanitize sweep grid"; they run in that order):
#   sanitize  scenarios/h200-kernels-sanitize.toml -> /tmp/res/sanitizer/: the acceptance grid
#             (tests/kernels/test_fa4_acceptance.py, acceptance/rep0/acceptance.xml), the launcher's
#             and the vLLM plugin's GPU tests, then compute-sanitizer memcheck, racecheck and
#             synccheck over the grid's -k sanitizer cases: ~8 min (2026-12-02: grid 196 s,
#             launcher and plugin over 138 s, each sanitizer ~25 s)
#   sweep     scenarios/h200-kernels-sweep.toml -> /tmp/res/fa4-sweep/: python -m
#             attnbench.microbench.fa4_sweep, one step per head layout x page size, its reports in
#             sweep/rep0/; each shape's winner goes into attnbench/kernels/fa4_decode/tuning.json of
#             this checkout at once, which this job copies to /tmp/res/fa4-sweep/tuning.json at the
#             end (commit it): ~20 min in all
#   grid      scenarios/h200-kernels-grid.toml -> /tmp/res/microbench-kernels/: attnbench
#             microbench decode of fa3, flashinfer, attnbench-fa4 (with the table the sweep just
#             wrote) and fa4 over the grid, records in decode/rep0/, then summarize: ~12 min
#
# Budget: KERNELS_BUDGET_S (default 1500 s) for all parts; each part gets what is left of it as its
# --budget-s (a part with under 20 s left is skipped). Within a part, a step's limit is cut to the
# budget left, and the step in flight when it ends gets SIGINT (the sweep and microbench keep every
# finished shape on disk) and the rest are skipped: /tmp/res/PART_DIR/manifest.json says which.
set -u
source scripts/device/env.sh
parts="${KERNELS_PARTS:-sanitize sweep grid}"
budget="${KERNELS_BUDGET_S:-1500}"
end=$((SECONDS + budget))
TABLE=attnbench/kernels/fa4_decode/tuning.json
declare -A DIR=([sanitize]=sanitizer [sweep]=fa4-sweep [grid]=microbench-kernels)
for part in $parts; do
  [[ -n "${DIR[$part]:-}" ]] || echo "=== unknown part $part (the parts: sanitize sweep grid), left out"
done

for part in sanitize sweep grid; do
  [[ " $parts " == *" $part "* ]] || continue
  out="/tmp/res/${DIR[$part]}" left=$((end - SECONDS))
  if ((left < 20)); then echo "=== budget spent, skipped: $part"; continue; fi
  echo "=== $(date -u +%T) +${SECONDS}s $part: attnbench run scenarios/h200-kernels-$part.toml within ${left} s"
  python3 -m attnbench run "scenarios/h200-kernels-$part.toml" --result-dir "$out" --budget-s "$left" &
  run=$!
  python3 scripts/device/follow_logs.py "$out" --while $run  # each step's lines as they come
  wait $run; echo "=== $part: attnbench run exit $?"
  if [[ $part == sweep ]]; then
    mkdir -p "$out" && cp "$TABLE" "$out/tuning.json"
    git diff --stat -- "$TABLE" > "$out/tuning.diffstat" 2>/dev/null || true
  fi
done
echo "=== $(date -u +%T) +${SECONDS}s kernels.sh done (parts: $parts)"; ls -R /tmp/res | head -40
