"""Shared helpers of the low-tier policy tests: a tiny state-only policy over the recorded ``state_dataset``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tiers.datasets.loading import DatasetLoadingConfig, TrainingWindows, load_training_dataset
from tiers.policies.low.checkpoint import PolicyFeatures
from tiers.policies.low.policy import GenerativeLowPolicy, GenerativeLowPolicyConfig

HORIZON = 8  # Ta of the tiny policies
TINY_NETWORK = {"noise_embed_dim": 16, "transformer": {"width": 32, "depth": 1, "heads": 2}}
Stats = dict[str, dict[str, torch.Tensor]]


def tiny_policy_config(generator: str = "beso", **changes: Any) -> GenerativeLowPolicyConfig:
    """A state-only policy config small enough to train and sample in milliseconds; ``changes`` override it."""
    values: dict[str, Any] = {
        "generator": generator,
        "generator_options": {"network": TINY_NETWORK},
        "horizon": HORIZON,
        "n_action_steps": 4,
        "conditioning": {"token_dim": 32, "cameras": [], "language_key": None},
    }
    values["conditioning"].update(changes.pop("conditioning", {}))
    values.update(changes)
    return GenerativeLowPolicyConfig.from_dict(values)


@pytest.fixture(scope="session")
def state_windows(state_dataset: Path) -> tuple[TrainingWindows, Stats]:
    """Training windows (To=2, Ta=HORIZON) of the proprioception-only recording, with its statistics."""
    return load_training_dataset(DatasetLoadingConfig(root=state_dataset, n_obs_steps=2, horizon=HORIZON))


@pytest.fixture
def make_tiny_policy(
    state_dataset: Path, state_windows: tuple[TrainingWindows, Stats]
) -> Callable[..., GenerativeLowPolicy]:
    """``make_tiny_policy("flow", horizon=...)``: a freshly seeded tiny policy on the state dataset's statistics.

    Tiny: Ta = 8 actions, To = 2, 32-wide tokens, a one-block transformer; ``changes`` override config fields
    (``conditioning={...}`` merges into the conditioning), ``stats`` replaces the dataset's statistics.
    """

    def make(generator: str = "beso", *, stats: Stats | None = None, **changes: Any) -> GenerativeLowPolicy:
        config = tiny_policy_config(generator, **changes)
        torch.manual_seed(0)
        features = PolicyFeatures.from_dataset(
            state_dataset, cameras=[], image_size=None, language_key=config.conditioning.language_key
        )
        return GenerativeLowPolicy(config, features, state_windows[1] if stats is None else stats)

    return make


@pytest.fixture
def window_batch(state_windows: tuple[TrainingWindows, Stats]) -> Callable[[int], dict[str, Any]]:
    """``window_batch(B)``: the first B windows of the state dataset, collated."""

    def batch(size: int = 4) -> dict[str, Any]:
        loader = torch.utils.data.DataLoader(state_windows[0], batch_size=size, shuffle=False)
        first: dict[str, Any] = next(iter(loader))
        return first

    return batch
