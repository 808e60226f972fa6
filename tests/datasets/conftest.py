"""Recordings shared by the dataset tests (the camera and state recordings live in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

TASK = "open/drawer/0"  # as tests/conftest.py: a short easy task, about 120 control steps


@pytest.fixture(scope="session")
def default_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 episode recorded by a plain ``tiers record`` (no option): three 128 px RGB cameras and their models."""
    from tiers.cli import record
    from tiers.cli.main import build_parser

    root = tmp_path_factory.mktemp("recordings") / "default"
    args = build_parser().parse_args(["record", "--out", str(root), "--num-episodes", "1", "--tasks", TASK])
    assert record.run(args) == 0
    return root
