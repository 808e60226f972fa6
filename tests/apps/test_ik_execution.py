"""IK execution of the mid tier's paths solving kitchen tasks from rendered RGB-D (no privileged poses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tiers.apps.ik_execution import kitchen_follower, run_task
from tiers.commands.subtasks import Subtask
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


@pytest.mark.parametrize(("task", "seed"), [("open/drawer/0", 0), ("pick_place/apple-in-bowl/0", 1)])
def test_ik_execution_solves_kitchen_tasks_from_rgbd(kitchen: MujocoKitchen, task: str, seed: int) -> None:
    env = KitchenEnv(backend=kitchen, render=False)
    planner = KeypointPathPlanner.for_kitchen(kitchen)
    follower = kitchen_follower(kitchen)
    outcome = run_task(env, planner, follower, task, seed)
    assert outcome.success, outcome.reason
    assert [record.subtask for record in outcome.subtasks] == [s.text for s in env.task.plan]  # type: ignore[union-attr]
    assert all(record.planned for record in outcome.subtasks)
    assert Subtask.parse(outcome.subtasks[0].subtask)
