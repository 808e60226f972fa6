"""RT-H motion corrections: with the ``motion`` planner a spoken motion becomes the low tier's command for its span
(no IK nudge) and is logged as an intervention with provenance; other planners keep the nudge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import MidLevelPlan
from tiers.policies.hierarchy.runtime import HierarchyRuntime, RuntimeSettings
from tiers.policies.high.motion_predictor import (
    MotionClassifier,
    MotionIntervention,
    MotionPredictor,
    MotionPredictorConfig,
)
from tiers.services.text_encoder import TextEncoder

INSTRUCTION = "open the kitchen drawer"


class RecordingLowTier:
    """A motion-conditioned low tier stand-in: records the commands it is started with, holds the arm."""

    def __init__(self) -> None:
        self.started: list[LanguageCommand] = []

    def reset(self) -> None:
        self.started = []

    def start(self, plan: MidLevelPlan, observation: Observation) -> None:
        self.started.append(plan.command)

    def act(self, observation: Observation) -> NDArray[np.float32]:
        return np.append(observation.joint_positions, observation.gripper_opening).astype(np.float32)

    def finished(self, observation: Observation) -> bool:
        return False

    def drop_queued_actions(self) -> None:
        pass


class ScriptedPlanner:
    """A planner without the motion hook: one subtask, forever."""

    def reset(self, instruction: str) -> None:
        pass

    def next_command(self, observation: Observation) -> LanguageCommand:
        return LanguageCommand(INSTRUCTION, CommandStyle.SUBTASK, CommandSource.PLANNER, observation.timestamp)

    def handle_correction(self, correction: LanguageCommand) -> None:
        pass


@pytest.fixture(scope="module")
def panda() -> EmbodimentSpec:
    return EmbodimentSpec.load("panda")


@pytest.fixture(scope="module")
def predictor() -> MotionPredictor:
    torch.manual_seed(0)
    config = MotionPredictorConfig(hidden=32, state_width=16, text_width=16, override_s=1.0)
    return MotionPredictor(MotionClassifier(config, state_dim=8 + 7), encoder=TextEncoder(), period_s=0.5)


def observation_at(panda: EmbodimentSpec, t: float) -> Observation:
    joints = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.8])[: len(panda.joint_names)]
    return Observation(
        joint_positions=joints,
        joint_velocities=np.zeros_like(joints),
        ee_pose=np.array([0.5, 0.0, 0.4, 0.0, 1.0, 0.0, 0.0]),
        gripper_opening=0.04,
        timestamp=t,
        instruction=INSTRUCTION,
    )


def run(runtime: HierarchyRuntime, panda: EmbodimentSpec, start: float, end: float) -> None:
    for tick in range(round(start * 20), round(end * 20)):
        runtime.step(observation_at(panda, tick / 20))


def test_a_motion_correction_reaches_the_low_tier_as_its_command_and_is_logged(
    panda: EmbodimentSpec, predictor: MotionPredictor
) -> None:
    low = RecordingLowTier()
    runtime = HierarchyRuntime(predictor, low, embodiment=panda, settings=RuntimeSettings(planner_period_s=0.5))
    runtime.reset(INSTRUCTION, observation_at(panda, 0.0))
    predictor.drain_interventions()
    run(runtime, panda, 0.0, 1.0)
    predicted = low.started[-1]
    assert predicted.style is CommandStyle.MOTION and predicted.source is CommandSource.PLANNER

    said = "move a bit to the left" if predicted.text != "move arm left" else "lower"
    correction = runtime.correct(said, source=CommandSource.REPLAY, timestamp=1.0)
    run(runtime, panda, 1.0, 1.05)  # the tick that applies it
    assert runtime._nudge is None, "the motion planner's correction must not become an IK nudge"
    command = low.started[-1]
    assert command is correction.command
    assert command.style is CommandStyle.MOTION and command.text == correction.command.text
    assert runtime.language_motion == command.text and runtime.status()["command"] == command.text

    run(runtime, panda, 1.05, 1.9)  # the span (override_s = 1 s): the planner keeps emitting the correction
    assert low.started[-1] is command
    logged = predictor.drain_interventions()
    assert logged, "the replaced predictions are logged as interventions"
    first = logged[0]
    assert isinstance(first, MotionIntervention)
    assert (first.corrected, first.source, first.said) == (command.text, "replay", said)
    assert first.replaced == predicted.text and first.predicted in predictor.config.vocabulary
    assert first.instruction == INSTRUCTION and first.subtask is not None and len(first.state) == 15
    assert MotionIntervention.from_dict(first.to_dict()) == first

    run(runtime, panda, 1.9, 2.6)  # after the span the predictions are back
    assert low.started[-1].source is CommandSource.PLANNER
    assert not predictor.drain_interventions()
    events = [event for event in runtime.events if event.kind == "correction"]
    assert events and events[-1].command is command


def test_other_planners_keep_the_ik_nudge(panda: EmbodimentSpec) -> None:
    low = RecordingLowTier()
    runtime = HierarchyRuntime(ScriptedPlanner(), low, embodiment=panda)
    runtime.reset(INSTRUCTION, observation_at(panda, 0.0))
    runtime.correct("move left", timestamp=0.0)
    runtime.step(observation_at(panda, 0.0))
    assert runtime._nudge is not None and runtime._nudge.active
    assert [command.style for command in low.started] == [CommandStyle.SUBTASK]


def test_the_predictor_refuses_what_is_not_a_motion_phrase(predictor: MotionPredictor) -> None:
    subtask = LanguageCommand("open the drawer", CommandStyle.SUBTASK, CommandSource.HUMAN_LIVE, 0.0)
    unknown = LanguageCommand("move arm sideways", CommandStyle.MOTION, CommandSource.HUMAN_LIVE, 0.0)
    assert not predictor.handle_motion_correction(subtask)
    assert not predictor.handle_motion_correction(unknown)
