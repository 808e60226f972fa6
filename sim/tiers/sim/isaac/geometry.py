"""Rigid-body geometry in numpy for the Isaac Sim backend: poses, joint values, axis-aligned bounds.

PhysX reports body poses only; joint values of fixtures that are not part of an articulation (drawer,
cabinet door), object bounds and task regions are computed here from those poses and the static facts
read once from the stage (:mod:`tiers.sim.isaac.stage`). Pure numpy, so it is tested on the CPU against
MuJoCo.

Conventions: positions in m, quaternions (w, x, y, z), a pose is (position (3,), quaternion (4,)) of a
frame in its parent (the world, which is the robot base frame).
"""

from __future__ import annotations

from enum import Enum

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from tiers.sim.scene_state import Box

Pose = tuple[NDArray[np.float64], NDArray[np.float64]]  # (position (3,) m, quaternion wxyz (4,))
IDENTITY: Pose = (np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0]))


def quat_to_matrix(quaternion: NDArray[np.float64]) -> NDArray[np.float64]:
    """(..., 4) wxyz quaternions -> (..., 3, 3) rotation matrices (normalised first)."""
    q = np.asarray(quaternion, dtype=np.float64)
    matrices: NDArray[np.float64] = Rotation.from_quat(q.reshape(-1, 4), scalar_first=True).as_matrix()
    return matrices.reshape(*q.shape[:-1], 3, 3)


def quat_multiply(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Hamilton product a ⊗ b of unit wxyz quaternions (rotation b, then a)."""
    product = Rotation.from_quat(a, scalar_first=True) * Rotation.from_quat(b, scalar_first=True)
    result: NDArray[np.float64] = product.as_quat(canonical=False, scalar_first=True)
    return result


def quat_conjugate(q: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.array([q[0], -q[1], -q[2], -q[3]])


def compose(a: Pose, b: Pose) -> Pose:
    """Pose of frame b given in frame a, expressed in a's parent: a ∘ b."""
    position = a[0] + quat_to_matrix(a[1]) @ b[0]
    return position, quat_multiply(a[1], b[1])


def inverse(pose: Pose) -> Pose:
    conjugate = quat_conjugate(pose[1])
    return -(quat_to_matrix(conjugate) @ pose[0]), conjugate


class JointKind(Enum):
    REVOLUTE = "revolute"  # value in rad about the joint frame's X axis
    PRISMATIC = "prismatic"  # value in m along the joint frame's X axis


def joint_motion(kind: JointKind, value: float) -> Pose:
    """Pose of the child joint frame in the parent joint frame at joint ``value`` (rad or m)."""
    if kind is JointKind.PRISMATIC:
        return np.array([value, 0.0, 0.0]), IDENTITY[1].copy()
    return np.zeros(3), np.array([np.cos(value / 2), np.sin(value / 2), 0.0, 0.0])


def joint_value(kind: JointKind, parent_frame: Pose, child_frame: Pose) -> float:
    """Joint value from the world poses of the joint frame seen from the parent and from the child.

    Args:
        parent_frame: world pose of parent body ∘ localPose0.
        child_frame: world pose of child body ∘ localPose1.

    Returns:
        rad about X (revolute, in (-pi, pi]) or m along X (prismatic).
    """
    relative = compose(inverse(parent_frame), child_frame)
    if kind is JointKind.PRISMATIC:
        return float(relative[0][0])
    w, x = relative[1][0], relative[1][1]
    angle = 2.0 * np.arctan2(x, w)
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def child_pose_at(kind: JointKind, value: float, parent_frame: Pose, local_child: Pose) -> Pose:
    """World pose of the child body that puts its joint at ``value`` (rad or m).

    Args:
        parent_frame: world pose of parent body ∘ localPose0.
        local_child: localPose1, the joint frame in the child body.
    """
    return compose(compose(parent_frame, joint_motion(kind, value)), inverse(local_child))


def box_bounds(
    center_local: NDArray[np.float64],
    half_local: NDArray[np.float64],
    positions: NDArray[np.float64],
    rotations: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axis-aligned bounds of G boxes given in their frames, the frames posed in the world.

    Args:
        center_local: (G, 3) box centres in each frame, m.
        half_local: (G, 3) half sizes along each frame's axes, m.
        positions: (G, 3) frame origins in the world, m.
        rotations: (G, 3, 3) frame orientations in the world.

    Returns:
        low, high: (G, 3) m, world frame.
    """
    centers = positions + np.einsum("gij,gj->gi", rotations, center_local)
    half = np.einsum("gij,gj->gi", np.abs(rotations), half_local)
    return centers - half, centers + half


def round_bounds(
    radius: NDArray[np.float64],
    half_length: NDArray[np.float64],
    capsule: NDArray[np.bool_],
    positions: NDArray[np.float64],
    rotations: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Tight axis-aligned bounds of G spheres, capsules and cylinders along their frame's Z axis.

    As MuJoCo's: a sphere is a capsule of half length 0; a cylinder's caps are discs.

    Args:
        radius, half_length: (G,) m.
        capsule: (G,) True for spheres and capsules, False for cylinders.
        positions: (G, 3) shape centres in the world, m.
        rotations: (G, 3, 3) shape orientations in the world.
    """
    axes = rotations[:, :, 2]  # (G, 3) each shape's Z axis in the world
    radial = np.where(capsule[:, None], 1.0, np.sqrt(np.clip(1.0 - axes**2, 0.0, 1.0)))
    half = half_length[:, None] * np.abs(axes) + radius[:, None] * radial
    return positions - half, positions + half


def site_box(half_size: NDArray[np.float64], pose: Pose) -> Box:
    """Axis-aligned bounds of a box site (half sizes (3,) in its frame) at world ``pose``."""
    low, high = box_bounds(np.zeros((1, 3)), half_size[None], pose[0][None], quat_to_matrix(pose[1])[None])
    return Box(low=low[0], high=high[0])
