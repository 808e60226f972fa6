"""Kitchen episodes executed by the mid tier alone: perception from rendered RGB-D, keypoint paths, IK.

For each subtask of a task's gold plan the episode renders RGB-D, plans with the mid tier's
:class:`~tiers.policies.mid.planner.KeypointPathPlanner` (perception only, no privileged poses) and follows the
path with its :class:`~tiers.policies.mid.execution.PathFollower`; the kitchen's success predicate decides::

    for subtask in task.plan:
        observation (rendered RGB-D) + subtask -> planner -> EEPath (or a reason: the episode ends)
        follower.start(path, q) ; until follower.done: env.step(follower.act())     (J+1,) joint targets + gripper

:func:`run_task` runs it in a :class:`~tiers.sim.kitchen.env.KitchenEnv` (the task's own layout for a seed),
:func:`run_layout` on a given layout (the test-time-shift scenes of :mod:`tiers.sim.kitchen.shifts`), and
:func:`evaluate` over tasks and seeds (``tiers bench steering --ik-episodes``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from tiers.commands.subtasks import Subtask
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.features import CommandSource
from tiers.policies.mid.execution import PathFollower
from tiers.policies.mid.perception import perception_embodiment
from tiers.policies.mid.planner import KeypointPathPlanner
from tiers.services.kinematics import ArmKinematics
from tiers.sim.backend import SimBackend
from tiers.sim.kitchen.env import STEPS_PER_SUBTASK, KitchenEnv
from tiers.sim.kitchen.layout import KitchenLayout
from tiers.sim.kitchen.tasks import Task, get_task
from tiers.sim.mujoco import MujocoKitchen


@dataclass
class SubtaskOutcome:
    """What happened to one subtask of an episode."""

    subtask: str  # canonical text
    planned: bool  # a path was found
    reason: str  # why not, when not
    steps: int = 0  # control steps executed
    perception_s: float = 0.0  # s to build the cloud and find the affordance
    planning_s: float = 0.0  # s to plan the path


@dataclass
class EpisodeOutcome:
    """One episode of :func:`run_task` or :func:`run_layout`."""

    task_id: str
    seed: int
    success: bool
    reason: str
    steps: int
    subtasks: list[SubtaskOutcome] = field(default_factory=list)


def run_task(
    env: KitchenEnv,
    planner: KeypointPathPlanner,
    follower: PathFollower,
    task_id: str,
    seed: int,
) -> EpisodeOutcome:
    """Run one kitchen task with the gold subtask plan, mid-tier perception and planning, and IK execution.

    ``env`` should be built with ``render=False`` (stepping stays fast); the RGB-D the planner sees is rendered
    from the backend once per subtask.
    """
    task = get_task(task_id)
    observation, info = env.reset(seed=seed, options={"task": task_id})
    planner.reset()
    outcome = EpisodeOutcome(task_id, seed, False, "", 0)
    for subtask in task.plan:
        rendered = env.backend.observe(render=True)
        command = Subtask.parse(subtask.text).to_command(rendered.timestamp, CommandSource.PLANNER)
        detailed = planner.plan_detailed(rendered, command)
        record = SubtaskOutcome(
            subtask.text, detailed.ok, detailed.reason, 0, detailed.perception_time, detailed.planning_time
        )
        outcome.subtasks.append(record)
        if detailed.plan.path is None:
            outcome.reason = f"{subtask.text}: no path: {detailed.reason}"
            outcome.steps = info["steps"]
            return outcome
        follower.start(detailed.plan.path, observation.joint_positions)
        while not follower.done:
            observation, _, terminated, truncated, info = env.step(follower.act().astype(np.float32))
            record.steps += 1
            if terminated or truncated:
                outcome.success = bool(info["success"])
                outcome.reason = info["reason"]
                outcome.steps = info["steps"]
                return outcome
    outcome.reason = f"plan executed; {info['reason']}"
    outcome.steps = info["steps"]
    outcome.success = bool(info["success"])
    return outcome


def run_layout(
    backend: SimBackend,
    planner: KeypointPathPlanner,
    follower: PathFollower,
    task: Task,
    layout: KitchenLayout,
) -> EpisodeOutcome:
    """:func:`run_task` on a given layout (test-time-shift scenes) instead of one the environment samples.

    The task's predicate is checked after every control step, as the environment does; the episode gets
    ``STEPS_PER_SUBTASK`` control steps per subtask of the gold plan.
    """
    observation = backend.reset(layout, render=False)
    initial = backend.scene_state()
    planner.reset()
    outcome = EpisodeOutcome(task.id, -1 if layout.seed is None else layout.seed, False, "", 0)
    limit = STEPS_PER_SUBTASK * len(task.plan)
    verdict = task.check(initial, initial)
    for subtask in task.plan:
        rendered = backend.observe(render=True)
        command = subtask.to_command(rendered.timestamp, CommandSource.PLANNER)
        detailed = planner.plan_detailed(rendered, command)
        record = SubtaskOutcome(
            subtask.text, detailed.ok, detailed.reason, 0, detailed.perception_time, detailed.planning_time
        )
        outcome.subtasks.append(record)
        if detailed.plan.path is None:
            outcome.reason = f"{subtask.text}: no path: {detailed.reason}"
            return outcome
        follower.start(detailed.plan.path, observation.joint_positions)
        while not follower.done and outcome.steps < limit:
            observation = backend.step(follower.act(), render=False)
            record.steps += 1
            outcome.steps += 1
            verdict = task.check(initial, backend.scene_state())
            if verdict.success:
                outcome.success, outcome.reason = True, verdict.reason
                return outcome
    outcome.reason = f"plan executed; {verdict.reason}"
    return outcome


def kitchen_follower(kitchen: MujocoKitchen) -> PathFollower:
    """An IK path follower on the kitchen's own scene model (its robot as placed there)."""
    spec = kitchen.embodiment
    return PathFollower(ArmKinematics(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame), spec)


def evaluate(
    task_ids: list[str], seeds: list[int], *, width: int = 320, height: int = 240, progress: bool = False
) -> list[EpisodeOutcome]:
    """Success of perception + path planning + IK execution on kitchen tasks (one episode per task and seed)."""
    spec = perception_embodiment(EmbodimentSpec.load("panda"), width=width, height=height)
    kitchen = MujocoKitchen(spec)
    env = KitchenEnv(backend=kitchen, render=False)
    planner = KeypointPathPlanner.for_kitchen(kitchen)
    follower = kitchen_follower(kitchen)
    outcomes = []
    try:
        for task_id in task_ids:
            for seed in seeds:
                started = time.perf_counter()
                outcome = run_task(env, planner, follower, task_id, seed)
                if progress:
                    print(
                        f"{task_id} seed {seed}: {'success' if outcome.success else 'failure'} "
                        f"({outcome.steps} steps, {time.perf_counter() - started:.1f} s) {outcome.reason}"
                    )
                outcomes.append(outcome)
    finally:
        env.close()
    return outcomes
