"""Low-tier drivers: how the runtime hands one command to a learned policy and knows when it is done.

:class:`PolicyDriver` runs any low-tier policy with lerobot's interface plus the two helpers tiers
policies have (``batch_from_observation``, ``action_for_env``). It conditions the policy on the command
text and, for path-conditioned policies, on the part of the mid tier's path that lies ahead: the window
``[elapsed, elapsed + (Ta - 1) / rate]`` s of the path, which is exactly what the policy saw in training
(the end-effector poses of the next Ta frames of a demonstration, see
:class:`tiers.policies.low.conditioning.HindsightConditions`).

A path-conditioned command is done once the path's time is over (plus a short settle) and the tool has
reached the path's end: within PATH_END_TOLERANCE_M of its last position and, when the path ends with the
gripper open, opened to that width. A learned policy lags a planned path now and then; it gets up to
PATH_GIVE_UP_S beyond the path's end to catch up before the command counts as done anyway. A policy
without a path is done when its time budget is spent. All of it works on a real robot: only the robot's own
measured tool pose and gripper, no privileged state.

Reproducibility: :meth:`PolicyDriver.seed` seeds the policy's sampler noise for an episode (a policy without
its own ``seed`` gets torch's global generator seeded instead). :meth:`PolicyDriver.degrade` (run only when the
hierarchy sets a latency budget, on the wall clock) lasts until the next :meth:`PolicyDriver.reset`, so one
episode's degradation never carries into the next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.ee_path import EEPath
from tiers.core.errors import ContractError
from tiers.core.observation import Observation

if TYPE_CHECKING:  # tiers.core.protocols imports torch; the ONNX low tier builds this driver without it
    from tiers.core.protocols import MidLevelPlan

PATH_SETTLE_S = 1.0  # s a path-following command keeps running after the path's end (the arm catches up)
PATH_GIVE_UP_S = 4.0  # s after the path's end when a command that has not reached the end counts as done anyway
PATH_END_TOLERANCE_M = 0.02  # m between the measured tool and the path's last position that counts as arrived
GRIPPER_OPEN_TOLERANCE_M = 0.01  # m short of the path's final opening that counts as opened
MIN_SAMPLER_STEPS = 1  # degradation stops here


class PathFollowerDriver:
    """Executes the mid tier's path directly through inverse kinematics (no learned low tier)."""

    def __init__(self, follower: Any) -> None:
        """``follower``: a :class:`tiers.policies.mid.execution.PathFollower` for the robot."""
        self.follower = follower
        self._planned = False

    def reset(self) -> None:
        self._planned = False

    def start(self, plan: MidLevelPlan, observation: Observation) -> None:
        if plan.path is None:
            # the mid tier found no path (it says why in its own log): nothing to follow, the command ends
            self._planned = False
            return
        self.follower.start(plan.path, observation.joint_positions)
        self._planned = True

    def act(self, observation: Observation) -> NDArray[np.float32]:
        if not self._planned:
            raise ContractError("PathFollowerDriver.act() without a path")
        return np.asarray(self.follower.act(), dtype=np.float32)

    def finished(self, observation: Observation) -> bool:
        return not self._planned or bool(self.follower.done)

    def drop_queued_actions(self) -> None:
        """A new plan restarts the follower from the measured joints; nothing is queued."""


class PolicyDriver:
    """A learned low tier as a :class:`~tiers.core.protocols.LowTierDriver`."""

    def __init__(self, policy: Any, *, control_rate_hz: float, command_budget_s: float = 15.0) -> None:
        """
        Args:
            policy: a low-tier policy (``tiers.policies.low.policy.GenerativeLowPolicy``, the lerobot adapter, or
                ``tiers.policies.low.onnx_policy.OnnxLowPolicy``, which runs without torch).
            control_rate_hz: the robot's control rate (the path window is Ta control periods long).
            command_budget_s: how long a command without a path runs before it counts as done.
        """
        self.policy = policy
        self.control_rate_hz = control_rate_hz
        self.command_budget_s = command_budget_s
        features = getattr(policy, "features", None)
        self.needs_images = bool(getattr(features, "cameras", {}))  # render cameras every tick
        conditioning = getattr(getattr(policy, "config", None), "conditioning", None)
        self.path_conditioned = bool(getattr(conditioning, "path_waypoints", 0))
        self._command = ""
        self._path: EEPath | None = None
        self._started = 0.0
        self._idle = False
        self._sampler_steps = getattr(getattr(policy, "config", None), "sampler_steps", None)  # before degrading

    def seed(self, seed: int) -> None:
        """Seed the policy's sampler noise for the coming episode (see the module docstring)."""
        seed_policy = getattr(self.policy, "seed", None)
        if callable(seed_policy):
            seed_policy(seed)
        else:
            import torch  # here, not at the top: the ONNX low tier runs this module on computers without torch

            torch.manual_seed(seed)

    def reset(self) -> None:
        """A new episode: forget the observation history and queued actions, undo any degradation."""
        self.policy.reset()
        config = getattr(self.policy, "config", None)
        if config is not None and self._sampler_steps is not None:
            config.sampler_steps = self._sampler_steps

    def start(self, plan: MidLevelPlan, observation: Observation) -> None:
        # a path-conditioned policy with no path (the mid tier found none, and says why) has nothing to do:
        # the command ends at once and the planner moves on
        self._idle = self.path_conditioned and plan.path is None
        self._command = plan.command.text
        self._path = plan.path
        self._started = float(observation.timestamp)
        set_guidance = getattr(self.policy, "set_guidance", None)
        if callable(set_guidance):
            set_guidance(plan.guidance, observation)
        elif plan.guidance:
            raise ContractError(f"{type(self.policy).__name__} takes no guidance terms; got {len(plan.guidance)}")
        self.policy.drop_queued_actions()

    def act(self, observation: Observation) -> NDArray[np.float32]:
        if self.path_conditioned:
            path = self._path_ahead(observation)
            batch = self.policy.batch_from_observation(observation, command=self._command, path=path)
        else:
            batch = self.policy.batch_from_observation(observation, command=self._command)
        action = self.policy.select_action(batch)  # torch policies run it under no_grad; ONNX needs no torch
        result: NDArray[np.float32] = self.policy.action_for_env(action)
        return result

    def finished(self, observation: Observation) -> bool:
        if self._idle:
            return True
        elapsed = float(observation.timestamp) - self._started
        if self._path is None:
            return elapsed >= self.command_budget_s
        over = elapsed - self._path.duration
        if over < PATH_SETTLE_S:
            return False
        return over >= PATH_GIVE_UP_S or self._reached_end(observation)

    def _reached_end(self, observation: Observation) -> bool:
        """Whether the measured tool is at the path's last position and, if it ends open, the gripper is open."""
        assert self._path is not None
        end = self._path.waypoints[-1, :3]
        if float(np.linalg.norm(observation.ee_pose[:3] - end)) > PATH_END_TOLERANCE_M:
            return False
        opening = float(self._path.gripper[-1])
        opens = opening > float(self._path.gripper.min())  # a path that ends wider than it ever was: a release
        return not opens or observation.gripper_opening >= opening - GRIPPER_OPEN_TOLERANCE_M

    def drop_queued_actions(self) -> None:
        self.policy.drop_queued_actions()

    def resume(self, paused_s: float) -> None:
        """The robot held still for ``paused_s`` s (a stop, then resume): the path's clock waits as long, so the
        policy is shown the part of the path it stopped at rather than the part it would have reached."""
        self._started += paused_s

    def degrade(self) -> str | None:
        """Halve the sampler's network evaluations per chunk (down to one); None when nothing is left to cut."""
        config = getattr(self.policy, "config", None)
        steps = getattr(config, "sampler_steps", None)
        if config is None or steps is None or steps <= MIN_SAMPLER_STEPS:
            return None
        config.sampler_steps = max(MIN_SAMPLER_STEPS, steps // 2)
        return f"sampler steps {steps} -> {config.sampler_steps}"

    def _path_ahead(self, observation: Observation) -> EEPath:
        """The window of the planned path the policy conditions on (see the module docstring)."""
        assert self._path is not None
        horizon = int(self.policy.config.horizon)
        offsets = np.arange(horizon, dtype=np.float64) / self.control_rate_hz
        elapsed = float(observation.timestamp) - self._started
        poses, gripper = self._path.sample(elapsed + offsets)
        return EEPath(waypoints=poses, times=offsets, gripper=gripper, frame=self._path.frame)
