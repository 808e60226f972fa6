"""Test-wide settings (offline hub, offscreen rendering, hardware-gated markers) and shared recordings."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

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


TASK = "open/drawer/0"  # a short easy task: about 150 control steps


def _cli_args(verb: str, *argv: str) -> argparse.Namespace:
    """Parse ``argv`` with the parser of ``tiers <verb>`` (for running a verb in-process)."""
    from tiers.cli.main import build_parser

    return build_parser().parse_args([verb, *argv])


def _tiers_command(*argv: str) -> list[str]:
    """Command line running ``tiers <argv>`` in a fresh interpreter (the installed entry point's module)."""
    return [sys.executable, "-m", "tiers.cli.main", *argv]


@pytest.fixture(scope="session")
def camera_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 episodes of the expert on TASK with the robot's three 128 px cameras and front depth (``--depth``), as mp4."""
    from tiers.cli import record

    root = tmp_path_factory.mktemp("recordings") / "drawer"
    argv = ("--out", str(root), "--num-episodes", "2", "--tasks", TASK, "--seed", "0", "--depth")
    code = record.run(_cli_args("record", *argv))
    assert code == 0
    return root


@pytest.fixture(scope="session")
def state_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 proprioception-only episodes (no rendering): fast, for tests that corrupt or re-commit a dataset."""
    from tiers.cli import record

    root = tmp_path_factory.mktemp("recordings") / "state"
    args = _cli_args("record", "--out", str(root), "--num-episodes", "3", "--tasks", TASK, "--no-cameras")
    assert record.run(args) == 0
    return root


@pytest.fixture
def parse_cli() -> Callable[..., argparse.Namespace]:
    """``parse_cli("record", "--out", ...)``: the namespace ``tiers record --out ...`` would run with."""
    return _cli_args


@pytest.fixture
def tiers_command() -> Callable[..., list[str]]:
    """``tiers_command("record", ...)``: argv for a subprocess running ``tiers record ...``."""
    return _tiers_command
