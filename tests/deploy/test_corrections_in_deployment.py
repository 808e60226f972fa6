"""Corrections as a deployed hierarchy takes them: "resume" after a language "stop" goes on with the interrupted
command (it once re-planned, and a mid tier that could no longer see the handle abandoned the task), and a
subtask correction that cannot be followed leaves the current task running and says why."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import MidLevelPlan
from tiers.deploy.controllers import JointTrajectoryReplay
from tiers.policies.hierarchy.runtime import HierarchyRuntime

SPEC = EmbodimentSpec.load("panda")
KNOWN = ("open the drawer", "open the cabinet")


class _Planner:
    """Plans the instruction as one subtask; reads only the subtasks it knows (like the grammar planner)."""

    def __init__(self) -> None:
        self.given = False
        self.corrections: list[str] = []

    def reset(self, instruction: str) -> None:
        self.given = False

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        if self.given:
            return None
        self.given = True
        return LanguageCommand("open the drawer", CommandStyle.SUBTASK, CommandSource.PLANNER, observation.timestamp)

    def parse(self, text: str) -> tuple[str, ...]:
        if text not in KNOWN:
            raise ValueError(f"cannot plan {text!r}")
        return (text,)

    def handle_correction(self, correction: LanguageCommand) -> None:
        self.corrections.append(correction.text)


class _Mid:
    """Finds a path for the drawer once; afterwards the arm hides the handle (no path), as on the real graph."""

    def __init__(self) -> None:
        self.plans: list[str] = []
        self.last = SimpleNamespace(reason="")

    def reset(self) -> None:
        self.plans.clear()

    def plan(self, observation: Observation, command: LanguageCommand) -> MidLevelPlan:
        self.plans.append(command.text)
        if command.text == "open the drawer" and self.plans.count("open the drawer") == 1:
            self.last.reason = ""
            return MidLevelPlan(command, path=SimpleNamespace(waypoints=np.zeros((5, 7)), duration=2.0))  # type: ignore[arg-type]
        self.last.reason = "handle not in view of any depth camera"
        return MidLevelPlan(command)


def _observation(t: float, q: Any = None) -> Observation:
    return Observation(
        joint_positions=np.array(SPEC.home if q is None else q),
        joint_velocities=np.zeros(SPEC.dof),
        ee_pose=np.array([0.3, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0]),
        gripper_opening=0.04,
        timestamp=t,
    )


def _runtime() -> tuple[HierarchyRuntime, _Mid, JointTrajectoryReplay]:
    replay = JointTrajectoryReplay(np.linspace(0.0, 0.2, 200)[:, None] * np.ones((1, SPEC.dof + 1)), relative=True)
    mid = _Mid()
    runtime = HierarchyRuntime(_Planner(), replay, embodiment=SPEC, mid=mid)  # type: ignore[arg-type]
    return runtime, mid, replay


def test_resume_after_a_language_stop_continues_the_interrupted_command() -> None:
    runtime, mid, _ = _runtime()
    runtime.reset("open the kitchen drawer", _observation(0.0))
    actions = [runtime.step(_observation(0.05 * k)).action for k in range(1, 11)]
    runtime.correct("stop")
    for k in range(11, 41):  # 1.5 s stopped
        assert runtime.step(_observation(0.05 * k)).hold
    runtime.correct("continue")
    step = runtime.step(_observation(2.05))
    assert not step.hold and step.command is not None and step.command.text == "open the drawer"
    assert mid.plans == ["open the drawer"]  # not re-planned: the plan still holds where the arm stopped
    np.testing.assert_allclose(step.action, actions[-1] + (actions[-1] - actions[-2]), atol=1e-6)  # the next one
    assert not runtime.done
    kinds = [event.kind for event in runtime.events]
    assert "timeout" not in kinds and kinds.count("command") == 1


def test_an_unreadable_subtask_correction_leaves_the_task_running_and_says_why() -> None:
    runtime, _, _ = _runtime()
    runtime.reset("open the kitchen drawer", _observation(0.0))
    for k in range(1, 6):
        runtime.step(_observation(0.05 * k))
    runtime.correct("xyzzy plugh frobnicate")  # not a stop, resume or motion: a subtask nobody can read
    step = runtime.step(_observation(0.3))
    assert not step.hold and step.command is not None and step.command.text == "open the drawer"
    event = runtime.events[-1]
    assert event.kind == "correction" and "not followed: the planner cannot read it" in event.detail
    assert "'open the drawer' goes on" in event.detail
    assert runtime.planner.corrections == []  # type: ignore[attr-defined]
    # one the planner reads but the mid tier cannot plan: also refused, the drawer goes on
    runtime.correct("no, open the cabinet first")
    step = runtime.step(_observation(0.35))
    assert step.command is not None and step.command.text == "open the drawer" and not step.hold
    assert "no path (handle not in view of any depth camera)" in runtime.events[-1].detail
    assert not runtime.done
