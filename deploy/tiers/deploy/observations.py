"""ObservationAssembler: one :class:`~tiers.core.observation.Observation` from separately arriving robot messages.

A robot reports its joints, each camera's image, depth, intrinsics and pose on separate streams at their own
rates. The assembler keeps the latest of each (already converted to arrays by the transport, e.g.
:mod:`tiers.deploy.ros_messages`) and builds an Observation on demand:

    joint states (J arm joints + fingers) ──▶ q (J,) rad, q̇ (J,) rad/s, gripper opening m
                                          ──▶ ee_pose (7,) by forward kinematics of the robot's MJCF
    camera k: RGB (H, W, 3) uint8, depth (H, W) float32 m, K (3, 3), base←camera (4, 4) ──▶ images/depths/cameras

Only cameras with an image, intrinsics and pose are included (an image without a camera model would be
useless to the mid tier). The assembler does no ROS: it is shared by the ROS node and by tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError
from tiers.core.observation import CameraModel, Observation
from tiers.services.kinematics import ArmKinematics


@dataclass
class _CameraFrames:
    image: NDArray[np.uint8] | None = None  # (H, W, 3) RGB
    depth: NDArray[np.float32] | None = None  # (H, W) m
    intrinsics: NDArray[np.float64] | None = None  # (3, 3)
    base_from_camera: NDArray[np.float64] | None = None  # (4, 4)
    size: tuple[int, int] | None = None  # (width, height) from the camera info


@dataclass
class _JointReading:
    positions: NDArray[np.float64]  # (J,) rad
    velocities: NDArray[np.float64]  # (J,) rad/s
    gripper_opening: float  # m
    stamp: float  # s, robot/sim clock


@dataclass
class ObservationAssembler:
    """Latest-value store of joint states and camera frames; thread-safe.

    Attributes:
        spec: the robot (joint order, finger joints, cameras).
        model_xml: MJCF used for forward kinematics of ``spec.ee_frame``; "": the model the robot's YAML names
            (:func:`tiers.services.kinematics.robot_model_path`).
    """

    spec: EmbodimentSpec
    model_xml: str | Path = ""
    _joints: _JointReading | None = None
    _cameras: dict[str, _CameraFrames] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.model_xml:
            model = mujoco.MjModel.from_xml_path(str(self.model_xml))
            self._kinematics = ArmKinematics(model, joint_names=self.spec.joint_names, site_name=self.spec.ee_frame)
        else:
            self._kinematics = ArmKinematics.for_robot(self.spec)

    # -- updates (from any thread) ----------------------------------------------------------------------

    def update_joints(self, names: list[str], positions: list[float], velocities: list[float], stamp: float) -> None:
        """A joint-state message: names with positions (rad, or m for finger joints) and velocities.

        Every arm joint must be present; finger joints give the opening as the sum of the fingers'
        travels (one finger only: twice its travel, for a symmetric gripper). Velocities may be empty.

        Raises:
            ContractError: an arm joint is missing, or a value is not finite.
        """
        index = {name: i for i, name in enumerate(names)}
        missing = [name for name in self.spec.joint_names if name not in index]
        if missing:
            raise ContractError(f"joint state lacks arm joints {missing}; it has {names}")
        q = np.array([positions[index[name]] for name in self.spec.joint_names], dtype=np.float64)
        has_velocity = len(velocities) == len(names)
        dq = np.array(
            [velocities[index[name]] if has_velocity else 0.0 for name in self.spec.joint_names], dtype=np.float64
        )
        fingers = [positions[index[name]] for name in self.spec.gripper.joint_names if name in index]
        if fingers:
            opening = float(sum(fingers)) * (len(self.spec.gripper.joint_names) / len(fingers))
        else:
            opening = self._joints.gripper_opening if self._joints is not None else 0.0
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(dq)) and np.isfinite(opening)):
            raise ContractError(f"joint state has non-finite values: q={q}, dq={dq}, opening={opening}")
        with self._lock:
            self._joints = _JointReading(q, dq, opening, stamp)

    def update_image(self, camera: str, image: NDArray[np.uint8]) -> None:
        """(H, W, 3) uint8 RGB from ``camera``."""
        with self._lock:
            self._cameras.setdefault(camera, _CameraFrames()).image = image

    def update_depth(self, camera: str, depth: NDArray[np.float32]) -> None:
        """(H, W) float32 depth in m from ``camera``."""
        with self._lock:
            self._cameras.setdefault(camera, _CameraFrames()).depth = depth

    def update_intrinsics(self, camera: str, intrinsics: NDArray[np.float64], width: int, height: int) -> None:
        """(3, 3) K in pixels of ``camera`` at ``width`` × ``height``."""
        with self._lock:
            frames = self._cameras.setdefault(camera, _CameraFrames())
            frames.intrinsics, frames.size = intrinsics, (width, height)

    def update_pose(self, camera: str, base_from_camera: NDArray[np.float64]) -> None:
        """(4, 4) transform from ``camera``'s OpenCV optical frame to the robot base frame."""
        with self._lock:
            self._cameras.setdefault(camera, _CameraFrames()).base_from_camera = base_from_camera

    # -- reading ------------------------------------------------------------------------------------------

    @property
    def has_joints(self) -> bool:
        return self._joints is not None

    def observation(self, *, instruction: str = "", timestamp: float | None = None) -> Observation:
        """The latest of everything as an Observation (timestamp: the joint state's unless given).

        Raises:
            ContractError: no joint state has arrived yet.
        """
        with self._lock:
            joints = self._joints
            cameras = {name: _CameraFrames(**vars(frames)) for name, frames in self._cameras.items()}
        if joints is None:
            raise ContractError("no joint state has arrived yet")
        position, quaternion = self._kinematics.forward(joints.positions)
        images: dict[str, NDArray[np.uint8]] = {}
        depths: dict[str, NDArray[np.float32]] = {}
        models: dict[str, CameraModel] = {}
        for name, frames in cameras.items():
            if frames.intrinsics is None or frames.base_from_camera is None or frames.size is None:
                continue
            width, height = frames.size
            if frames.image is not None and frames.image.shape[:2] == (height, width):
                images[name] = frames.image
            if frames.depth is not None and frames.depth.shape == (height, width):
                depths[name] = frames.depth
            if name in images or name in depths:
                models[name] = CameraModel(frames.intrinsics, frames.base_from_camera, width, height)
        return Observation(
            joint_positions=joints.positions,
            joint_velocities=joints.velocities,
            ee_pose=np.concatenate([position, quaternion]),
            gripper_opening=joints.gripper_opening,
            timestamp=joints.stamp if timestamp is None else timestamp,
            images=images,
            depths=depths,
            cameras=models,
            instruction=instruction,
        )
