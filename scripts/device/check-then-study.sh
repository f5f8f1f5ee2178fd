# attnbench-fa4's acceptance grid and compute-sanitizer first (about 4-5 min: a kernel change is
# checked before it serves), then the serving study and explain (serve-study.sh). One job:
#   STUDY_LIMIT_S=1200 EXPLAIN_S=120 bash scripts/device/launch.sh check-then-study.sh 560
# KERNELS_BUDGET_S (default 330) bounds the first part; the study runs even if it failed, and
# kernels' results land in /tmp/res/sanitizer/ as with kernels.sh.
KERNELS_PARTS=sanitize KERNELS_BUDGET_S="${KERNELS_BUDGET_S:-330}" bash scripts/device/kernels.sh
bash scripts/device/serve-study.sh
