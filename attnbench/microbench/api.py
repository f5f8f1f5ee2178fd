"""Kernel timing as a function other areas call (e.g. `attnbench explain`)."""

from __future__ import annotations

from attnbench.errors import UserError
from attnbench.microbench.base import DecodeShape


def decode_time_us(backend: str, shape: DecodeShape, device: str = "cuda", repeats: int = 20) -> float:
    """Median µs of one decode call of `backend` on `shape` (CUDA-graph replay on a GPU;
    time.perf_counter on the CPU, where only the `reference` backend runs)."""
    from attnbench.microbench import inputs, run, timing

    opts = run.Options(device=device, repeats=repeats)
    run.validate_backends([backend], device)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("decode_time_us: device 'cuda' requested but torch sees no CUDA GPU; use device='cpu' with backend 'reference'")
    kernel = run.load_kernel(backend, opts)
    reason = kernel.unsupported(shape)
    if reason:
        raise UserError(f"{backend} cannot run {shape.label()}: {reason}")
    inp = inputs.decode_inputs(shape, device)
    return timing.time_calls([kernel.decode(shape, inp)], device, repeats).us
