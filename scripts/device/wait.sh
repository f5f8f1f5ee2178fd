#!/usr/bin/env bash
# Wait for the background job (or `$1` seconds), then bring back its results and log via $OUT.
set -u
limit="${1:-540}"; t0=$(date +%s)
while [ ! -f /tmp/job.done ] && [ $(( $(date +%s) - t0 )) -lt "$limit" ]; do sleep 5; done
if [ -f /tmp/job.done ]; then echo "job: done, exit $(cat /tmp/job.done)"; else echo "job: still running"; fi
tail -n 60 /tmp/job.log
if [ -n "${OUT:-}" ]; then
  cp /tmp/job.log "$OUT/job.log"
  tar -C /tmp/res -czf "$OUT/results.tgz" . 2>/dev/null
  ls -la "$OUT"
fi
