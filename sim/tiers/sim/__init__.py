"""tiers.sim: simulation backends (MuJoCo embedded by default, Isaac Sim optional) and the kitchen benchmark.

``tiers.sim.make(task)`` builds a kitchen task as a Gymnasium environment (also registered with
Gymnasium as ``tiers/Kitchen-v0``); see :mod:`tiers.sim.kitchen.env`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import gymnasium

if TYPE_CHECKING:
    from tiers.sim.kitchen.env import KitchenEnv

# MuJoCo renders offscreen through EGL when no display is attached; set before mujoco is imported.
if "DISPLAY" not in os.environ:
    os.environ.setdefault("MUJOCO_GL", "egl")

ENV_ID = "tiers/Kitchen-v0"
if ENV_ID not in gymnasium.registry:
    # the environment returns the core Observation, not a gymnasium space sample: skip the space checker
    gymnasium.register(id=ENV_ID, entry_point="tiers.sim.kitchen.env:KitchenEnv", disable_env_checker=True)


def make(task: Any = None, **kwargs: Any) -> KitchenEnv:
    """A kitchen task as a Gymnasium environment; arguments as :class:`~tiers.sim.kitchen.env.KitchenEnv`."""
    from tiers.sim.kitchen.env import KitchenEnv

    return KitchenEnv(task, **kwargs)
