"""The mid tier's scene memory on the rendered kitchen: a handle the hand hides is planned from its last
estimate (with its age), not when memory is off or too old; held and moved objects are not recalled at their
old place; with everything in view the plans are those without memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import mujoco
import numpy as np
import pytest
from numpy.typing import NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.policies.mid.perception import perception_embodiment
from tiers.policies.mid.planner import KeypointPathPlanner, MidPlannerConfig
from tiers.policies.mid.scene_memory import SceneMemoryConfig
from tiers.sim.kitchen.layout import parking_position, sample_layout
from tiers.sim.mujoco import ArmKinematics, MujocoKitchen

HIDDEN = "the drawer's handle is not in view of any depth camera"


@pytest.fixture(scope="module")
def kitchen() -> Iterator[MujocoKitchen]:
    kitchen = MujocoKitchen(perception_embodiment(EmbodimentSpec.load("panda"), width=320, height=240))
    yield kitchen
    kitchen.close()


def command(text: str) -> LanguageCommand:
    return LanguageCommand(text=text, style=CommandStyle.SUBTASK, source=CommandSource.PLANNER, timestamp=0.0)


def planner(kitchen: MujocoKitchen, **memory: float | bool) -> KeypointPathPlanner:
    return KeypointPathPlanner.for_kitchen(kitchen, MidPlannerConfig(memory=SceneMemoryConfig(**memory)))  # type: ignore[arg-type]


def hand_over(
    kitchen: MujocoKitchen, point: NDArray[np.float64], start: Observation, seconds: float = 3.0
) -> Observation:
    """Drive the arm (joint-position actions, fingers wide open) until the TCP is 2 cm above ``point``."""
    spec = kitchen.embodiment
    kinematics = ArmKinematics(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame)
    home = np.asarray(spec.home, dtype=np.float64)
    solution = kinematics.solve(point + np.array([0.0, 0.0, 0.02]), start.ee_pose[3:], q_init=home, q_rest=home)
    assert solution.success
    steps = int(seconds / spec.control_period)
    for step in range(steps):
        blend = min(1.0, (step + 1) / (0.7 * steps))
        target = start.joint_positions + blend * (solution.qpos - start.joint_positions)
        kitchen.step(np.append(target, spec.gripper.max_opening), render=False)
    return kitchen.observe()


def test_a_handle_the_hand_hides_is_planned_from_memory(kitchen: MujocoKitchen) -> None:
    layout = sample_layout(5, objects=["apple", "bowl"], n_distractors=2)
    remembering, forgetful, short = planner(kitchen), planner(kitchen, enabled=False), planner(kitchen, max_age=1.0)
    seen = kitchen.reset(layout)
    first = {p: p.plan_detailed(seen, command("open the drawer")) for p in (remembering, forgetful, short)}
    assert all(outcome.ok and not outcome.memory for outcome in first.values())
    affordance = first[remembering].affordance
    assert affordance is not None
    handle = affordance.point
    hidden = hand_over(kitchen, handle, seen)
    assert hidden.timestamp == pytest.approx(3.0)

    outcome = remembering.plan_detailed(hidden, command("open the drawer"))
    assert outcome.ok, outcome.reason
    assert outcome.memory == ("the drawer's handle from memory, 3.0 s old",)
    assert outcome.affordance is not None
    np.testing.assert_allclose(outcome.affordance.point, handle, atol=1e-9)  # the closed drawer's handle, as seen
    assert outcome.plan.path is not None
    np.testing.assert_allclose(outcome.plan.path.positions[0], hidden.ee_pose[:3], atol=1e-9)

    off = forgetful.plan_detailed(hidden, command("open the drawer"))
    assert not off.ok and off.reason == HIDDEN and not off.memory
    old = short.plan_detailed(hidden, command("open the drawer"))
    assert not old.ok and old.reason.startswith(HIDDEN)
    assert "last seen 3.0 s ago, memory keeps 1 s" in old.reason

    remembering.reset()  # a new episode starts blind
    again = remembering.plan_detailed(hidden, command("open the drawer"))
    assert not again.ok and again.reason == HIDDEN


def test_memory_only_fills_gaps(kitchen: MujocoKitchen) -> None:
    observation = kitchen.reset(sample_layout(5, objects=["apple", "bowl"], n_distractors=2))
    remembering, forgetful = planner(kitchen), planner(kitchen, enabled=False)
    for text in ("pick up the apple", "open the drawer", "pick up the bowl"):
        with_memory = remembering.plan_detailed(observation, command(text))
        without = forgetful.plan_detailed(observation, command(text))
        assert with_memory.reason == without.reason and not with_memory.memory, text
        if without.plan.path is not None:
            assert with_memory.plan.path is not None
            np.testing.assert_array_equal(with_memory.plan.path.positions, without.plan.path.positions)


def test_moved_and_held_objects_are_not_recalled_at_their_old_place(kitchen: MujocoKitchen) -> None:
    seen = kitchen.reset(sample_layout(5, objects=["apple", "bowl"], n_distractors=2))
    remembering = planner(kitchen)
    assert remembering.plan_detailed(seen, command("pick up the apple")).ok
    assert "apple" in remembering.memory.things

    # hidden from the cameras (masked out), still there: recalled
    apple_id = next(i for i, name in seen.object_names.items() if name == "apple")
    masked = {name: np.where(ids == apple_id, -1, ids) for name, ids in seen.segmentation.items()}
    later = replace(seen, segmentation=masked, timestamp=2.0)
    recalled = remembering.plan_detailed(later, command("pick up the apple"))
    assert recalled.ok and recalled.memory == ("the apple from memory, 2.0 s old",)

    # taken away: the cameras see the counter where it stood, so it is not recalled (and forgotten)
    model, data = kitchen.model, kitchen.data
    address = model.jnt_qposadr[model.body("apple").jntadr[0]]
    data.qpos[address : address + 3] = parking_position("apple")
    mujoco.mj_forward(model, data)
    gone = kitchen.observe()
    outcome = remembering.plan_detailed(gone, command("pick up the apple"))
    assert not outcome.ok and "not in view" in outcome.reason
    assert "sees past where it was: it has moved" in outcome.reason
    assert "apple" not in remembering.memory.things

    # seen in the hand (at the TCP, fingers not wide open): forgotten, never recalled where it was picked
    observation = kitchen.reset(sample_layout(5, objects=["apple", "bowl"], n_distractors=2))
    remembering.reset()
    remembering.plan_detailed(observation, command("pick up the apple"))
    apple = remembering.memory.things["apple"].points.mean(axis=0)
    holding = replace(observation, ee_pose=np.concatenate([apple, observation.ee_pose[3:]]), gripper_opening=0.06)
    remembering.plan_detailed(holding, command("put the apple in the bowl"))
    assert "apple" not in remembering.memory.things and "bowl" in remembering.memory.things
