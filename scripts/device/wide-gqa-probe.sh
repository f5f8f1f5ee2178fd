# A short probe for the minutes a lease has left: the vLLM plugin's FA4-prefill warm-up test on the
# GPU, then v4 (tensor-core decode for wide GQA groups) at heads 32/8/128 against fa3 on three
# shapes. Writes to $OUT (or /tmp/res/wide-gqa): plugin-prefill.log, sweep.json (every candidate),
# tuning.json (the winners merged into a copy of the committed table), fa3/ (microbench records).
#   bash scripts/device/wide-gqa-probe.sh        # ~4 min on a staged machine
source scripts/device/env.sh
out="${OUT:-/tmp/res/wide-gqa}"; mkdir -p "$out"
shapes=256x2048,32x2048,1x32768
step() { echo "=== $(date -u +%T) $*"; }
step "plugin: FA4 prefill compiled at start-up is not compiled again (60 s at most)"
timeout 60 python3 -m pytest -q -p no:cacheprovider -rA tests/kernels/test_vllm_plugin.py -k gpu_fa4_prefill \
  > "$out/plugin-prefill.log" 2>&1; echo "exit $?"; tail -2 "$out/plugin-prefill.log"
step "sweep 32/8/128 p16 at $shapes (120 s at most)"
cp attnbench/kernels/fa4_decode/tuning.json "$out/tuning.json"
timeout -s INT 120 python3 -m attnbench.microbench.fa4_sweep --heads 32/8/128 --page-size 16 --shapes "$shapes" \
  --table "$out/tuning.json" --out "$out/sweep.json" 2>&1 | tail -25
step "fa3 at the same shapes (60 s at most)"
timeout -s INT 60 python3 -m attnbench microbench decode --backends fa3 --heads 32/8/128 --page-size 16 \
  --shapes "$shapes" --result-dir "$out/fa3" 2>&1 | tail -12
step done
