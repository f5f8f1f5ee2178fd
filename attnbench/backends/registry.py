"""The attention backends attnbench knows: one declaration each, shared by serve-bench,
microbench, gpqa and parity. Adding a backend means adding one `Backend(...)` to BACKENDS."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

from attnbench.errors import UserError


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str  # why not, or what was found


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    serve_args: tuple[str, ...]  # how `vllm serve` selects it
    requires: tuple[str, ...] = ("vllm",)  # importable modules (dotted paths are fine)
    sm: tuple[int, ...] = (80, 86, 89, 90, 100, 103, 120)  # GPU archs it runs on (major*10+minor)
    serve_env: dict[str, str] = field(default_factory=dict)
    microbench: str | None = None  # "module:Class" of its kernel adapter (attnbench.microbench)
    vllm_plugin: str | None = None  # entry point in vllm.general_plugins that vLLM must load for it
    ours: bool = False  # attnbench's own kernel: summaries set it beside the best of the others

    def availability(self, serving: bool = True) -> Availability:
        """Whether it runs here; `serving` False asks for its kernels alone (microbench)."""
        for module in self.requires:
            if not _module_exists(module):
                return Availability(False, f"python module {module!r} not installed")
        if serving and self.vllm_plugin and self.vllm_plugin not in _vllm_plugins():
            return Availability(False, f"vLLM would not find it: the vllm.general_plugins entry point "
                                       f"{self.vllm_plugin!r} is not installed (pip install -e . instead of "
                                       "running from PYTHONPATH)")
        from attnbench import provenance

        gpus = provenance.gpus()
        if not gpus:
            return Availability(False, "no NVIDIA GPU (nvidia-smi reports none)")
        sm = _sm(gpus[0]["compute_cap"])
        if sm not in self.sm:
            return Availability(False, f"GPU {gpus[0]['name']} is sm_{sm}; {self.name} runs on sm_{', sm_'.join(map(str, self.sm))}")
        return Availability(True, f"{gpus[0]['name']} (sm_{sm})")


def _vllm_plugins() -> set[str]:
    """The plugin entry points vLLM loads at start (what an installed package declares)."""
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="vllm.general_plugins")}


def _sm(compute_cap: str) -> int:
    major, _, minor = compute_cap.partition(".")
    return int(major) * 10 + int(minor or 0)


def _module_exists(dotted: str) -> bool:
    """Like importlib.util.find_spec, but never imports a parent package (flash_attn imports torch)."""
    top, *rest = dotted.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None:
        return False
    paths = list(spec.submodule_search_locations or [])
    for part in rest:
        found = [p for p in paths if os.path.isdir(os.path.join(p, part)) or os.path.isfile(os.path.join(p, part + ".py"))]
        if not found:
            return False
        paths = [os.path.join(p, part) for p in found]
    return True


def _flash_attn(version: int) -> tuple[str, ...]:
    return ("--attention-backend", "FLASH_ATTN", "--attention-config.flash_attn_version", str(version))


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("fa2", "FlashAttention 2 (vLLM's vllm_flash_attn)", _flash_attn(2),
                microbench="attnbench.microbench.adapters.flash_attn:FA2"),
        Backend("fa3", "FlashAttention 3 (vLLM's vllm_flash_attn, Hopper only)", _flash_attn(3), sm=(90,),
                microbench="attnbench.microbench.adapters.flash_attn:FA3"),
        Backend("fa4", "FlashAttention 4, CuTe DSL (vLLM's vendored flash_attn.cute)", _flash_attn(4),
                requires=("vllm", "cutlass"), sm=(90, 100, 103),
                microbench="attnbench.microbench.adapters.flash_attn:FA4"),
        Backend("flashinfer", "FlashInfer", ("--attention-backend", "FLASHINFER"),
                requires=("vllm", "flashinfer"), microbench="attnbench.microbench.adapters.flashinfer:FlashInfer"),
        Backend("triton", "vLLM's Triton attention", ("--attention-backend", "TRITON_ATTN")),
        Backend("attnbench-fa4", "attnbench's FA4-style split-KV decode (CuTe DSL) inside vLLM",
                ("--attention-backend", "CUSTOM"), requires=("vllm", "cutlass", "tvm_ffi"), sm=(90,),
                microbench="attnbench.microbench.adapters.attnbench_fa4:AttnbenchFA4", vllm_plugin="attnbench_fa4",
                ours=True),
    )
}


def get(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UserError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)} (see `attnbench backends`)") from None


def parse_names(spec: str | None) -> list[Backend]:
    """'fa3,flashinfer' -> backends; None or '' -> every backend available on this machine."""
    if not spec:
        return [b for b in BACKENDS.values() if b.availability().ok]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise UserError(f"--backends names a backend twice: {spec!r}")
    return [get(n) for n in names]


def available() -> dict[str, Availability]:
    return {name: b.availability() for name, b in BACKENDS.items()}
