"""EEPath: a timed end-effector path, the mid tier's hand-off to the low tier.

Waypoints are tool-centre-point poses in the robot base frame. Between waypoints the position is
interpolated linearly and the orientation by spherical linear interpolation; the gripper target holds
the value of the last waypoint passed (it is a command, not a continuous quantity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation, Slerp

from tiers.core.errors import ContractError


def wxyz_to_xyzw(quaternions: NDArray[np.float64]) -> NDArray[np.float64]:
    """(..., 4) quaternions from (w, x, y, z), the tiers convention, to (x, y, z, w), scipy's."""
    return np.roll(quaternions, -1, axis=-1)


def xyzw_to_wxyz(quaternions: NDArray[np.float64]) -> NDArray[np.float64]:
    """(..., 4) quaternions from (x, y, z, w) to (w, x, y, z)."""
    return np.roll(quaternions, 1, axis=-1)


@dataclass(frozen=True)
class EEPath:
    """Timed end-effector waypoints.

    Attributes:
        waypoints: (N, 7) float64, xyz in m then unit quaternion wxyz, in ``frame``.
        times: (N,) float64 s from the start of the path, non-negative and strictly increasing.
        gripper: (N,) float64 target gripper opening in m, from each waypoint on.
        frame: the frame of the waypoints; the robot base frame unless stated.
    """

    waypoints: NDArray[np.float64]
    times: NDArray[np.float64]
    gripper: NDArray[np.float64]
    frame: str = "base"

    def __post_init__(self) -> None:
        waypoints = np.array(self.waypoints, dtype=np.float64)
        times = np.array(self.times, dtype=np.float64)
        gripper = np.array(self.gripper, dtype=np.float64)
        if waypoints.ndim != 2 or waypoints.shape[1] != 7 or len(waypoints) == 0:
            raise ContractError(f"EEPath.waypoints must be (N, 7) with N >= 1, got {waypoints.shape}")
        n = len(waypoints)
        if times.shape != (n,) or gripper.shape != (n,):
            raise ContractError(f"EEPath.times and .gripper must be ({n},), got {times.shape} and {gripper.shape}")
        for name, array in (("waypoints", waypoints), ("times", times), ("gripper", gripper)):
            if not np.all(np.isfinite(array)):
                raise ContractError(f"EEPath.{name} has non-finite values")
        if times[0] < 0 or np.any(np.diff(times) <= 0):
            raise ContractError(f"EEPath.times must start >= 0 and strictly increase, got {times}")
        norms = np.linalg.norm(waypoints[:, 3:], axis=1)
        if np.any(np.abs(norms - 1.0) > 1e-3):
            raise ContractError(f"EEPath quaternions must have unit norm, got norms {norms}")
        waypoints[:, 3:] /= norms[:, None]
        for array in (waypoints, times, gripper):
            array.setflags(write=False)
        object.__setattr__(self, "waypoints", waypoints)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "gripper", gripper)

    @property
    def positions(self) -> NDArray[np.float64]:
        """(N, 3) m."""
        return self.waypoints[:, :3]

    @property
    def quaternions(self) -> NDArray[np.float64]:
        """(N, 4) wxyz."""
        return self.waypoints[:, 3:]

    @property
    def duration(self) -> float:
        """s from the first to the last waypoint."""
        return float(self.times[-1] - self.times[0])

    def sample(self, times: NDArray[np.float64] | float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Poses and gripper targets at ``times`` (s), clamped to the path's time span.

        Returns:
            poses: (M, 7) xyz m + quaternion wxyz; gripper: (M,) m.
        """
        query = np.clip(np.atleast_1d(np.asarray(times, dtype=np.float64)), self.times[0], self.times[-1])
        positions = np.stack([np.interp(query, self.times, self.positions[:, i]) for i in range(3)], axis=1)
        if len(self.times) == 1:
            quaternions = np.repeat(self.quaternions, len(query), axis=0)
        else:
            slerp = Slerp(self.times, Rotation.from_quat(wxyz_to_xyzw(self.quaternions)))
            quaternions = xyzw_to_wxyz(slerp(query).as_quat())
        index = np.searchsorted(self.times, query, side="right") - 1
        return np.concatenate([positions, quaternions], axis=1), self.gripper[index]

    def segment_speeds(self) -> NDArray[np.float64]:
        """(N-1,) m/s, the straight-line speed of each segment (for checks against velocity limits)."""
        lengths: NDArray[np.float64] = np.linalg.norm(np.diff(self.positions, axis=0), axis=1)
        durations: NDArray[np.float64] = np.diff(self.times)
        return lengths / durations
