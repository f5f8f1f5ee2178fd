# Device job (prepared, not yet run): SmolLM2 staged (smollm2.sh), then scenarios/h200-accuracy.toml
# through `attnbench run`: parity across backends on real and random weights, the broken-attention
# check, and GPQA on SmolLM2 with paired comparisons. ACCURACY_LIMIT_S (default 1440) is the
# study's budget: the step in flight is then stopped (it keeps what it saved) and the rest skipped.
# Results: /tmp/res/accuracy/<step>/rep0/ (each step's run.log there too) and its manifest.json.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }
step smollm2; source scripts/device/smollm2.sh
step "accuracy: attnbench run scenarios/h200-accuracy.toml within ${ACCURACY_LIMIT_S:-1440} s"
python3 -m attnbench run scenarios/h200-accuracy.toml --result-dir /tmp/res/accuracy \
  --budget-s "${ACCURACY_LIMIT_S:-1440}" &
run=$!
python3 scripts/device/follow_logs.py /tmp/res/accuracy --while $run  # each step's lines as they come
wait $run; echo "attnbench run: exit $?"
head -30 /tmp/res/accuracy/gpqa-smollm2/rep0/summary.md 2>/dev/null
step done
