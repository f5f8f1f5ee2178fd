"""What `attnbench backends` says about a backend: the modules, the GPU, and for our own backend
whether vLLM would load its plugin at all."""

from attnbench.backends import registry


def test_a_backend_whose_vllm_plugin_is_not_installed_is_unavailable_for_serving(monkeypatch):
    b = registry.get("attnbench-fa4")
    monkeypatch.setattr(registry, "_module_exists", lambda m: True)
    monkeypatch.setattr(registry, "_vllm_plugins", lambda: set())
    why = b.availability()
    assert not why.ok and "entry point 'attnbench_fa4' is not installed" in why.reason
    # its kernels alone (microbench) need no vLLM plugin: the next check is the GPU
    assert "entry point" not in b.availability(serving=False).reason


def test_the_plugin_needs_tvm_ffi_and_the_installed_package_declares_the_entry_point():
    assert "tvm_ffi" in registry.get("attnbench-fa4").requires
    assert "attnbench_fa4" in registry._vllm_plugins()  # the editable install of this checkout
