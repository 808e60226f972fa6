"""The hierarchy runtime in the real MuJoCo kitchen: multi-rate scheduling and live corrections.

Planner: the gold-plan echo (a reference planner); low tier: the scripted expert as a driver. Both are
real components of the benchmark, so these tests exercise the runtime's scheduling and its handling of
corrections, not the quality of a learned tier.
"""

from __future__ import annotations

import numpy as np
import pytest

from tiers.apps.evaluation.expert_driver import ExpertDriver
from tiers.apps.evaluation.planning import GoldPlanEcho
from tiers.core.features import CommandStyle
from tiers.policies.hierarchy.runtime import HierarchyRuntime, RuntimeSettings
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.tasks import get_task

TASK = "open/drawer/0"


@pytest.fixture(scope="module")
def env() -> KitchenEnv:
    kitchen = KitchenEnv(TASK, render=False)
    yield kitchen
    kitchen.close()


def _runtime(env: KitchenEnv, task_id: str = TASK) -> HierarchyRuntime:
    task = get_task(task_id)
    return HierarchyRuntime(
        GoldPlanEcho(task.plan),
        ExpertDriver(env),
        embodiment=env.embodiment,
        settings=RuntimeSettings(command_timeout_s=20.0),
    )


def test_runtime_completes_a_task_and_reports_timings(env: KitchenEnv) -> None:
    observation, _ = env.reset(seed=0, options={"task": TASK})
    runtime = _runtime(env)
    runtime.reset(observation.instruction, observation)
    success = False
    for _ in range(400):
        step = runtime.step(observation)
        observation, _, success, truncated, _ = env.step(step.action)
        if success or truncated or runtime.done:
            break
    assert success
    kinds = [event.kind for event in runtime.events]
    assert kinds[0] == "command" and runtime.events[0].command is not None
    assert runtime.events[0].command.style is CommandStyle.SUBTASK
    status = runtime.status()
    assert status["timings"]["low"]["calls"] > 50 and status["timings"]["planner"]["calls"] >= 1
    assert status["timings"]["step"]["p99_ms"] is not None


def test_stop_holds_still_until_resume_and_motion_nudges_the_tool(env: KitchenEnv) -> None:
    observation, _ = env.reset(seed=0, options={"task": TASK})
    runtime = _runtime(env)
    runtime.reset(observation.instruction, observation)
    for _ in range(30):  # let the arm get moving
        observation, *_ = env.step(runtime.step(observation).action)
    runtime.correct("stop!")
    held = []
    for _ in range(15):
        step = runtime.step(observation)
        assert step.hold
        observation, *_ = env.step(step.action)
        held.append(observation.ee_pose[:3].copy())
    # stopped on the very next tick: after the arm's own settling, the tool no longer moves
    assert np.linalg.norm(held[-1] - held[5]) < 0.005
    before = observation.ee_pose[:3].copy()
    runtime.correct("move up a bit")  # a motion correction also releases the stop
    motions = []
    for _ in range(12):  # a 2 cm nudge lasts 0.5 s = 10 ticks, then the expert takes over again
        step = runtime.step(observation)
        assert not step.hold
        motions.append(runtime.language_motion)
        observation, *_ = env.step(step.action)
    assert motions[:10] == ["move arm up"] * 10 and motions[-1] is None
    assert observation.ee_pose[2] - before[2] > 0.012  # "a bit" is 2 cm up
    assert abs(observation.ee_pose[0] - before[0]) < 0.01 and abs(observation.ee_pose[1] - before[1]) < 0.01
    log = [(event.kind, event.command.style if event.command else None) for event in runtime.events]
    assert ("correction", CommandStyle.STOP) in log and ("correction", CommandStyle.MOTION) in log


def test_a_subtask_correction_replaces_the_subtask_on_the_next_tick(env: KitchenEnv) -> None:
    task_id = "open/cabinet/0"
    observation, _ = env.reset(seed=1, options={"task": task_id})
    runtime = _runtime(env, task_id)
    runtime.reset(observation.instruction, observation)
    observation, *_ = env.step(runtime.step(observation).action)
    correction = runtime.correct("no, open the drawer first")
    assert correction.command.text == "open the drawer"
    assert correction.command.replaces is not None and correction.command.replaces.text == "open the cabinet"
    step = runtime.step(observation)
    assert step.command is not None and step.command.text == "open the drawer"
