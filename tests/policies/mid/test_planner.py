"""The keypoint path planner as a MidLevelPlanner on rendered kitchens, its bad-input results, the language
reward templates (IK execution of its paths on kitchen tasks: tests/apps/test_ik_execution.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.protocols import MidLevelPlanner
from tiers.policies.mid.execution import PathFollower
from tiers.policies.mid.language_rewards import subtask_rewards
from tiers.policies.mid.perception import perception_embodiment
from tiers.policies.mid.planner import KeypointPathPlanner, MidPlannerConfig
from tiers.sim.kitchen.layout import sample_layout
from tiers.sim.mujoco import ArmKinematics, MujocoKitchen


@pytest.fixture(scope="module")
def kitchen() -> Iterator[MujocoKitchen]:
    kitchen = MujocoKitchen(perception_embodiment(EmbodimentSpec.load("panda"), width=320, height=240))
    yield kitchen
    kitchen.close()


def command(text: str, style: CommandStyle = CommandStyle.SUBTASK) -> LanguageCommand:
    return LanguageCommand(text=text, style=style, source=CommandSource.PLANNER, timestamp=0.0)


def test_plans_carry_a_path_and_its_tracking_guidance(kitchen: MujocoKitchen) -> None:
    planner = KeypointPathPlanner.for_kitchen(kitchen)
    assert isinstance(planner, MidLevelPlanner)
    observation = kitchen.reset(sample_layout(5, objects=["apple", "bowl"], n_distractors=2))
    plan = planner.plan(observation, command("pick up the apple"))
    assert plan.path is not None and plan.command.text == "pick up the apple"
    assert len(plan.guidance) == 1 and plan.guidance[0].name == "track:path"
    assert np.all(plan.path.segment_speeds() <= kitchen.embodiment.max_ee_speed + 1e-6)
    np.testing.assert_allclose(plan.path.positions[0], observation.ee_pose[:3], atol=1e-9)
    # the tracking term rewards the path's own IK solution over holding still
    kinematics = ArmKinematics(kitchen.model, joint_names=kitchen.embodiment.joint_names,
                               site_name=kitchen.embodiment.ee_frame)  # fmt: skip
    follower = PathFollower(kinematics, kitchen.embodiment)
    follower.start(plan.path, observation.joint_positions)
    following = torch.tensor(np.stack([follower.act() for _ in range(16)]), dtype=torch.float32)[None]
    still = torch.tensor(np.append(observation.joint_positions, 0.08), dtype=torch.float32).expand(1, 16, -1)
    tracking = plan.guidance[0]
    assert float(tracking(following, observation)) > float(tracking(still, observation))


def test_bad_commands_and_scenes_give_reasons_not_crashes(kitchen: MujocoKitchen) -> None:
    planner = KeypointPathPlanner.for_kitchen(kitchen)
    observation = kitchen.reset(sample_layout(6, objects=["apple", "can"], n_distractors=0))
    cases = {
        "move arm forward": (CommandStyle.MOTION, "go to the low tier"),
        "dance a little": (CommandStyle.SUBTASK, "cannot parse subtask"),
        "pick up the banana": (CommandStyle.SUBTASK, "not in view"),
        "put the apple in the bowl": (CommandStyle.SUBTASK, "not in the hand"),
    }
    for text, (style, reason) in cases.items():
        outcome = planner.plan_detailed(observation, command(text, style))
        assert outcome.plan.path is None and not outcome.plan.guidance, text
        assert reason in outcome.reason, (text, outcome.reason)
    blind = replace(observation, depths={name: np.zeros_like(d) for name, d in observation.depths.items()})
    outcome = planner.plan_detailed(blind, command("pick up the apple"))
    assert outcome.plan.path is None and "empty" in outcome.reason


def test_language_templates_stage_the_rewards(kitchen: MujocoKitchen) -> None:
    planner = KeypointPathPlanner.for_kitchen(kitchen)
    observation = kitchen.reset(sample_layout(5, objects=["apple", "bowl"], n_distractors=2))
    outcome = planner.plan_detailed(observation, command("pick up the apple"))
    assert outcome.affordance is not None and outcome.cloud is not None
    staged = subtask_rewards(outcome.affordance, planner.fk, cloud=outcome.cloud)
    assert [stage.name for stage in staged.stages] == ["pre-grasp", "grasp", "lift"]
    term = staged.guidance()
    actions = torch.tensor(np.append(observation.joint_positions, 0.08), dtype=torch.float32).expand(2, 8, -1)
    assert term(actions, observation).shape == (2,)
    above_grasp = outcome.affordance.point + np.array([0.0, 0.0, 0.08])
    at_grasp = replace(observation, ee_pose=np.concatenate([above_grasp, [1.0, 0.0, 0.0, 0.0]]), timestamp=1.0)
    staged.update(at_grasp)
    assert staged.current.name == "grasp"
    # the planner hands the staged rewards down beside path tracking when asked to
    steered = KeypointPathPlanner.for_kitchen(kitchen, MidPlannerConfig(vls_weight=1.0))
    plan = steered.plan(observation, command("pick up the apple"))
    assert [term.name for term in plan.guidance] == ["track:path", "staged:pre-grasp/grasp/lift"]
    assert plan.guidance[1](actions, observation).shape == (2,)
