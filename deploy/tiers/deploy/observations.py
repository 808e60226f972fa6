"""ObservationAssembler: one :class:`~tiers.core.observation.Observation` from separately arriving robot messages.

A robot reports its joints, each camera's image, depth, intrinsics and pose on separate streams at their own
rates. The assembler keeps the latest of each (already converted to arrays by the transport, e.g.
:mod:`tiers.deploy.ros.messages`) and builds an Observation on demand:

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
from tiers.deploy.inputs import InputRejectedError
from tiers.services.kinematics import ArmKinematics

MAX_JOINT_NAMES = 256  # joints a joint-state message may name (bounds the work a message can cause)
MAX_IMAGE_SIDE = 8192  # pixels: the widest or tallest image a camera may report


def _short(values: object, limit: int = 200) -> str:
    """A value's repr, cut for an error message."""
    text = repr(values)
    return text if len(text) <= limit else text[:limit] + "…"


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

        Every arm joint must be present, once; there must be one position per name, and one velocity per name
        or none; finger joints give the opening as the sum of the fingers' travels (one finger only: twice its
        travel, for a symmetric gripper).

        Raises:
            InputRejectedError: the field at fault, what was expected and what came (array lengths, a missing or
                repeated joint, a non-finite value).
        """
        if len(names) > MAX_JOINT_NAMES:
            raise InputRejectedError("name", f"at most {MAX_JOINT_NAMES} joints", f"{len(names)} names")
        if len(positions) != len(names):
            raise InputRejectedError("position", f"{len(names)} values (one per name)", f"{len(positions)} values")
        if len(velocities) not in (0, len(names)):
            expected = f"0 or {len(names)} values (one per name)"
            raise InputRejectedError("velocity", expected, f"{len(velocities)} values")
        index = {name: i for i, name in enumerate(names)}
        if len(index) != len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            raise InputRejectedError("name", "each joint once", f"{repeated[:5]} repeated")
        missing = [name for name in self.spec.joint_names if name not in index]
        if missing:
            raise InputRejectedError(
                "name", f"every arm joint {self.spec.joint_names}", f"{_short(names)}, lacking {missing}"
            )
        q = np.array([positions[index[name]] for name in self.spec.joint_names], dtype=np.float64)
        dq = np.array([velocities[index[name]] if velocities else 0.0 for name in self.spec.joint_names])
        fingers = [float(positions[index[name]]) for name in self.spec.gripper.joint_names if name in index]
        for key, values, joints in (
            ("position", q, self.spec.joint_names),
            ("velocity", dq, self.spec.joint_names),
            ("position", np.asarray(fingers), [n for n in self.spec.gripper.joint_names if n in index]),
        ):
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                raise InputRejectedError(f"{key}[{joints[bad[0]]}]", "a finite value", repr(float(values[bad[0]])))
        if fingers:
            opening = float(sum(fingers)) * (len(self.spec.gripper.joint_names) / len(fingers))
        else:
            opening = self._joints.gripper_opening if self._joints is not None else 0.0
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
        """(3, 3) K in pixels of ``camera`` at ``width`` × ``height``.

        Raises:
            InputRejectedError: a non-finite K, a focal length that is not positive, or an empty image size.
        """
        intrinsics = np.asarray(intrinsics, dtype=np.float64)
        if intrinsics.shape != (3, 3) or not np.all(np.isfinite(intrinsics)):
            raise InputRejectedError("k", "9 finite values", _short(intrinsics.ravel().tolist()))
        if not (intrinsics[0, 0] > 0 and intrinsics[1, 1] > 0):
            raise InputRejectedError("k", "positive focal lengths fx, fy", f"{intrinsics[0, 0]}, {intrinsics[1, 1]}")
        if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
            raise InputRejectedError("width, height", f"1..{MAX_IMAGE_SIDE} pixels each", f"{width}x{height}")
        with self._lock:
            frames = self._cameras.setdefault(camera, _CameraFrames())
            frames.intrinsics, frames.size = intrinsics, (width, height)

    def update_pose(self, camera: str, base_from_camera: NDArray[np.float64]) -> None:
        """(4, 4) transform from ``camera``'s OpenCV optical frame to the robot base frame.

        Raises:
            InputRejectedError: not a finite (4, 4) transform.
        """
        base_from_camera = np.asarray(base_from_camera, dtype=np.float64)
        if base_from_camera.shape != (4, 4) or not np.all(np.isfinite(base_from_camera)):
            raise InputRejectedError("pose", "a finite (4, 4) transform", _short(base_from_camera.ravel().tolist()))
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
