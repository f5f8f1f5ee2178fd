"""vLLM general plugin: makes `--attention-backend CUSTOM` select attnbench-fa4.

vLLM calls `register()` in every process it starts (entry point `vllm.general_plugins`,
`attnbench_fa4`, in pyproject.toml), whichever backend is asked for, so this stays cheap: it
records the backend's class path in vLLM's registry and imports nothing of ours; vLLM imports
attnbench.kernels.vllm_backend only if CUSTOM is selected. Nothing heavy is imported at module load.
"""

from __future__ import annotations

import logging

BACKEND_PATH = "attnbench.kernels.vllm_backend.AttnbenchFA4Backend"

log = logging.getLogger("vllm.attnbench_fa4")  # the tree vLLM gives a handler


def register() -> bool:
    """Register AttnbenchFA4Backend as vLLM's CUSTOM attention backend; safe to call again.

    Without vLLM this raises UserError (only a person or a test calls it then: vLLM never loads
    its plugins without itself). With a vLLM whose registry has moved it warns and returns False
    instead of raising, because vLLM runs every plugin for every backend, and a fa3 or flashinfer
    run must not die for ours. Returns True once CUSTOM points at our backend.
    """
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        from attnbench.errors import UserError

        raise UserError(f"attnbench-fa4 needs vLLM (import failed: {e}); install it with "
                        "`pip install 'attnbench[gpu]'` on the GPU machine") from None
    try:
        from vllm.v1.attention.backends.registry import AttentionBackendEnum, register_backend

        custom = AttentionBackendEnum.CUSTOM
    except (ImportError, AttributeError) as e:
        log.warning("attnbench-fa4 not registered: this vLLM (%s) has no "
                    "AttentionBackendEnum.CUSTOM/register_backend (%s); attnbench expects vLLM >= 0.26",
                    getattr(vllm, "__version__", "?"), e)
        return False
    if custom.is_overridden():
        current = custom.get_path()
        if current == BACKEND_PATH:
            return True
        log.warning("attnbench-fa4 replaces vLLM's CUSTOM attention backend %s", current)
    register_backend(custom, BACKEND_PATH)
    return True
