"""IK execution of the per-family path fixes (issue 18) on kitchen tasks: pushes beside other objects, door
swings that keep hold of the handle (the push geometry on synthetic clouds: test_paths.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tiers.apps.ik_execution import kitchen_follower, run_task
from tiers.core.embodiment import EmbodimentSpec
from tiers.policies.mid.perception import perception_embodiment
from tiers.policies.mid.planner import KeypointPathPlanner
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.mujoco import MujocoKitchen


@pytest.fixture(scope="module")
def kitchen() -> Iterator[MujocoKitchen]:
    kitchen = MujocoKitchen(perception_embodiment(EmbodimentSpec.load("panda"), width=320, height=240))
    yield kitchen
    kitchen.close()


@pytest.mark.parametrize("task", ["push/bowl-right/1", "push/basket-left/1", "open/cabinet/0", "close/cabinet/0"])
def test_ik_execution_of_pushes_and_door_swings(kitchen: MujocoKitchen, task: str) -> None:
    env = KitchenEnv(backend=kitchen, render=False)
    planner = KeypointPathPlanner.for_kitchen(kitchen)
    planner.seed(1000)
    outcome = run_task(env, planner, kitchen_follower(kitchen), task, 1000)
    assert outcome.success, outcome.reason
    if task.startswith("open/cabinet"):
        affordance = planner.last.affordance if planner.last else None
        assert affordance is not None and affordance.pivot is not None
        # the tool leans toward the door panel (+x when closed) so the wrist flange clears the door's top
        assert affordance.approach[0] == pytest.approx(np.sin(planner.detector.config.door_lean), abs=0.05)
