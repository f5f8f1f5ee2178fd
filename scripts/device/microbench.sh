#!/usr/bin/env bash
# The microbench grids on the GPU, robust on a cold machine: fa2, fa3, fa4 (heuristic and --fa4-splits 1),
# flashinfer and attnbench-fa4; results under $1 (decode/ and prefill/, each with summary.md,
# plots/, one JSON per backend).
#
# Budget: the whole script ends within MICROBENCH_BUDGET_S (default 530 s; give it a 540 s slot).
# Every step is one `attnbench microbench` process for ONE backend (a backend that compiles for
# minutes or hangs costs only its own step), under `timeout -k 5 -s INT LIMIT`, where LIMIT is the
# step's own limit cut to what the budget has left; a step with under 12 s left is skipped.
# The last 20 s are kept for `microbench summarize` (summary.md and plots from every JSON record).
# Steps run in order of importance, so whatever the budget cuts is the least needed:
#   1. the reference decode shapes (B256 x 2048, B1 x 32768, heads 16/8/128), per backend:
#      fa3 45, fa4 75, attnbench-fa4 75, fa2 45, fa4 --fa4-splits 1 60 s
#   2. the reference prefill shape (B8 x 8192, causal): fa3 40, fa4 60, fa2 40 s
#   3. flashinfer: JIT warm-up (--compile-only) decode 200 s, then its decode shapes 45 s;
#      warm-up prefill 150 s, then its prefill shape 45 s
#   4. the decode grid, heads 16/8/128, the shapes above left out (--skip-measured):
#      fa3, fa4, attnbench-fa4, flashinfer, fa2 60 s each, fa4-splits1 45 s
#   5. the prefill grid, heads 16/8/128: fa3, fa4, flashinfer, fa2 45 s each
#   6. other head layouts (32/8/128, 64/8/64) at a few corners: decode 30 s, prefill 25 s per backend
#   7. correctness smoke on ragged decode (and q_len 3 for the backends that take it): 25 s each
#   8. summarize (20 s)
# Limits add up to far more than the budget on purpose: on a warm machine steps end well before
# their limits; on a cold one the budget cuts from the end of the list.
#
# Compilation is kept out of the timed numbers: the steps of 1-3 pass --precompile (first call of
# every backend x shape, printed as "compiled <backend> on <shape> in N s", before anything is
# timed); later steps print "compiled ..." for any first call over 2 s, and every record keeps its
# first_call_s. FlashInfer's JIT builds land in its on-disk cache, so the warm-up step pays for
# them once; the CuTe DSL kernels (fa4, attnbench-fa4) are cached per process only, so their
# first step is at the same time their warm-up (generous limit) and their measurement.
#
# A step past its limit gets SIGINT: attnbench records the backend x shape in flight as
# "interrupted", writes summary.md and plots, and exits 130 within ~2 s even when stuck in native
# code (nvcc, a CuTe compile); SIGKILL follows 5 s later. Each record is written (atomically) the
# moment it exists, so even SIGKILL loses only the shape in flight.
set -u
out="${1:?usage: microbench.sh RESULT_DIR}"
budget="${MICROBENCH_BUDGET_S:-530}"
steps_end=$((SECONDS + budget - 20))
mkdir -p "$out"

mb() {  # mb LIMIT ARGS...: one microbench process, its limit cut to the budget left
  local want=$1 left=$((steps_end - SECONDS - 6)) t0=$SECONDS lim rc
  shift
  if ((left < 12)); then echo "=== budget spent, skipped: microbench $*"; return; fi
  lim=$((want < left ? want : left))
  echo "=== $(date -u +%T) +${SECONDS}s microbench (limit ${lim}s) $*"
  timeout -k 5 -s INT "$lim" python3 -m attnbench microbench "$@"
  rc=$?
  echo "=== exit $rc after $((SECONDS - t0)) s"
}

D=(decode --result-dir "$out/decode" --repeats 20)
P=(prefill --result-dir "$out/prefill" --repeats 10)
Q=(--heads 16/8/128)
KD=(--shapes 256x2048,1x32768 "${Q[@]}" --precompile)   # the reference decode shapes
KP=(--shapes 8x8192 --context 0 "${Q[@]}" --precompile)  # the reference prefill shape
GD=(--grid scenarios/decode-grid.toml "${Q[@]}" --skip-measured)
GP=(--grid scenarios/prefill-grid.toml "${Q[@]}" --skip-measured)

# 1. the reference decode shapes, one backend per process
mb 45 "${D[@]}" --backends fa3 "${KD[@]}"
mb 75 "${D[@]}" --backends fa4 "${KD[@]}"
mb 75 "${D[@]}" --backends attnbench-fa4 "${KD[@]}"
mb 45 "${D[@]}" --backends fa2 "${KD[@]}"
mb 60 "${D[@]}" --backends fa4 --fa4-splits 1 "${KD[@]}"

# 2. the reference prefill shape
mb 40 "${P[@]}" --backends fa3 "${KP[@]}"
mb 60 "${P[@]}" --backends fa4 "${KP[@]}"
mb 40 "${P[@]}" --backends fa2 "${KP[@]}"

# 3. flashinfer: its JIT builds (nvcc, minutes on a fresh machine) in a warm-up step of their own
mb 200 "${D[@]}" --backends flashinfer "${KD[@]}" --compile-only
mb 45  "${D[@]}" --backends flashinfer "${KD[@]}"
mb 150 "${P[@]}" --backends flashinfer "${KP[@]}" --compile-only
mb 45  "${P[@]}" --backends flashinfer "${KP[@]}"

# 4. the decode grid, Qwen3-0.6B heads
for b in fa3 fa4 attnbench-fa4 flashinfer fa2; do mb 60 "${D[@]}" --backends $b "${GD[@]}"; done
mb 45 "${D[@]}" --backends fa4 --fa4-splits 1 "${GD[@]}"

# 5. the prefill grid: plain varlen causal and chunked against a paged cache
for b in fa3 fa4 flashinfer fa2; do mb 45 "${P[@]}" --backends $b "${GP[@]}"; done

# 6. Llama-3-8B (32/8/128) and gpt-oss (64/8/64) heads at a few corners
for b in fa3 fa4 attnbench-fa4 flashinfer fa2; do
  mb 30 "${D[@]}" --backends $b --grid scenarios/decode-grid.toml --heads 32/8/128,64/8/64 --batch 1,32,256 --context 2048,32768 --skip-measured
done
for b in fa3 fa4 flashinfer fa2; do
  mb 25 "${P[@]}" --backends $b --grid scenarios/prefill-grid.toml --heads 32/8/128,64/8/64 --batch 8 --seqlen 2048,8192 --context 0 --skip-measured
done

# 7. correctness smoke on small ragged shapes (and speculative decoding, q_len 3)
for b in fa3 fa4 attnbench-fa4 flashinfer fa2; do
  mb 25 "${D[@]}" --backends $b --batch 3 --ragged uniform:17:300 --result-dir "$out/smoke"
done
for b in fa3 flashinfer fa4 fa2; do
  mb 25 "${D[@]}" --backends $b --batch 2 --ragged uniform:17:300 --q-len 3 --result-dir "$out/smoke"
done

# 8. summary.md and plots from every record on disk (whatever the steps above managed to write)
echo "=== $(date -u +%T) +${SECONDS}s summarize"
timeout -k 2 16 python3 -m attnbench microbench summarize "$out/decode" "$out/prefill" "$out/smoke" | grep -v '^$' | tail -60
echo "=== $(date -u +%T) +${SECONDS}s microbench done (budget ${budget}s)"; ls -R "$out" | head -40
