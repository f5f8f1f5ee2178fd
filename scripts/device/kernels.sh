#!/usr/bin/env bash
# attnbench-fa4 on the H200: the tuning sweep over the decode grid (rewrites the tuning table),
# the decode-grid microbench of fa3, flashinfer, fa4 and attnbench-fa4, and compute-sanitizer on
# small shapes. Everything lands under /tmp/res/ (fa4-sweep/, microbench-kernels/, sanitizer/).
#
#   bash scripts/device/launch.sh kernels.sh 570        # then wait.sh calls, as for job-*.sh
#   KERNELS_PARTS="sweep" bash scripts/device/kernels.sh
#
# Parts (KERNELS_PARTS, default "sanitize sweep grid"; each fits one device session alone):
#   sanitize  the acceptance grid (tests/kernels/test_fa4_acceptance.py: correctness of every
#             variant), the launcher's and the vLLM plugin's tests, then memcheck, racecheck and
#             synccheck over the acceptance grid's -k sanitizer cases (tiny shapes, both the
#             fallback and the v3 ring, split and unsplit): ~4-6 min
#   sweep     python -m attnbench.microbench.fa4_sweep over scenarios/decode-grid.toml, one step
#             per head layout x page size (16/8/128 first: it carries the targets), --skip-measured
#             so a step cut short resumes where it stopped; each shape's winner goes into
#             attnbench/kernels/fa4_decode/tuning.json of this checkout at once (copied to
#             /tmp/res/fa4-sweep/tuning.json at the end: commit it): ~20 min in all
#   grid      attnbench microbench decode over the grid at heads 16/8/128 (fa3, flashinfer, fa4,
#             attnbench-fa4; attnbench-fa4 with the table the sweep just wrote), then 32/8/128 and
#             64/8/64 at batch 1, 32, 256 x context 2048, 32768: ~12 min
#
# Budget: the script stops starting steps after KERNELS_BUDGET_S (default 1500 s); each step runs
# under `timeout -k 10 -s INT LIMIT` with LIMIT cut to what the budget has left (a step with under
# 20 s left is skipped). SIGINT makes the sweep and microbench keep every finished shape on disk.
set -u
source scripts/device/env.sh
parts="${KERNELS_PARTS:-sanitize sweep grid}"
budget="${KERNELS_BUDGET_S:-1500}"
end=$((SECONDS + budget))
R=/tmp/res
mkdir -p "$R/fa4-sweep" "$R/microbench-kernels" "$R/sanitizer"
TABLE=attnbench/kernels/fa4_decode/tuning.json

run() {  # run LIMIT LOG CMD...: one step, its limit cut to the budget left, output to LOG and tail
  local want=$1 log=$2 left=$((end - SECONDS - 5)) t0=$SECONDS lim rc
  shift 2
  if ((left < 20)); then echo "=== budget spent, skipped: $*"; return; fi
  lim=$((want < left ? want : left))
  echo "=== $(date -u +%T) +${SECONDS}s (limit ${lim}s) $*"
  echo "\$ $*" >> "$log"
  timeout -k 10 -s INT "$lim" "$@" >> "$log" 2>&1
  rc=$?
  tail -n 12 "$log"
  echo "=== exit $rc after $((SECONDS - t0)) s"
}

has() { [[ " $parts " == *" $1 "* ]]; }

if has sanitize; then
  PT=(python3 -m pytest -q -p no:cacheprovider tests/kernels/test_fa4_acceptance.py)
  # correctness first (a short budget still checks a kernel change): the acceptance grid, then the
  # launcher's GPU tests (split plans, graph replay) and the vLLM plugin's (what its warm-up asks)
  run 300 "$R/sanitizer/acceptance.log" "${PT[@]}" --junitxml "$R/sanitizer/acceptance.xml"
  run 180 "$R/sanitizer/launcher-plugin.log" python3 -m pytest -q -p no:cacheprovider \
    tests/kernels/test_launcher.py tests/kernels/test_vllm_plugin.py
  # --report-api-errors no: the CUDA Python binding's cuGetProcAddress probes at import are host
  # API errors (34 of them on the H200), not kernel faults, and would set the exit code alone
  for tool in memcheck racecheck synccheck; do
    run 240 "$R/sanitizer/$tool.log" compute-sanitizer --tool "$tool" --report-api-errors no --error-exitcode 9 \
      "${PT[@]}" -k sanitizer
  done
fi

if has sweep; then
  S=(python3 -m attnbench.microbench.fa4_sweep --grid scenarios/decode-grid.toml --table "$TABLE" --skip-measured)
  for heads in 16/8/128 32/8/128 64/8/64; do
    for page in 16 128; do
      [[ $heads == 16/8/128 ]] || [[ $page == 16 ]] || continue  # page 128 of the others after
      run 420 "$R/fa4-sweep/sweep.log" "${S[@]}" --heads "$heads" --page-size "$page" \
        --out "$R/fa4-sweep/${heads//\//-}-p$page.json"
    done
  done
  for heads in 32/8/128 64/8/64; do
    run 300 "$R/fa4-sweep/sweep.log" "${S[@]}" --heads "$heads" --page-size 128 \
      --out "$R/fa4-sweep/${heads//\//-}-p128.json"
  done
  cp "$TABLE" "$R/fa4-sweep/tuning.json"
  git diff --stat -- "$TABLE" > "$R/fa4-sweep/tuning.diffstat" 2>/dev/null || true
fi

if has grid; then
  D=(python3 -m attnbench microbench decode --result-dir "$R/microbench-kernels/decode" --repeats 20)
  G=(--grid scenarios/decode-grid.toml --heads 16/8/128 --skip-measured)
  run 200 "$R/microbench-kernels/grid.log" "${D[@]}" --backends flashinfer "${G[@]}" --compile-only
  for b in fa3 flashinfer attnbench-fa4 fa4; do
    run 150 "$R/microbench-kernels/grid.log" "${D[@]}" --backends $b "${G[@]}" --precompile
  done
  for b in fa3 flashinfer attnbench-fa4 fa4; do
    run 90 "$R/microbench-kernels/grid.log" "${D[@]}" --backends $b --grid scenarios/decode-grid.toml \
      --heads 32/8/128,64/8/64 --batch 1,32,256 --context 2048,32768 --skip-measured
  done
  run 30 "$R/microbench-kernels/grid.log" python3 -m attnbench microbench summarize "$R/microbench-kernels/decode"
fi
echo "=== $(date -u +%T) +${SECONDS}s kernels.sh done (parts: $parts)"; ls -R "$R" | head -40
