"""Test-only: a deliberately broken attention, to prove that parity can fail.

Put this folder first on PYTHONPATH of a vLLM server and set ATTNBENCH_BROKEN_SCALE=1.01:
every process of that server (workers included, they inherit the environment) multiplies the
softmax scale that vLLM's Attention layer hands to whatever backend it selected, by that factor.
Nothing changes without the variable."""

import importlib.abc
import os
import sys

TARGETS = ("vllm.attention.layer", "vllm.model_executor.layers.attention.attention")
FACTOR = os.environ.get("ATTNBENCH_BROKEN_SCALE")


def _break(module) -> None:
    cls = getattr(module, "Attention", None)
    if cls is None or getattr(cls, "_attnbench_broken", False):
        return
    original = cls.__init__

    def __init__(self, num_heads, head_size, scale, *args, **kwargs):
        original(self, num_heads, head_size, scale * float(FACTOR), *args, **kwargs)

    cls.__init__, cls._attnbench_broken = __init__, True
    print(f"attnbench broken attention: softmax scale x {FACTOR} in {module.__name__}", file=sys.stderr, flush=True)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in TARGETS:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            _break(module)

        spec.loader.exec_module = patched
        return spec


if FACTOR:
    import importlib.util

    sys.meta_path.insert(0, _Finder())
