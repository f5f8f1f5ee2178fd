"""Where a number came from: code version, package versions, GPU, command line, time."""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import attnbench

PACKAGES = ("vllm", "torch", "flashinfer-python", "flash-attn-4", "nvidia-cutlass-dsl", "transformers")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run(cmd: list[str], cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The attnbench checkout's commit, with '-dirty' when it has uncommitted changes."""
    root = str(Path(attnbench.__file__).resolve().parent.parent)
    sha = _run(["git", "rev-parse", "HEAD"], cwd=root)
    if sha and _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root):
        sha += "-dirty"
    return sha


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def gpus() -> list[dict[str, str]]:
    """GPUs as nvidia-smi reports them (no torch import); empty without a driver."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                "--format=csv,noheader,nounits"])
    if not out:
        return []
    keys = ("name", "driver", "memory_mib", "compute_cap")
    return [dict(zip(keys, (c.strip() for c in line.split(",")))) for line in out.splitlines()]


def command_line(argv: list[str] | None = None) -> str:
    """The command as the user would retype it: `python -m attnbench ...` (argv[0] is then the
    package's __main__.py) is recorded as `attnbench ...`, like the installed console script."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    prog = Path(argv[0]).name
    if prog == "__main__.py":
        prog = "attnbench"
    return shlex.join([prog, *argv[1:]])


def collect(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    gpu = gpus()
    prov = {
        "attnbench_version": attnbench.__version__,
        "git_sha": git_sha(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "host": platform.node(),
        "gpu_name": gpu[0]["name"] if gpu else None,
        "gpu_driver": gpu[0]["driver"] if gpu else None,
        "gpu_count": len(gpu),
        "command": command_line(),
        "utc_time": utc_now(),
    }
    prov.update(extra or {})
    return prov
