"""Test-wide settings: offline hub, offscreen rendering, hardware-gated markers."""

from __future__ import annotations

import importlib.util
import os

import pytest

# Nothing may reach a model hub at run time; set before anything imports huggingface_hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# MuJoCo renders on the CPU through Mesa's EGL when there is no display.
if "DISPLAY" not in os.environ:
    os.environ.setdefault("MUJOCO_GL", "egl")


def _has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip gpu/isaacsim tests where the hardware or package is missing, saying which."""
    has_gpu: bool | None = None
    for item in items:
        if "gpu" in item.keywords:
            if has_gpu is None:
                has_gpu = _has_cuda()
            if not has_gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU; none is visible to torch"))
        if "isaacsim" in item.keywords and importlib.util.find_spec("isaacsim") is None:
            item.add_marker(pytest.mark.skip(reason="needs Isaac Sim: pip install 'tiers[isaacsim]' on an RTX machine"))
