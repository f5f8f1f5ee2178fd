#!/usr/bin/env bash
# Wait for the background job (or `$1` seconds), then bring back its results and log via $OUT.
# A machine without job.log is a fresh one (the last was given back: a call came more than
# ~30 s after the one before); the job died with the old machine, so say so at once and exit 3
# instead of waiting out the limit on nothing.
set -u
jobs="${JOB_DIR:-/tmp}"  # where launch.sh keeps job.log and job.done
limit="${1:-540}"; t0=$(date +%s)
if [ ! -f "$jobs/job.log" ]; then
  echo "job: none on this machine (a fresh one: the machine that ran the job was given back); results are what the last call brought"
  exit 3
fi
while [ ! -f "$jobs/job.done" ] && [ $(( $(date +%s) - t0 )) -lt "$limit" ]; do sleep 5; done
if [ -f "$jobs/job.done" ]; then echo "job: done, exit $(cat "$jobs/job.done")"; else echo "job: still running"; fi
tail -n 60 "$jobs/job.log"
if [ -n "${OUT:-}" ]; then
  cp "$jobs/job.log" "$OUT/job.log"
  tar -C /tmp/res -czf "$OUT/results.tgz" . 2>/dev/null
  ls -la "$OUT"
fi
