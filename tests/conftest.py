"""Shared test setup: GPU tests are skipped without CUDA; results never go to the repo's results/."""

import pytest


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the device)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ATTNBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "attnbench-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
