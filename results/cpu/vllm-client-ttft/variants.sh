#!/bin/bash
# variants.sh NAME ROUNDS -- harness args ; prints one line per round
NAME=$1; R=$2; shift 2
for i in $(seq $R); do ./run_one.sh ${NAME}_$i ${W:-1} ${ITL:-0.05} ${CCPU:-0} "$@" > /dev/null; grep -E "TTFT \(vLLM|st -> body|st -> server|TTFT from server|overflows" /tmp/vct/runs/${NAME}_$i/summary.txt | sed "s/^/${NAME}_$i /"; done
