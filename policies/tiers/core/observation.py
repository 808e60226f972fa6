"""Observation: what every tier sees of the robot and the scene at one instant.

Frames and units:
    - joints in the EmbodimentSpec's order, rad and rad/s;
    - ``ee_pose`` is the tool centre point in the robot base frame: (x, y, z) m, quaternion (w, x, y, z);
    - cameras use the OpenCV optical frame (x right, y down, z forward); ``CameraModel.base_from_camera``
      maps points from that frame to the base frame, ``intrinsics`` projects camera points to pixels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.errors import ContractError


def _vector(value: object, name: str, shape: tuple[int, ...] | None = None) -> NDArray[np.float64]:
    array = np.asarray(value, dtype=np.float64)
    if shape is not None and array.shape != shape:
        raise ContractError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ContractError(f"{name} has non-finite values: {array}")
    return array


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera: intrinsics and pose.

    Attributes:
        intrinsics: (3, 3) K in pixels: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]; integer pixel coordinates
            (u right, v down) are pixel centres, as in OpenCV.
        base_from_camera: (4, 4) homogeneous transform, OpenCV optical frame -> robot base frame.
        width, height: image size in pixels.
    """

    intrinsics: NDArray[np.float64]
    base_from_camera: NDArray[np.float64]
    width: int
    height: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "intrinsics", _vector(self.intrinsics, "CameraModel.intrinsics", (3, 3)))
        object.__setattr__(
            self, "base_from_camera", _vector(self.base_from_camera, "CameraModel.base_from_camera", (4, 4))
        )
        rotation = self.base_from_camera[:3, :3]
        if np.abs(rotation @ rotation.T - np.eye(3)).max() > 1e-5:  # np.allclose costs 5x more, every step
            raise ContractError("CameraModel.base_from_camera rotation block is not orthonormal")

    @classmethod
    def from_fovy(
        cls, *, width: int, height: int, fovy_deg: float, base_from_camera: NDArray[np.float64]
    ) -> CameraModel:
        """Square-pixel pinhole camera from a vertical field of view (as MuJoCo and Isaac cameras are given)."""
        focal = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2)
        # OpenCV convention: integer pixel coordinates are pixel centres, so the centre is at (W-1)/2
        cx, cy = (width - 1) / 2, (height - 1) / 2
        intrinsics = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
        return cls(intrinsics=intrinsics, base_from_camera=base_from_camera, width=width, height=height)

    def moved_to(self, base_from_camera: NDArray[np.float64]) -> CameraModel:
        """The same camera at another pose (4, 4), e.g. a wrist camera at the next control step.

        Intrinsics are not validated again, and the pose only for shape and finite values: the caller (a
        simulator) gives an orthonormal rotation, and a full check would cost more than the step's other work.
        """
        pose = np.asarray(base_from_camera, dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise ContractError(f"CameraModel.base_from_camera must be a finite (4, 4) transform, got {pose}")
        moved = copy.copy(self)
        object.__setattr__(moved, "base_from_camera", pose)
        return moved

    def project(self, points_base: NDArray[np.float64]) -> NDArray[np.float64]:
        """(N, 3) points in the base frame (m) -> (N, 2) pixel coordinates (u right, v down).

        Points behind the camera get NaN coordinates.
        """
        camera_from_base = np.linalg.inv(self.base_from_camera)
        points = points_base @ camera_from_base[:3, :3].T + camera_from_base[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            pixels: NDArray[np.float64] = (points @ self.intrinsics.T)[:, :2] / points[:, 2:3]
        pixels[points[:, 2] <= 0] = np.nan
        return pixels

    def unproject(self, depth: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """(H, W) depth in metres along the optical axis -> (H, W, 3) points in the base frame (m)."""
        if depth.shape != (self.height, self.width):
            raise ContractError(f"depth has shape {depth.shape}, camera is {self.height}x{self.width}")
        v, u = np.indices(depth.shape, dtype=np.float64)
        fx, fy = self.intrinsics[0, 0], self.intrinsics[1, 1]
        cx, cy = self.intrinsics[0, 2], self.intrinsics[1, 2]
        points = np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], axis=-1)
        result: NDArray[np.float64] = points @ self.base_from_camera[:3, :3].T + self.base_from_camera[:3, 3]
        return result


@dataclass(frozen=True)
class Observation:
    """One observation of the robot and scene.

    Attributes:
        joint_positions: (J,) rad.
        joint_velocities: (J,) rad/s.
        ee_pose: (7,) tool centre point in the base frame: xyz in m, quaternion wxyz (unit norm).
        gripper_opening: m between the fingertips, 0 = closed.
        timestamp: s on the sim or robot clock.
        images: camera name -> (H, W, 3) uint8 RGB.
        depths: camera name -> (H, W) float32 depth along the optical axis in m (0 or inf: no return).
        cameras: camera name -> CameraModel, for every camera in ``images`` or ``depths``.
        segmentation: camera name -> (H, W) int32 object ids (-1: background); simulators only.
        object_names: object id -> name, for the ids in ``segmentation``; simulators only.
        instruction: the episode's instruction text, "" when none.
    """

    joint_positions: NDArray[np.float64]
    joint_velocities: NDArray[np.float64]
    ee_pose: NDArray[np.float64]
    gripper_opening: float
    timestamp: float
    images: dict[str, NDArray[np.uint8]] = field(default_factory=dict)
    depths: dict[str, NDArray[np.float32]] = field(default_factory=dict)
    cameras: dict[str, CameraModel] = field(default_factory=dict)
    segmentation: dict[str, NDArray[np.int32]] = field(default_factory=dict)
    object_names: dict[int, str] = field(default_factory=dict)
    instruction: str = ""

    def __post_init__(self) -> None:
        q = _vector(self.joint_positions, "Observation.joint_positions")
        if q.ndim != 1:
            raise ContractError(f"Observation.joint_positions must be (J,), got shape {q.shape}")
        object.__setattr__(self, "joint_positions", q)
        object.__setattr__(
            self, "joint_velocities", _vector(self.joint_velocities, "Observation.joint_velocities", q.shape)
        )
        pose = _vector(self.ee_pose, "Observation.ee_pose", (7,))
        norm = np.linalg.norm(pose[3:])
        if abs(norm - 1.0) > 1e-3:
            raise ContractError(f"Observation.ee_pose quaternion must have unit norm, got norm {norm:.6f}")
        object.__setattr__(self, "ee_pose", pose)
        object.__setattr__(self, "gripper_opening", float(self.gripper_opening))
        object.__setattr__(self, "timestamp", float(self.timestamp))
        for name, image in self.images.items():
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ContractError(
                    f"Observation.images[{name!r}] must be (H, W, 3) uint8, got {image.shape} {image.dtype}"
                )
        for name, depth in self.depths.items():
            if depth.dtype != np.float32 or depth.ndim != 2:
                raise ContractError(
                    f"Observation.depths[{name!r}] must be (H, W) float32, got {depth.shape} {depth.dtype}"
                )
        for name in (*self.images, *self.depths):
            if name not in self.cameras:
                raise ContractError(f"Observation has an image from camera {name!r} but no CameraModel for it")

    def with_instruction(self, instruction: str) -> Observation:
        """This observation with ``instruction`` set; the arrays are shared and not validated again (the
        environment does this every control step, and validation would cost as much as the copy)."""
        copied = copy.copy(self)
        object.__setattr__(copied, "instruction", str(instruction))
        return copied

    @property
    def state(self) -> NDArray[np.float32]:
        """(J+1,) float32 proprioceptive state: joint positions then gripper opening (``observation.state``)."""
        return np.append(self.joint_positions, self.gripper_opening).astype(np.float32)
