"""The control loop without ROS: replay controller + safety filter + watchdog on a simulated clock."""

from __future__ import annotations

import numpy as np
import pytest

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError
from tiers.core.observation import Observation
from tiers.deploy.control_loop import ControlLoop
from tiers.deploy.controllers import JointTrajectoryReplay, build_controller
from tiers.deploy.observations import ObservationAssembler
from tiers.deploy.ros.scene_model import SceneModel
from tiers.deploy.safety import SafetyConfig, SafetyFilter
from tiers.deploy.watchdog import ControlState, Watchdog, WatchdogConfig

SPEC = EmbodimentSpec.load("panda")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _observation(assembler: ObservationAssembler, q: np.ndarray, t: float) -> Observation:
    names = [*SPEC.joint_names, *SPEC.gripper.joint_names]
    assembler.update_joints(names, [*q, 0.02, 0.02], [], t)
    return assembler.observation(instruction="sweep")


def _loop(controller_spec: str = "sweep") -> tuple[ControlLoop, _Clock]:
    clock = _Clock()
    watchdog = Watchdog(["joint_states"], WatchdogConfig(timeout_s=0.1, stop_after_s=0.3), clock=clock)
    safety = SafetyFilter(SPEC, SafetyConfig(check_workspace=False))
    return ControlLoop(build_controller(controller_spec, SPEC), safety, watchdog), clock


def test_observation_assembly_computes_the_tool_pose_and_opening() -> None:
    assembler = ObservationAssembler(SPEC)
    observation = _observation(assembler, np.array(SPEC.home), 1.5)
    assert observation.gripper_opening == pytest.approx(0.04)
    assert observation.timestamp == 1.5
    assert observation.ee_pose[:3] == pytest.approx([0.3069, 0.0, 0.4869], abs=1e-3)  # Franka's ready pose


def test_the_loop_acts_only_with_fresh_data_and_an_instruction() -> None:
    loop, clock = _loop()
    assembler = ObservationAssembler(SPEC)
    q = np.array(SPEC.home)
    assert loop.tick(None).command is None  # nothing has arrived
    loop.watchdog.feed("joint_states")
    assert loop.tick(_observation(assembler, q, 0.0)).command is None  # no instruction: nothing is sent
    loop.set_instruction("sweep the joints")
    commands = []
    for k in range(1, 40):
        clock.now = k * 0.05
        loop.watchdog.feed("joint_states")
        result = loop.tick(_observation(assembler, q, clock.now))
        assert result.state is ControlState.RUNNING and result.command is not None and result.motion
        commands.append(result.command)
        q = result.command[:7]  # a perfect position servo
    assert np.ptp(np.array(commands)[:, 0]) > 0.05  # the sweep moves joint 1
    clock.now += 0.15  # joint states stop
    held = loop.tick(_observation(assembler, q, clock.now))
    assert held.state is ControlState.HOLDING and not held.motion
    np.testing.assert_array_equal(held.command, commands[-1])
    clock.now += 0.4
    assert loop.tick(None).state is ControlState.STOPPED


def test_watch_between_ticks_sends_the_hold_at_once() -> None:
    loop, clock = _loop()
    assembler = ObservationAssembler(SPEC)
    loop.watchdog.feed("joint_states")
    assert loop.watch() is None  # fresh: nothing to do between ticks
    clock.now = 0.2
    assert loop.watch() is None and loop.watchdog.state is not ControlState.HOLDING  # no instruction: no latch
    loop.watchdog.feed("joint_states")
    loop.set_instruction("sweep the joints")
    sent = loop.tick(_observation(assembler, np.array(SPEC.home), clock.now)).command
    clock.now += 0.101
    hold = loop.watch()
    assert hold is not None and hold.state is ControlState.HOLDING and not hold.motion
    np.testing.assert_array_equal(hold.command, sent)
    assert loop.watch() is None  # sent once, on entering the hold; the ticks repeat it


def test_a_failing_controller_latches_the_stop() -> None:
    replay = JointTrajectoryReplay(np.full((5, 8), 0.1))
    loop, _ = _loop()
    loop.controller.low = replay  # type: ignore[attr-defined]
    replay.waypoints = np.zeros((5, 3))  # a trajectory for another robot: the runtime's act() fails on it
    assembler = ObservationAssembler(SPEC)
    loop.set_instruction("replay")
    loop.watchdog.feed("joint_states")
    result = loop.tick(_observation(assembler, np.array(SPEC.home), 0.0))
    assert result.state is ControlState.STOPPED and result.command is None
    assert "controller failed" in loop.watchdog.reason


def test_replay_continues_after_a_nudge_and_loops() -> None:
    assembler = ObservationAssembler(SPEC)
    here = _observation(assembler, np.array(SPEC.home), 0.0)
    sweep = JointTrajectoryReplay.sweep(SPEC, seconds=1.0)
    from tiers.core.features import CommandSource, CommandStyle
    from tiers.core.language import LanguageCommand
    from tiers.core.protocols import MidLevelPlan

    plan = MidLevelPlan(LanguageCommand("sweep", CommandStyle.SUBTASK, CommandSource.PLANNER, 0.0))
    sweep.start(plan, here)
    first = [sweep.act(here) for _ in range(30)]  # 20 ticks a cycle: wraps around
    assert not sweep.finished(here)
    np.testing.assert_allclose(first[20], first[0], atol=1e-6)
    sweep.start(plan, here)  # the same command again (after a nudge): continues, ramping from here
    assert sweep.act(here) is not None


def test_privileged_hierarchies_and_unknown_controllers_are_refused() -> None:
    with pytest.raises(ConfigError, match="ground truth"):
        build_controller("expert_reference", SPEC, scene_model=SceneModel)  # as the hierarchy node builds it
    with pytest.raises(ConfigError, match="needs the kitchen simulator"):
        build_controller("expert_reference", SPEC)  # no scene at all
    with pytest.raises(ConfigError, match="probe"):
        build_controller("probe:x", SPEC)
    with pytest.raises(ConfigError, match="does not exist"):
        build_controller("replay:/nonexistent.npy", SPEC)


def test_an_action_computed_while_the_data_went_stale_is_not_sent() -> None:
    """The controller steps without a lock (a mid tier may plan for a while) while the watchdog is checked from
    another thread: when the hold came meanwhile, the step's action is dropped and the hold stays in force."""
    sent: list[np.ndarray] = []
    loop, clock = _loop()
    loop.sink = sent.append
    assembler = ObservationAssembler(SPEC)
    loop.set_instruction("sweep the joints")
    loop.watchdog.feed("joint_states")
    loop.tick(_observation(assembler, np.array(SPEC.home), 0.0))
    step = loop.controller.step

    def slow_step(observation: Observation) -> object:
        clock.now += 0.15  # the step takes 150 ms: the joint states are stale by the time it returns
        assert loop.watch() is not None  # the watch thread holds at once (sent through the sink)
        return step(observation)

    loop.controller.step = slow_step  # type: ignore[method-assign]
    result = loop.tick(_observation(assembler, np.array(SPEC.home), 0.05))
    assert result.state is ControlState.HOLDING and not result.motion
    assert len(sent) == 3  # the first tick's command, the watch's hold, the tick's hold (not its action)
    assert all(np.array_equal(command, sent[0]) for command in sent[1:])
