"""Fixtures of the high-tier tests: one MuJoCo kitchen shared by the tests that need a real scene."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tiers.core.observation import Observation
from tiers.sim.kitchen.env import KitchenEnv

TASK = "pick_place/apple-in-bowl/0"  # apple, bowl and a few distractors; the expert solves it in ~170 steps


@pytest.fixture(scope="session")
def kitchen() -> Iterator[KitchenEnv]:
    """A kitchen env (no rendering in step; perception renders on demand). Reset it in each test."""
    env = KitchenEnv(TASK, render=False)
    yield env
    env.close()


@pytest.fixture
def reset_kitchen(kitchen: KitchenEnv) -> Callable[..., Observation]:
    """``reset_kitchen(task=TASK, seed=0)`` -> a rendered first observation (RGB-D + segmentation)."""

    def reset(task: str = TASK, seed: int = 0) -> Observation:
        kitchen.reset(seed=seed, options={"task": task})
        return kitchen.backend.observe(render=True)

    return reset
