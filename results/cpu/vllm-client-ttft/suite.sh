#!/bin/bash
# The final suite: server with listen backlog 1024 (no SYN drops), 1 server worker on CPU 1, client on CPU 0,
# scripted ttft 50 ms, itl 50 ms, 16 output tokens, 1000-word prompts, 256 requests at once. 3 rounds each, interleaved.
export SRVARGS="--site-backlog 1024"
for i in 1 2 3; do
  ./variants.sh S${i}_vllm 1 --max-tokens 16
  ./variants.sh S${i}_trustenv0 1 --max-tokens 16 --trust-env 0
  ./variants.sh S${i}_trustenv_noop 1 --max-tokens 16 --te-noop
  ./variants.sh S${i}_prewarm 1 --max-tokens 16 --prewarm 256
  ./variants.sh S${i}_te0_prewarm 1 --max-tokens 16 --prewarm 256 --trust-env 0
  ./variants.sh S${i}_uvloop 1 --max-tokens 16 --uvloop
  ./variants.sh S${i}_localhost 1 --max-tokens 16 --host localhost
  ./variants.sh S${i}_notrace 1 --max-tokens 16 --no-trace
  ./variants.sh S${i}_n64 1 --max-tokens 16 --n 64 --max-concurrency 64
  ./variants.sh S${i}_n128 1 --max-tokens 16 --n 128 --max-concurrency 128
  ./variants.sh S${i}_procs4 1 --max-tokens 16 --procs 4
  ./variants.sh S${i}_procs4_uv_te0 1 --max-tokens 16 --procs 4 --uvloop --trust-env 0
done
