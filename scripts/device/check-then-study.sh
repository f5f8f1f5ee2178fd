# attnbench-fa4's correctness first (the acceptance grid, then the launcher's and the vLLM
# plugin's GPU tests: ~3 min, so a kernel change is checked before it serves), then the serving
# study and explain (serve-study.sh: scenarios/seed-serve.toml, results in /tmp/res/serve/rep0/ and
# /tmp/res/explain/rep0/). One job, inside one 30-minute lease with staging:
#   STUDY_LIMIT_S=1260 EXPLAIN_S=120 bash scripts/device/launch.sh check-then-study.sh 560
# KERNELS_BUDGET_S (default 200) bounds the first part (kernels.sh sanitize:
# scenarios/h200-kernels-sanitize.toml); the sanitizers that follow the tests run only when it
# leaves them time (KERNELS_BUDGET_S=330 for all). The study runs even if the first part failed;
# the first part's results land in /tmp/res/sanitizer/ (STEP/rep0/, manifest.json) as with kernels.sh.
KERNELS_PARTS=sanitize KERNELS_BUDGET_S="${KERNELS_BUDGET_S:-200}" bash scripts/device/kernels.sh
bash scripts/device/serve-study.sh
