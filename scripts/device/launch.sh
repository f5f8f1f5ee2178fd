#!/usr/bin/env bash
# Start a job script in its own session (it outlives this call while the machine stays warm),
# from a private copy of the checkout, then wait for it like wait.sh.
set -u
job="$1"; wait_s="${2:-540}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf /tmp/ab && mkdir -p /tmp/ab /tmp/res
tar -C "$root" --exclude=./.stage -cf - . | tar -C /tmp/ab -xf -
rm -f /tmp/job.done
cd /tmp/ab && setsid nohup bash -c "bash scripts/device/$job; echo \$? > /tmp/job.done" > /tmp/job.log 2>&1 < /dev/null &
sleep 2
exec bash "$root/scripts/device/wait.sh" "$wait_s"
