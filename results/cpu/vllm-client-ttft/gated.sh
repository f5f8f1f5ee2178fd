#!/bin/bash
# gated.sh PREFIX ROUNDS: like suite.sh for the trust_env variants, but each round waits until the
# machine is quiet (other users' processes < 5% of the 2 CPUs over 2 s), since the box is shared.
P=$1; R=$2; export SRVARGS="--site-backlog 1024"
busy() { read -r _ a b c d e f g h _ < /proc/stat; t1=$((a+b+c+d+e+f+g+h)); i1=$d; sleep 2; read -r _ a b c d e f g h _ < /proc/stat; t2=$((a+b+c+d+e+f+g+h)); i2=$d; echo $(( 100 - 100*(i2-i1)/(t2-t1) )); }
for i in $(seq $R); do
  for tries in $(seq 30); do b=$(busy); [ $b -lt 5 ] && break; done
  echo "round $i: busy before ${b}%"
  ./variants.sh ${P}${i}_vllm 1 --max-tokens 16 >/dev/null
  ./variants.sh ${P}${i}_trustenv0 1 --max-tokens 16 --trust-env 0 >/dev/null
  ./variants.sh ${P}${i}_trustenv_inline 1 --max-tokens 16 --te-inline >/dev/null
  ./variants.sh ${P}${i}_trustenv_noop 1 --max-tokens 16 --te-noop >/dev/null
  ./variants.sh ${P}${i}_prewarm 1 --max-tokens 16 --prewarm 256 >/dev/null
  echo "round $i: busy after $(busy)%"
done
