"""An independent reference outside vLLM: transformers in float32 on CPU, answering the same
prompts with the same data (teacher-forced top-k logprobs and a greedy continuation), so it
compares like one more backend, "hf-fp32". A bug shared by every vLLM backend (a wrong RoPE,
a stale KV block) shows up only against this."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from attnbench.parity.collect import Collection, Positions, PromptResult, Settings

NAME = "hf-fp32"
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth")


def unusable(model_dir: str | Path) -> str | None:
    """Why transformers cannot give a meaningful reference for this model, or None when it can.
    A folder without weights (the embedded dummy-weight model: vLLM draws its dummy weights
    itself, nothing outside vLLM can reproduce them) is the usual reason."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return f"{model_dir} is not a local model folder"
    if not (folder / "config.json").is_file():
        return f"{model_dir} has no config.json"
    if not any(next(folder.glob(p), None) for p in WEIGHT_PATTERNS):
        return f"{model_dir} has no weights (a dummy-weight model: vLLM's dummy weights are not reproducible outside vLLM)"
    return None


def _safetensors_names(folder: Path) -> tuple[set[str], dict[str, str]]:
    """Tensor names in the folder's safetensors files (from their JSON headers, nothing loaded)
    and the files' metadata."""
    import json
    import struct

    names: set[str] = set()
    metadata: dict[str, str] = {}
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        metadata.update(header.pop("__metadata__", None) or {})
        names |= set(header)
    return names, metadata


def serving_problems(model_dir: str | Path) -> list[str]:
    """What in this folder makes vLLM load a different model from the one transformers loads, so
    that the fp32 reference and the servers disagree whatever the attention backends do.

    The known case: tie_word_embeddings with the shared matrix stored only as `lm_head.weight`
    (safetensors' save_model keeps one name of tied tensors, here lm_head, and notes the other in
    its metadata). transformers ties the embedding to it; vLLM skips `lm_head.*` for tied models
    and loads the embedding by its own name, finds none and leaves it unloaded (zeros) without
    an error: constant logits, logprob -ln(vocab) at every position on every backend."""
    import json

    folder = Path(model_dir)
    try:
        config = json.loads((folder / "config.json").read_text())
        names, metadata = _safetensors_names(folder)
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    configs = [config, config.get("text_config") or {}]
    tied = any(c.get("tie_word_embeddings") is True for c in configs)
    heads = sorted(n for n in names if n.endswith("lm_head.weight"))
    embeds = [n for n in names if ("embed" in n or n.endswith("wte.weight")) and not n.endswith("lm_head.weight")]
    if tied and heads and not embeds:
        alias = next((f" (its metadata maps {k} -> {v})" for k, v in metadata.items() if v in heads), "")
        return [f"{folder}: tie_word_embeddings is true but the checkpoint holds the tied matrix only as "
                f"{heads[0]}, no input embedding{alias}; vLLM skips lm_head.* for tied models and leaves the "
                "embedding unloaded (all zeros: constant logits, every logprob -ln(vocab)); transformers ties it correctly. "
                "Save the folder with save_pretrained, or store the matrix under the embedding's name too"]
    return []


def _positions(logprobs, chosen: list[int], top_k: int) -> Positions:
    """logprobs: [n, vocab] float64 tensor, row i predicting chosen[i]."""
    import torch

    top_lps, top_ids = torch.topk(logprobs, top_k, dim=-1)
    picked = logprobs.gather(1, torch.tensor(chosen).unsqueeze(1)).squeeze(1).tolist()
    out = Positions()
    for token, lp, ids, lps in zip(chosen, picked, top_ids.tolist(), top_lps.tolist()):
        out.append(token, lp, dict(zip(ids, lps)))  # orders exact ties as for the servers
    return out


def _cache(output):
    """The KV cache of a forward pass: `cache` in newer transformers 5, `past_key_values` before."""
    cache = output.get("cache")
    return cache if cache is not None else output.get("past_key_values")


def collect_hf(model_dir: str | Path, settings: Settings, name: str = NAME,
               progress: Callable[[int, int], None] | None = None, threads: int | None = None) -> Collection:
    """Run every parity prompt through AutoModelForCausalLM (float32, CPU, no sampling tricks:
    raw log-softmax of the logits, as vLLM's logprobs), on `threads` CPU threads if given."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _collect(model_dir, settings, name, progress)
    finally:
        torch.set_num_threads(before)  # the process's other torch work keeps its threads


def _collect(model_dir: str | Path, settings: Settings, name: str,
             progress: Callable[[int, int], None] | None) -> Collection:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    prompts = settings.prompts.prompts()
    out = Collection(name=name, model=str(model_dir), settings=settings, source="transformers float32 cpu")
    with torch.inference_mode():
        for i, prompt in enumerate(prompts):
            ids = torch.tensor([prompt])
            result = model(input_ids=ids, use_cache=True)
            lps = torch.log_softmax(result.logits[0].double(), dim=-1)
            prefill = _positions(lps[:-1], prompt[1:], settings.top_k)
            past, last = _cache(result), lps[-1]
            rows, tokens = [], []
            for step in range(settings.max_tokens):
                token = int(torch.argmax(last))
                rows.append(last)
                tokens.append(token)
                if step + 1 == settings.max_tokens:
                    break
                result = model(input_ids=torch.tensor([[token]]), use_cache=True, **{cache_arg: past})
                past, last = _cache(result), torch.log_softmax(result.logits[0, -1].double(), dim=-1)
            decode = _positions(torch.stack(rows), tokens, settings.top_k)
            out.results.append(PromptResult(list(prompt), prefill, decode, "length"))
            if progress:
                progress(i + 1, len(prompts))
    return out
