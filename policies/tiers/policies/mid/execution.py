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

The loop that runs it on kitchen tasks (perception from rendered RGB-D, the keypoint planner, this follower) is
an application: :mod:`tiers.apps.ik_execution`; the hierarchy's ``ik_path`` low tier drives it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tiers.core.config import Config
from tiers.core.ee_path import EEPath
from tiers.core.embodiment import EmbodimentSpec
from tiers.services.kinematics import ArmKinematics


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
