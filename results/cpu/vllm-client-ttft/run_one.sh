#!/bin/bash
# run_one.sh NAME WORKERS ITL CLIENT_CPUS [harness args...]: fresh server (pinned to CPU 1), one harness run.
set -e
NAME=$1; W=$2; ITL=$3; CCPU=$4; shift 4
D=/tmp/vct/runs/$NAME; rm -rf $D; mkdir -p $D
cd /work/notes/vllm_client_ttft
LOG_DIR=$D/srv PYTHONPATH=/work/main taskset -c ${SCPU:-1} python3 server.py --ttft 0.05 --itl $ITL --workers $W ${SRVARGS} > $D/server.out 2>&1 &
SP=$!
for i in $(seq 50); do grep -q "scripted server on" $D/server.out 2>/dev/null && break; sleep 0.2; done
PORT=$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' $D/server.out | head -1)
sleep 1
OV0=$(nstat -az TcpExtListenOverflows | awk '/ListenOverflows/{print $2}')
taskset -c $CCPU ${PY:-python3} harness.py --port $PORT --out $D/res.json "$@" > $D/client.out 2>&1 || { cat $D/client.out; }
OV1=$(nstat -az TcpExtListenOverflows | awk '/ListenOverflows/{print $2}'); echo "listen overflows during run: $((OV1-OV0))" > $D/overflows.txt
kill $SP; wait $SP 2>/dev/null || true
python3 analyze.py $D/res.json $D/srv 0.05 > $D/summary.txt; cat $D/overflows.txt >> $D/summary.txt; cat $D/summary.txt
