# attnbench against `vllm bench serve` on one warm fa3 server, one suspect at a time, 3 interleaved
# rounds: vLLM's client, attnbench as vLLM's client runs (text prompts, no warm-up), attnbench
# with token ids, and with its steady-state warm-up; then the same with 4 API-server processes
# (is vLLM's frontend the bottleneck?). Every run also carries the server's /metrics for its window.
source scripts/device/env.sh
mkdir -p /tmp/res
step() { echo "=== $(date -u +%T) $*"; }
tok=$(python3 -c "from attnbench.models import embedded; print(embedded.materialize('qwen3-0.6b'))")
clients=vllm,attnbench-text,attnbench,attnbench-warm
for api in 1 4; do
  step "agreement, --api-server-count $api"
  timeout -k 10 -s INT "${AGREE_LIMIT_S:-720}" python3 scripts/device/with_servers.py --backends fa3 \
    --serve-arg=--api-server-count --serve-arg=$api --log-dir /tmp/res/agreement-api$api -- \
    python3 benchmarks/peer_clients.py --endpoint {endpoint:fa3} --model {model} --tokenizer "$tok" \
      --input 1000 --output 1000 --num-prompts 256 --concurrency 256 --rounds 3 --clients $clients \
      --reference vllm --out /tmp/res/agreement-api$api 2>&1 | tail -30
done
step done
