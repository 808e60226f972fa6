"""Conversions between ROS 2 messages and tiers' arrays (needs the ``ros`` extra: ``pip install 'tiers[ros]'``).

Conventions on the wire (those of ros2_control and the ROS camera stack):

- ``sensor_msgs/JointState``: arm joints in rad, finger joints as each finger's travel in m (the Panda's
  ``panda_finger_joint1/2``: opening = finger1 + finger2).
- Commands, both ros2_control conventions, arm joints then the first finger joint (travel = opening / 2):
  ``trajectory_msgs/JointTrajectory`` with one point ``time_from_start`` = one control period (for a
  ``joint_trajectory_controller``), or ``std_msgs/Float64MultiArray`` in the same joint order (for a
  ``forward_command_controller``/position controller).
- Images: ``rgb8``/``bgr8`` colour, ``32FC1`` depth in m (or ``16UC1`` in mm, converted), row-major.
- ``sensor_msgs/CameraInfo``: K row-major; the camera's pose is a ``geometry_msgs/PoseStamped`` in the
  robot base frame of the camera's OpenCV optical frame (x right, y down, z forward).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError
from tiers.core.extras import require
from tiers.deploy.inputs import InputRejectedError
from tiers.deploy.observations import MAX_IMAGE_SIDE

_PURPOSE = "the ROS 2 message conversions of tiers.deploy"
require("rclpy", purpose=_PURPOSE)
_std = require("std_msgs.msg", purpose=_PURPOSE)
_sensor = require("sensor_msgs.msg", purpose=_PURPOSE)
_geometry = require("geometry_msgs.msg", purpose=_PURPOSE)
_trajectory = require("trajectory_msgs.msg", purpose=_PURPOSE)
_builtin = require("builtin_interfaces.msg", purpose=_PURPOSE)

JOINT_TRAJECTORY = "joint_trajectory"  # command convention: trajectory_msgs/JointTrajectory
FORWARD_POSITION = "forward_position"  # command convention: std_msgs/Float64MultiArray
COMMAND_INTERFACES = (JOINT_TRAJECTORY, FORWARD_POSITION)


# -- time -----------------------------------------------------------------------------------------------


def stamp_to_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> s."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def seconds_to_stamp(seconds: float) -> Any:
    """s -> builtin_interfaces/Time."""
    sec = int(np.floor(seconds))
    return _builtin.Time(sec=sec, nanosec=min(round((seconds - sec) * 1e9), 999_999_999))


def seconds_to_duration(seconds: float) -> Any:
    sec = int(np.floor(seconds))
    return _builtin.Duration(sec=sec, nanosec=min(round((seconds - sec) * 1e9), 999_999_999))


# -- joints and commands --------------------------------------------------------------------------------


def command_joint_names(spec: EmbodimentSpec) -> list[str]:
    """Joint names of a command: the arm joints, then the first finger joint."""
    return [*spec.joint_names, spec.gripper.joint_names[0]]


def joint_state_message(
    spec: EmbodimentSpec,
    positions: NDArray[np.float64],
    velocities: NDArray[np.float64],
    gripper_opening: float,
    stamp: float,
) -> Any:
    """sensor_msgs/JointState of the arm (rad, rad/s) and the fingers (each opening/2 m)."""
    finger = gripper_opening / len(spec.gripper.joint_names)
    message = _sensor.JointState()
    message.header.stamp = seconds_to_stamp(stamp)
    message.name = [*spec.joint_names, *spec.gripper.joint_names]
    message.position = [float(v) for v in positions] + [float(finger)] * len(spec.gripper.joint_names)
    message.velocity = [float(v) for v in velocities] + [0.0] * len(spec.gripper.joint_names)
    return message


def joint_trajectory_message(
    spec: EmbodimentSpec, action: NDArray[np.floating[Any]], period: float, stamp: float
) -> Any:
    """trajectory_msgs/JointTrajectory: one point reached ``period`` s after ``stamp``.

    Args:
        action: (J+1,) joint targets rad + gripper opening m.
    """
    point = _trajectory.JointTrajectoryPoint()
    point.positions = _command_values(spec, action)
    point.time_from_start = seconds_to_duration(period)
    message = _trajectory.JointTrajectory()
    message.header.stamp = seconds_to_stamp(stamp)
    message.joint_names = command_joint_names(spec)
    message.points = [point]
    return message


def float64_array_message(spec: EmbodimentSpec, action: NDArray[np.floating[Any]]) -> Any:
    """std_msgs/Float64MultiArray in :func:`command_joint_names` order."""
    message = _std.Float64MultiArray()
    message.data = _command_values(spec, action)
    return message


def action_from_joint_trajectory(spec: EmbodimentSpec, message: Any) -> NDArray[np.float64]:
    """(J+1,) action from a JointTrajectory's last point (joints matched by name; all must be present).

    Raises:
        ContractError: no points, or a command joint is missing.
    """
    if not message.points:
        raise ContractError("JointTrajectory has no points")
    names = list(message.joint_names)
    values = list(message.points[-1].positions)
    missing = [name for name in command_joint_names(spec) if name not in names]
    if missing or len(values) != len(names):
        raise ContractError(f"JointTrajectory lacks joints {missing} (has {names}, {len(values)} positions)")
    index = {name: i for i, name in enumerate(names)}
    return _action_from_values(spec, [values[index[name]] for name in command_joint_names(spec)])


def action_from_float64_array(spec: EmbodimentSpec, message: Any) -> NDArray[np.float64]:
    """(J+1,) action from a Float64MultiArray in :func:`command_joint_names` order.

    Raises:
        ContractError: wrong length.
    """
    data = list(message.data)
    if len(data) != spec.dof + 1:
        raise ContractError(
            f"Float64MultiArray command has {len(data)} values; expected {spec.dof + 1}: {command_joint_names(spec)}"
        )
    return _action_from_values(spec, data)


def _command_values(spec: EmbodimentSpec, action: NDArray[np.floating[Any]]) -> list[float]:
    values = [float(v) for v in np.asarray(action, dtype=np.float64)]
    if len(values) != spec.dof + 1:
        raise ContractError(f"command action must have {spec.dof + 1} values, got {len(values)}")
    return [*values[:-1], values[-1] / len(spec.gripper.joint_names)]


def _action_from_values(spec: EmbodimentSpec, values: list[float]) -> NDArray[np.float64]:
    action = np.asarray(values, dtype=np.float64)
    action[-1] *= len(spec.gripper.joint_names)  # finger travel -> opening
    return action


# -- images ---------------------------------------------------------------------------------------------


def image_message(image: NDArray[np.uint8], stamp: float, frame_id: str) -> Any:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    height, width = image.shape[:2]
    message = _sensor.Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3)
    message.header.stamp = seconds_to_stamp(stamp)
    message.header.frame_id = frame_id
    message.data = np.ascontiguousarray(image, dtype=np.uint8).tobytes()
    return message


def depth_message(depth: NDArray[np.float32], stamp: float, frame_id: str) -> Any:
    """(H, W) float32 m -> sensor_msgs/Image 32FC1."""
    height, width = depth.shape
    message = _sensor.Image(height=height, width=width, encoding="32FC1", is_bigendian=0, step=width * 4)
    message.header.stamp = seconds_to_stamp(stamp)
    message.header.frame_id = frame_id
    message.data = np.ascontiguousarray(depth, dtype="<f4").tobytes()
    return message


def _image_layout(message: Any, bytes_per_pixel: int) -> tuple[int, int, int, bytes]:
    """(height, width, step, data) of an Image whose size, row step and data length agree.

    Raises:
        InputRejectedError: an empty or oversized image, a row step too short for the width or not a whole number
            of values, or data whose length is not height × step.
    """
    height, width, step = int(message.height), int(message.width), int(message.step)
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise InputRejectedError("width, height", f"1..{MAX_IMAGE_SIDE} pixels each", f"{width}x{height}")
    if step < width * bytes_per_pixel or step % bytes_per_pixel:
        raise InputRejectedError(
            "step",
            f"a multiple of {bytes_per_pixel} bytes, at least {width * bytes_per_pixel} (width {width})",
            str(step),
        )
    data = bytes(message.data)
    if len(data) != height * step:
        raise InputRejectedError("data", f"{height * step} bytes (height {height} × step {step})", f"{len(data)} bytes")
    return height, width, step, data


def image_from_message(message: Any) -> NDArray[np.uint8]:
    """sensor_msgs/Image rgb8/bgr8 -> (H, W, 3) uint8 RGB.

    Raises:
        InputRejectedError: another encoding, or a size, step or data length that do not agree.
    """
    if message.encoding not in ("rgb8", "bgr8"):
        raise InputRejectedError("encoding", "rgb8 or bgr8", repr(message.encoding[:40]))
    height, width, step, data = _image_layout(message, 3)
    image = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, : width * 3].reshape(height, width, 3)
    return np.ascontiguousarray(image[..., ::-1] if message.encoding == "bgr8" else image)


def depth_from_message(message: Any) -> NDArray[np.float32]:
    """sensor_msgs/Image 32FC1 (m) or 16UC1 (mm) -> (H, W) float32 m.

    Raises:
        InputRejectedError: another encoding, or a size, step or data length that do not agree.
    """
    kinds = {"32FC1": ("f4", 1.0), "16UC1": ("u2", 1e-3)}
    if message.encoding not in kinds:
        raise InputRejectedError("encoding", "32FC1 (m) or 16UC1 (mm)", repr(message.encoding[:40]))
    code, scale = kinds[message.encoding]
    dtype = np.dtype(code).newbyteorder(">" if message.is_bigendian else "<")
    height, width, step, data = _image_layout(message, dtype.itemsize)
    values = np.frombuffer(data, dtype=dtype).reshape(height, step // dtype.itemsize)
    depth: NDArray[np.float32] = values[:, :width].astype(np.float32) * np.float32(scale)
    return depth


def camera_info_message(intrinsics: NDArray[np.float64], width: int, height: int, stamp: float, frame_id: str) -> Any:
    """sensor_msgs/CameraInfo of an undistorted pinhole camera."""
    message = _sensor.CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    message.header.stamp = seconds_to_stamp(stamp)
    message.header.frame_id = frame_id
    message.d = [0.0] * 5
    message.k = [float(v) for v in np.asarray(intrinsics).ravel()]
    message.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    projection = np.zeros((3, 4))
    projection[:, :3] = intrinsics
    message.p = [float(v) for v in projection.ravel()]
    return message


def intrinsics_from_camera_info(message: Any) -> tuple[NDArray[np.float64], int, int]:
    """sensor_msgs/CameraInfo -> (K (3, 3), width, height) (checked by the assembler that takes them)."""
    return np.asarray(message.k, dtype=np.float64).reshape(3, 3), int(message.width), int(message.height)


def pose_message(base_from_camera: NDArray[np.float64], stamp: float, frame_id: str) -> Any:
    """(4, 4) base←frame transform -> geometry_msgs/PoseStamped in ``frame_id`` (the base frame)."""
    message = _geometry.PoseStamped()
    message.header.stamp = seconds_to_stamp(stamp)
    message.header.frame_id = frame_id
    x, y, z = (float(v) for v in base_from_camera[:3, 3])
    message.pose.position.x, message.pose.position.y, message.pose.position.z = x, y, z
    qx, qy, qz, qw = Rotation.from_matrix(base_from_camera[:3, :3]).as_quat()
    orientation = message.pose.orientation
    orientation.x, orientation.y, orientation.z, orientation.w = float(qx), float(qy), float(qz), float(qw)
    return message


def matrix_from_pose(message: Any) -> NDArray[np.float64]:
    """geometry_msgs/PoseStamped -> (4, 4) homogeneous transform.

    Raises:
        InputRejectedError: a non-finite position, or an orientation that is not a unit quaternion.
    """
    pose = message.pose
    matrix = np.eye(4)
    quaternion = [pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w]
    position = [pose.position.x, pose.position.y, pose.position.z]
    if not np.all(np.isfinite(position)):
        raise InputRejectedError("pose.position", "finite x, y, z in m", str(position))
    if not (np.all(np.isfinite(quaternion)) and np.isclose(np.linalg.norm(quaternion), 1.0, atol=1e-3)):
        raise InputRejectedError("pose.orientation", "a unit quaternion", str(quaternion))
    matrix[:3, :3] = Rotation.from_quat(quaternion).as_matrix()
    matrix[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return matrix


def camera_topics(camera: str, prefix: str = "/cameras") -> dict[str, str]:
    """Topic names of one camera: image, depth, info, pose."""
    base = f"{prefix.rstrip('/')}/{camera}"
    return {
        "image": f"{base}/image_raw",
        "depth": f"{base}/depth/image_raw",
        "info": f"{base}/camera_info",
        "pose": f"{base}/pose",
    }
