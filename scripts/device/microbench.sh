#!/usr/bin/env bash
# Issue 3 on the H100: both grids for fa2, fa3, fa4 (heuristic and --fa4-splits 1), flashinfer,
# attnbench-fa4, results under $1 (decode/ and prefill/, each with summary.md, plots/, one JSON
# per backend). Ordered so the numbers the issue quotes come first; every step has its own
# time limit and writes each result as it is measured, so a cut-short run keeps what it has.
# Step limits add up to ~415 s (job-1.sh gives the whole script 420 s): the Qwen3-0.6B heads
# (16/8/128) get the full batch x context grid, Llama-3-8B (32/8/128) and gpt-oss (64/8/64) a corner.
# A step past its limit gets SIGINT (attnbench writes summary.md and plots, exit 130), SIGKILL 5 s later.
set -u
out="${1:?usage: microbench.sh RESULT_DIR}"
mkdir -p "$out"
mb() { echo "=== $(date -u +%T) microbench $*"; timeout -k 5 -s INT "$1" python3 -m attnbench microbench "${@:2}"; echo "=== exit $?"; }
all="fa2,fa3,fa4,flashinfer,attnbench-fa4"
D=(decode --result-dir "$out/decode" --repeats 20)
P=(prefill --result-dir "$out/prefill" --repeats 10)

# 1. correctness smoke on small ragged shapes: every adapter's first real run (plain, speculative, prefill)
mb 30  "${D[@]}" --backends "$all" --batch 3 --ragged uniform:17:300 --result-dir "$out/smoke"
mb 20  "${D[@]}" --backends "$all" --batch 2 --ragged uniform:17:300 --q-len 3 --result-dir "$out/smoke"
mb 25  "${P[@]}" --backends fa2,fa3,fa4,flashinfer --batch 2 --seqlen 100 --context 0,77 --result-dir "$out/smoke"

# 2. the shapes issue 3 quotes H100 numbers for (summary.md sets ours beside them)
mb 40  "${D[@]}" --backends "$all" --batch 256,1 --context 2048,32768
mb 20  "${D[@]}" --backends fa4 --fa4-splits 1 --batch 256,1 --context 2048,32768
mb 30  "${P[@]}" --backends fa2,fa3,fa4,flashinfer --batch 8 --seqlen 8192

# 3. the decode grid: Qwen3 heads in full, FA4 with split-KV off on the same shapes, the other
#    head layouts at a few corners
mb 95  "${D[@]}" --grid scenarios/decode-grid.toml --backends "$all" --heads 16/8/128
mb 35  "${D[@]}" --grid scenarios/decode-grid.toml --backends fa4 --fa4-splits 1 --heads 16/8/128
mb 30  "${D[@]}" --grid scenarios/decode-grid.toml --backends "$all" --heads 32/8/128,64/8/64 --batch 1,32,256 --context 2048,32768

# 4. the prefill grid: plain varlen causal and chunked against a paged cache
mb 50  "${P[@]}" --grid scenarios/prefill-grid.toml --backends fa2,fa3,fa4,flashinfer --heads 16/8/128
mb 25  "${P[@]}" --grid scenarios/prefill-grid.toml --backends fa2,fa3,fa4,flashinfer --heads 32/8/128,64/8/64 --batch 8 --seqlen 2048,8192 --context 0
mb 15  "${P[@]}" --grid scenarios/prefill-grid.toml --backends fa4 --fa4-splits 1 --heads 16/8/128 --batch 1 --context 8192
echo "=== $(date -u +%T) microbench done"; ls -R "$out" | head -40
