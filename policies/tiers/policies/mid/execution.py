"""Direct execution of an :class:`~tiers.core.ee_path.EEPath` through inverse kinematics.

:class:`PathFollower` is a low-tier-compatible controller: each control step it samples the path at the
step's time, solves damped-least-squares IK for that tool pose (the kitchen's
:class:`~tiers.services.kinematics.ArmKinematics`, warm-started from the last solution, null space pulled
toward home), limits each joint's change to a fraction of its velocity limit, and returns a joint-position
action (J joint targets rad, then the gripper opening m)::

    step k:   t_k = k·dt                      path time (s)
              pose_k, g_k = path.sample(t_k)   tool pose (base frame) and gripper command
              q_k = IK(pose_k | q_{k-1})       rad
              q_k = q_{k-1} + clip(q_k − q_{k-1}, ±f·v_max·dt)
              action_k = [q_k, g_k]            (J+1,)

:func:`run_task` closes the loop on a kitchen task: for each subtask of its plan it renders RGB-D,
plans with :class:`~tiers.policies.mid.planner.KeypointPathPlanner` (perception only, no privileged poses),
and follows the path; the environment's success predicate decides the outcome.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tiers.commands.subtasks import Subtask
from tiers.core.config import Config
from tiers.core.ee_path import EEPath
from tiers.core.embodiment import CameraSpec, EmbodimentSpec
from tiers.core.features import CommandSource

if TYPE_CHECKING:
    from tiers.policies.mid.planner import KeypointPathPlanner
    from tiers.services.kinematics import ArmKinematics
    from tiers.sim.backend import SimBackend
    from tiers.sim.kitchen.env import KitchenEnv
    from tiers.sim.kitchen.layout import KitchenLayout
    from tiers.sim.kitchen.tasks import Task


@dataclass
class FollowerConfig(Config):
    """IK path following."""

    ik_iterations: int = 40  # damped-least-squares iterations per control step (warm-started)
    joint_speed_fraction: float = 0.9  # fraction of each joint's velocity limit one step may use
    settle_steps: int = 8  # control steps the final pose is held after the path ends

    def __post_init__(self) -> None:
        if not 0 < self.joint_speed_fraction <= 1:
            raise ValueError(f"joint_speed_fraction must be in (0, 1], got {self.joint_speed_fraction}")


class PathFollower:
    """EEPath -> joint-position actions at the control rate (see the module timeline)."""

    def __init__(self, kinematics: ArmKinematics, embodiment: EmbodimentSpec, config: FollowerConfig | None = None):
        self.config = config or FollowerConfig()
        self._kinematics = kinematics
        self._dt = embodiment.control_period
        self._max_dq = self.config.joint_speed_fraction * embodiment.velocity_limits * self._dt  # (J,) rad/step
        self._home = np.asarray(embodiment.home, dtype=np.float64)
        self._lower, self._upper = embodiment.position_limits
        self._max_opening = embodiment.gripper.max_opening
        self._path: EEPath | None = None
        self._q = self._home.copy()
        self._step = 0
        self.ik_failures = 0  # control steps whose IK did not converge (the best effort was commanded)

    def start(self, path: EEPath, joint_positions: NDArray[np.float64]) -> None:
        """Follow ``path`` from its time 0, starting from the measured configuration (J,) rad."""
        self._path = path
        self._q = np.asarray(joint_positions, dtype=np.float64).copy()
        self._step = 0
        self.ik_failures = 0

    @property
    def done(self) -> bool:
        """The path's end was reached and held ``settle_steps`` steps (True before any path)."""
        if self._path is None:
            return True
        return bool(self._step * self._dt > self._path.times[-1] + self.config.settle_steps * self._dt)

    @property
    def steps_total(self) -> int:
        """Control steps the current path takes, settling included."""
        if self._path is None:
            return 0
        return int(np.ceil(self._path.times[-1] / self._dt)) + self.config.settle_steps + 1

    def act(self) -> NDArray[np.float64]:
        """The next (J+1,) action: joint targets rad, gripper opening m (holds the last pose once done)."""
        if self._path is None:
            raise RuntimeError("PathFollower.act() before start(path, q)")
        self._step += 1
        t = min(self._step * self._dt, float(self._path.times[-1]))
        pose, gripper = self._path.sample(t)
        result = self._kinematics.solve(
            pose[0, :3], pose[0, 3:], q_init=self._q, q_rest=self._home, max_iterations=self.config.ik_iterations
        )
        if not result.success:
            self.ik_failures += 1
        step = np.clip(np.asarray(result.qpos) - self._q, -self._max_dq, self._max_dq)
        self._q = np.clip(self._q + step, self._lower, self._upper)
        return np.append(self._q, float(np.clip(gripper[0], 0.0, self._max_opening)))


def perception_embodiment(
    embodiment: EmbodimentSpec, *, cameras: tuple[str, ...] = ("front", "top"), width: int = 320, height: int = 240
) -> EmbodimentSpec:
    """A copy of ``embodiment`` whose named world cameras render depth at ``width`` x ``height``.

    The kitchen's preset renders 128x128 RGB with depth on the front camera only; the mid tier's perception
    fuses two RGB-D views at a higher resolution (the handle bars are 16 mm thick).
    """
    specs: list[CameraSpec] = []
    for camera in embodiment.cameras:
        if camera.name in cameras:
            camera = replace(camera, width=width, height=height, depth=True)
        specs.append(camera)
    return replace(embodiment, cameras=specs)


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
    """One episode of :func:`run_task`."""

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
    from tiers.sim.kitchen.tasks import get_task

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
    from tiers.sim.kitchen.env import STEPS_PER_SUBTASK

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


def evaluate(
    task_ids: list[str], seeds: list[int], *, width: int = 320, height: int = 240, progress: bool = False
) -> list[EpisodeOutcome]:
    """Success of perception + path planning + IK execution on kitchen tasks (one episode per task and seed)."""
    from tiers.policies.mid.planner import KeypointPathPlanner
    from tiers.sim.kitchen.env import KitchenEnv
    from tiers.sim.mujoco import ArmKinematics, MujocoKitchen

    spec = perception_embodiment(EmbodimentSpec.load("panda"), width=width, height=height)
    kitchen = MujocoKitchen(spec)
    env = KitchenEnv(backend=kitchen, render=False)
    planner = KeypointPathPlanner.for_kitchen(kitchen)
    kinematics = ArmKinematics(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame)
    follower = PathFollower(kinematics, spec)
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
