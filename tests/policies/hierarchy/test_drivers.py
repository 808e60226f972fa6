"""When a learned low tier's command is done: the path's time, then arrival at its end (or a give-up time).

The driver runs the BESO checkpoint shipped with tiers; observations come from the real kitchen, moved in time
and in tool pose to play a policy that lags its path.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tiers.core import CommandSource, CommandStyle, EEPath, LanguageCommand, MidLevelPlan, Observation
from tiers.policies.hierarchy.drivers import PATH_GIVE_UP_S, PATH_SETTLE_S, PolicyDriver
from tiers.policies.hierarchy.registry import PRETRAINED_PREFIX, HierarchyContext
from tiers.policies.low.checkpoint import load_policy
from tiers.sim.kitchen.env import KitchenEnv

OPEN, CLOSED = 0.08, 0.0


@pytest.fixture(scope="module")
def env() -> KitchenEnv:
    kitchen = KitchenEnv("open/drawer/0", render=False)
    yield kitchen
    kitchen.close()


@pytest.fixture(scope="module")
def start(env: KitchenEnv) -> Observation:
    return env.reset(seed=0)[0]


@pytest.fixture(scope="module")
def driver(env: KitchenEnv) -> PolicyDriver:
    context = HierarchyContext(embodiment=env.embodiment)
    policy = load_policy(context.resolve(f"{PRETRAINED_PREFIX}kitchen_paths_beso"), embodiment=context.embodiment)
    return PolicyDriver(policy, control_rate_hz=env.embodiment.control_rate_hz)


def _plan(start: Observation, gripper: tuple[float, float]) -> MidLevelPlan:
    """A 2 s path from the tool's pose 10 cm down, the gripper target changing from ``gripper[0]`` to ``[1]``."""
    end = start.ee_pose.copy()
    end[2] -= 0.1
    path = EEPath(np.stack([start.ee_pose, end]), np.array([0.0, 2.0]), np.array(gripper))
    command = LanguageCommand("put the cup in the drawer", CommandStyle.SUBTASK, CommandSource.PLANNER, 0.0)
    return MidLevelPlan(command, path)


def _at(start: Observation, t: float, *, down: float = 0.0, opening: float = CLOSED) -> Observation:
    pose = start.ee_pose.copy()
    pose[2] -= down
    return replace(start, timestamp=start.timestamp + t, ee_pose=pose, gripper_opening=opening)


def test_a_release_is_done_once_the_tool_is_at_the_end_and_open(driver: PolicyDriver, start: Observation) -> None:
    driver.start(_plan(start, (CLOSED, OPEN)), start)
    settled = 2.0 + PATH_SETTLE_S
    assert not driver.finished(_at(start, 1.9, down=0.1, opening=OPEN))  # the path's time is not over
    assert not driver.finished(_at(start, settled, down=0.05, opening=OPEN))  # lagging: 5 cm short of the end
    assert not driver.finished(_at(start, settled, down=0.1, opening=0.04))  # at the end, not yet let go
    assert driver.finished(_at(start, settled, down=0.1, opening=OPEN - 0.005))
    assert driver.finished(_at(start, 2.0 + PATH_GIVE_UP_S, down=0.0))  # never arrived: done anyway


def test_a_grasp_path_ends_closed_and_needs_only_the_position(driver: PolicyDriver, start: Observation) -> None:
    driver.start(_plan(start, (OPEN, CLOSED)), start)
    # the fingers rest on the object: the measured opening is its width, never the 0 m target
    assert driver.finished(_at(start, 2.0 + PATH_SETTLE_S, down=0.1, opening=0.05))
