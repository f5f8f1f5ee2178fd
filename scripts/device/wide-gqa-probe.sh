# A short probe for the minutes a lease has left: the vLLM plugin's FA4-prefill warm-up test on the
# GPU, then attnbench-fa4's sweep (v4, the tensor-core decode, among its candidates) at HEADS
# (default 32/8/128; 16/8/128 puts v4 against v3 at group 2) against fa3 and flashinfer on three
# shapes. Writes to $OUT (or /tmp/res/wide-gqa): plugin-prefill.log, sweep.json (every candidate),
# tuning.json (the winners merged into a copy of the committed table), microbench/ (attnbench-fa4
# with that table, fa3 and flashinfer: records and one summary).
#   HEADS=16/8/128 bash scripts/device/wide-gqa-probe.sh        # ~4 min on a staged machine
source scripts/device/env.sh
out="${OUT:-/tmp/res/wide-gqa}"; mkdir -p "$out"
heads="${HEADS:-32/8/128}"
shapes=256x2048,32x2048,1x32768
step() { echo "=== $(date -u +%T) $*"; }
step "plugin: FA4 prefill compiled at start-up is not compiled again (60 s at most)"
timeout 60 python3 -m pytest -q -p no:cacheprovider -rA tests/kernels/test_vllm_plugin.py -k gpu_fa4_prefill \
  > "$out/plugin-prefill.log" 2>&1; echo "exit $?"; tail -2 "$out/plugin-prefill.log"
step "sweep $heads p16 at $shapes (150 s at most)"
cp attnbench/kernels/fa4_decode/tuning.json "$out/tuning.json"
timeout -s INT 150 python3 -m attnbench.microbench.fa4_sweep --heads "$heads" --page-size 16 --shapes "$shapes" \
  --table "$out/tuning.json" --out "$out/sweep.json" 2>&1 | tail -25
# ours through the launcher with the table the sweep just wrote (this checkout's copy of it: the
# job runs from a copy of the tree), then fa3 and flashinfer, all timed by microbench alike
cp "$out/tuning.json" attnbench/kernels/fa4_decode/tuning.json
for b in attnbench-fa4 fa3 flashinfer; do
  step "$b at the same shapes (60 s at most)"
  timeout -s INT 60 python3 -m attnbench microbench decode --backends "$b" --heads "$heads" --page-size 16 \
    --shapes "$shapes" --result-dir "$out/microbench" 2>&1 | tail -8
done
python3 -m attnbench microbench summarize "$out/microbench" 2>&1 | tail -8
step done
