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


@pytest.mark.parametrize(
    ("task", "subtask"),
    [
        ("stack/bowl-plate/0", 0),  # the bowl by its wall, then onto the plate
        ("spatial/plate-in_front_of-cup/0", 0),  # the plate by one of its rim segments
        ("place_close/can-in-cabinet/3", 1),  # a tall object into the cabinet, then the door closed
        ("spatial/apple-behind-cup/0", 1),  # the nominal spot is taken (the box): the next free one
    ],
)
def test_ik_execution_of_rim_grasps_insertions_and_free_spots(kitchen: MujocoKitchen, task: str, subtask: int) -> None:
    env = KitchenEnv(backend=kitchen, render=False)
    planner = KeypointPathPlanner.for_kitchen(kitchen)
    planner.seed(1000)
    affordances = []
    plan_detailed = planner.plan_detailed

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        outcome = plan_detailed(*args, **kwargs)
        affordances.append(outcome.affordance)
        return outcome

    planner.plan_detailed = recording  # type: ignore[method-assign]
    outcome = run_task(env, planner, kitchen_follower(kitchen), task, 1000)
    assert outcome.success, outcome.reason
    affordance = affordances[subtask]
    assert affordance is not None
    if task.startswith(("stack", "spatial/plate")):  # closing radially at the rim, on the side nearest the robot
        dish = np.array([affordance.high[0] + affordance.low[0], affordance.high[1] + affordance.low[1]]) / 2
        radial = affordance.point[:2] - dish
        assert 0.05 < np.linalg.norm(radial) < 0.085
        assert abs(np.sin(affordance.yaw - np.arctan2(radial[1], radial[0]))) < 0.05
        assert np.linalg.norm(affordance.point[:2]) < np.linalg.norm(dish)
    elif "cabinet" in task:  # leaning into the cabinet's open front, sliding in along +x
        assert affordance.inserts and affordance.insertion[0] > 0.15
        assert affordance.approach[0] == pytest.approx(np.sin(planner.detector.config.cabinet_tilt_tall), abs=1e-6)
    else:
        assert affordance.point[2] < 0.03  # on the counter beside the cup, not on the box behind it
