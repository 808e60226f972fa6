"""The one motion check every high-tier motion goes through before it reaches the robot or the simulator.

:func:`check_motion` is a pure function of the action, the robot's limits and (optionally) forward kinematics,
so the hierarchy runtime can reuse it for learned policies' actions too. It raises :class:`UnsafeMotionError`
naming the component, its value and the limit; it never clips silently (clipping is the environment's
documented job; refusing is this check's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiers.core.config import Config
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import TiersError


class UnsafeMotionError(TiersError):
    """A commanded motion is not finite, leaves the joint limits, moves too fast or leaves the workspace."""


@dataclass
class Workspace(Config):
    """Box the tool centre point must stay in, in the robot base frame (x forward, y left, z up)."""

    low: tuple[float, float, float] = (-0.15, -0.75, -0.02)  # m; the counter top is at z = 0
    high: tuple[float, float, float] = (0.95, 0.75, 0.85)  # m

    def __post_init__(self) -> None:
        if any(lo >= hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError(f"Workspace.low must be below Workspace.high on every axis, got {self.low}, {self.high}")


def check_motion(
    action: ArrayLike,
    spec: EmbodimentSpec,
    *,
    previous: ArrayLike | None = None,
    forward: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None = None,
    workspace: Workspace | None = None,
    speed_margin: float = 1.05,
    tolerance: float = 1e-6,
) -> None:
    """Refuse an unsafe joint-position action.

    Args:
        action: (J+1,) joint position targets in rad (the EmbodimentSpec's joint order), then the gripper
            opening target in m.
        spec: the robot (position and velocity limits, gripper range, control period).
        previous: (J+1,) the action commanded one control step earlier; when given, every joint's change must
            stay within ``speed_margin`` × its velocity limit × the control period.
        forward: q (J,) rad -> TCP position (3,) m in the base frame; with ``workspace``, the TCP at the target
            configuration must lie inside the workspace box.
        workspace: the TCP box (base frame); needs ``forward``.
        speed_margin: allowed factor over the velocity limits (numerical slack of IK-tracked motions).
        tolerance: rad / m of slack on the position limits and the gripper range.

    Raises:
        UnsafeMotionError: naming the joint (or gripper/TCP), the value and the limit.
    """
    values = np.asarray(action, dtype=np.float64)
    joints = spec.dof
    if values.shape != (joints + 1,):
        raise UnsafeMotionError(f"action must have shape ({joints + 1},) (joints + gripper), got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise UnsafeMotionError(f"action has non-finite values: {values.tolist()}")
    lower, upper = spec.position_limits
    q = values[:joints]
    for index in np.flatnonzero((q < lower - tolerance) | (q > upper + tolerance)):
        raise UnsafeMotionError(
            f"joint {spec.joint_names[index]} target {q[index]:.4f} rad is outside its limits "
            f"[{lower[index]:.4f}, {upper[index]:.4f}]"
        )
    gripper = values[joints]
    if not (-tolerance <= gripper <= spec.gripper.max_opening + tolerance):
        raise UnsafeMotionError(f"gripper target {gripper:.4f} m is outside [0, {spec.gripper.max_opening}]")
    if previous is not None:
        step = np.abs(q - np.asarray(previous, dtype=np.float64)[:joints])
        allowed = speed_margin * spec.velocity_limits * spec.control_period
        for index in np.flatnonzero(step > allowed + tolerance):
            raise UnsafeMotionError(
                f"joint {spec.joint_names[index]} moves {step[index]:.4f} rad in one step; at most "
                f"{allowed[index]:.4f} rad ({spec.velocity_limits[index]} rad/s × {spec.control_period} s"
                f" × {speed_margin})"
            )
    if workspace is not None:
        if forward is None:
            raise ValueError("check_motion: a workspace check needs forward kinematics (forward=...)")
        tcp = np.asarray(forward(q), dtype=np.float64)
        low, high = np.asarray(workspace.low), np.asarray(workspace.high)
        if np.any(tcp < low) or np.any(tcp > high):
            raise UnsafeMotionError(
                f"the TCP would be at {np.round(tcp, 3).tolist()} m, outside the workspace "
                f"{list(workspace.low)}..{list(workspace.high)} m"
            )
