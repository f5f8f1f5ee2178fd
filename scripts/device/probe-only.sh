# The wide-GQA probe alone (for the minutes a lease has left), results under /tmp/res/wide-gqa.
#   PROBE_HEADS=16/8/128 bash scripts/device/launch.sh probe-only.sh 200
HEADS="${PROBE_HEADS:-16/8/128}" OUT=/tmp/res/wide-gqa bash scripts/device/wide-gqa-probe.sh
