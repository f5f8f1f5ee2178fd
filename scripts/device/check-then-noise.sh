# attnbench-fa4's correctness first, v4 (the tensor-core kernel for wide GQA groups) included:
# kernels.sh sanitize (scenarios/h200-kernels-sanitize.toml: the acceptance grid, the launcher's
# and the plugin's GPU tests, then the sanitizers as the budget leaves time), then the serving-noise
# experiment (noise.sh: one fa3 server, the engine core as placed, pinned, as placed again).
# One job, inside one 30-minute lease with staging:
#   KERNELS_BUDGET_S=330 NOISE_LIMIT_S=1080 bash scripts/device/launch.sh check-then-noise.sh 560
# The experiment runs even if the first part failed. Results: /tmp/res/sanitizer/, /tmp/res/noise/.
KERNELS_PARTS=sanitize KERNELS_BUDGET_S="${KERNELS_BUDGET_S:-330}" bash scripts/device/kernels.sh
bash scripts/device/noise.sh
