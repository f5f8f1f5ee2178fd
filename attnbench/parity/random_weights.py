"""Real files of random weights for an embedded architecture, so parity has something to measure
on it and the fp32 transformers reference can load the very same weights.

vLLM's `--load-format dummy` draws weights uniformly from ±1e-3: every logit is then ~0, all
tokens are near-ties, and two backends agree to ~1e-7 whatever their attention computes. The
transformers initialisation (normal, std = initializer_range; norms at 1) gives logits with a
spread of ~1 nat, so attention differences reach the logprobs as they would with trained weights."""

from __future__ import annotations

import shutil
from pathlib import Path

from attnbench.models import embedded


def write(config: dict, folder: Path, seed: int = 0, dtype: str = "bfloat16") -> Path:
    """Initialise the architecture in `config` with `seed` and save it (safetensors) in `folder`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(folder)
    cfg = AutoConfig.for_model(**config)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype))
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # a folder with weights is always complete
    return folder


def materialize(name: str, seed: int = 0, root: Path | None = None) -> Path:
    """The random-weight folder of embedded model `name` (config, tokenizer, weights), made once."""
    folder = (root or embedded.cache_dir() / "models") / f"{name}-random-s{seed}-t{embedded.TOKENIZER_VERSION}"
    if next(folder.glob("*.safetensors"), None) is None:
        write(embedded.config(name), folder, seed)
        dummy = embedded.materialize(name)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(dummy / f, folder / f)
    return folder
