"""Camera models in a dataset: per-frame intrinsics and base-from-camera poses, and frames back into Observations.

Columns, one pair per recorded camera (plain float32 features, so lerobot writes, loads, edits and merges them
like any state column, and every ``LeRobotDataset`` sample carries them):

    camera.<cam>.intrinsics         float32 (4,)   fx, fy, cx, cy in pixels (OpenCV: integer pixel
                                                   coordinates are pixel centres), for the recorded H x W
    camera.<cam>.base_from_camera   float32 (12,)  the top three rows of the 4x4 transform from the camera's
                                                   OpenCV optical frame (x right, y down, z forward) to the
                                                   robot base frame, row-major: r00 r01 r02 tx r10 ... tz (m)

Both are written at every frame: a wrist camera moves with the arm, and one layout for every camera keeps the
reader simple (a static camera costs 64 bytes a frame). The keys sit outside lerobot's ``observation.`` prefix
on purpose: lerobot turns every ``observation.*`` column into a policy input (``dataset_to_policy_features``),
and a camera's calibration is what turns its depth into points, not an input of an RGB policy; lerobot leaves
other keys out of a policy's features while still loading them in every sample.

:func:`observation_from_sample` turns one lerobot sample back into the core :class:`Observation` (images,
depth in metres, camera models), so what the tiers see live can be rebuilt from a recording, e.g. to unproject a
recorded depth frame into the point cloud the mid tier plans from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import CameraSpec
from tiers.core.errors import ContractError
from tiers.core.features import FeatureKey
from tiers.core.observation import CameraModel, Observation

PREFIX = "camera"
INTRINSICS_NAMES = ("fx", "fy", "cx", "cy")
POSE_NAMES = ("r00", "r01", "r02", "tx", "r10", "r11", "r12", "ty", "r20", "r21", "r22", "tz")
INTRINSICS, POSE = "intrinsics", "base_from_camera"  # the last part of each camera's two keys
ROTATION_TOLERANCE = 1e-4  # max |R R^T - I| of a stored (float32) rotation


def intrinsics_key(camera: str) -> str:
    """``camera.<camera>.intrinsics``."""
    return f"{PREFIX}.{camera}.{INTRINSICS}"


def pose_key(camera: str) -> str:
    """``camera.<camera>.base_from_camera``."""
    return f"{PREFIX}.{camera}.{POSE}"


def camera_features(cameras: tuple[CameraSpec, ...]) -> dict[str, dict[str, Any]]:
    """The two feature entries of each camera (lerobot's ``features`` format)."""
    features: dict[str, dict[str, Any]] = {}
    for camera in cameras:
        features[intrinsics_key(camera.name)] = {
            "dtype": "float32",
            "shape": (len(INTRINSICS_NAMES),),
            "names": list(INTRINSICS_NAMES),
        }
        features[pose_key(camera.name)] = {"dtype": "float32", "shape": (len(POSE_NAMES),), "names": list(POSE_NAMES)}
    return features


def camera_values(model: CameraModel) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """(4,) intrinsics fx, fy, cx, cy and (12,) top 3x4 of ``base_from_camera``, as stored."""
    k = model.intrinsics
    intrinsics = np.array([k[0, 0], k[1, 1], k[0, 2], k[1, 2]], dtype=np.float32)
    return intrinsics, model.base_from_camera[:3, :].reshape(12).astype(np.float32)


def recorded_cameras(features: Mapping[str, Any]) -> list[str]:
    """Names of the cameras whose model the dataset holds (both columns present), in feature order."""
    names = [key[len(PREFIX) + 1 : -len(".intrinsics")] for key in features if _is_intrinsics(key)]
    return [name for name in names if pose_key(name) in features]


def _is_intrinsics(key: str) -> bool:
    return key.startswith(PREFIX + ".") and key.endswith(".intrinsics")


def camera_size(features: Mapping[str, Any], camera: str) -> tuple[int, int]:
    """(width, height) of ``camera`` from its image or depth feature (shape (H, W, C)).

    Raises:
        ContractError: the dataset has neither an image nor a depth feature of that camera.
    """
    for key in (FeatureKey.IMAGES.camera(camera), FeatureKey.DEPTH.camera(camera)):
        if key in features:
            height, width = features[key]["shape"][:2]
            return int(width), int(height)
    raise ContractError(f"camera {camera!r} has a camera model but no image or depth feature")


def matrices(
    intrinsics: NDArray[np.floating[Any]], pose: NDArray[np.floating[Any]]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Stored rows -> ((..., 3, 3) K, (..., 4, 4) base_from_camera); leading axes (frames) are kept."""
    intrinsics = np.asarray(intrinsics, dtype=np.float64)
    pose = np.asarray(pose, dtype=np.float64)
    lead = intrinsics.shape[:-1]
    k = np.zeros((*lead, 3, 3))
    k[..., 0, 0], k[..., 1, 1] = intrinsics[..., 0], intrinsics[..., 1]
    k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = intrinsics[..., 2], intrinsics[..., 3], 1.0
    transform = np.zeros((*pose.shape[:-1], 4, 4))
    transform[..., :3, :] = pose.reshape(*pose.shape[:-1], 3, 4)
    transform[..., 3, 3] = 1.0
    return k, transform


def camera_model_problems(
    intrinsics: NDArray[np.floating[Any]], pose: NDArray[np.floating[Any]], width: int, height: int
) -> list[tuple[int, str, str]]:
    """(row, column, problem) for every invalid row of (N, 4) intrinsics and (N, 12) poses of one camera.

    ``column`` is ``"intrinsics"`` or ``"base_from_camera"`` (the key's last part), the column at fault.

    Checked: finite values, fx > 0 and fy > 0, principal point inside the W x H image, rotation orthonormal
    (|R R^T - I| <= ``ROTATION_TOLERANCE``) and proper (det R = +1, not a reflection).
    """
    intrinsics, pose = np.asarray(intrinsics, np.float64), np.asarray(pose, np.float64)
    problems: list[tuple[int, str, str]] = []
    finite = np.isfinite(intrinsics).all(axis=1) & np.isfinite(pose).all(axis=1)
    for row in np.flatnonzero(~finite):
        column = INTRINSICS if not np.isfinite(intrinsics[row]).all() else POSE
        problems.append((int(row), column, "non-finite values"))
    _, transform = matrices(np.nan_to_num(intrinsics), np.nan_to_num(pose))
    focal = intrinsics[:, :2]
    for row in np.flatnonzero(finite & (focal <= 0).any(axis=1)):
        message = f"focal lengths fx={focal[row, 0]:g}, fy={focal[row, 1]:g} must be > 0 px"
        problems.append((int(row), INTRINSICS, message))
    cx, cy = intrinsics[:, 2], intrinsics[:, 3]
    outside = finite & ((cx < -0.5) | (cx > width - 0.5) | (cy < -0.5) | (cy > height - 0.5))
    for row in np.flatnonzero(outside):
        message = f"principal point ({cx[row]:g}, {cy[row]:g}) outside the {width}x{height} image"
        problems.append((int(row), INTRINSICS, message))
    rotation = transform[:, :3, :3]
    error = np.abs(rotation @ np.swapaxes(rotation, 1, 2) - np.eye(3)).max(axis=(1, 2))
    for row in np.flatnonzero(finite & (error > ROTATION_TOLERANCE)):
        problems.append((int(row), POSE, f"rotation is not orthonormal (max |R R^T - I| = {error[row]:.2e})"))
    determinant = np.linalg.det(rotation)
    for row in np.flatnonzero(finite & (error <= ROTATION_TOLERANCE) & (determinant < 0)):
        problems.append((int(row), POSE, "rotation is a reflection (det R = -1)"))
    return sorted(problems)


def camera_model(
    sample: Mapping[str, Any], camera: str, *, width: int, height: int, frame: int | None = None
) -> CameraModel:
    """The :class:`CameraModel` of ``camera`` in one lerobot sample (tensors or arrays).

    ``frame`` picks one time step when the sample holds windows ((T, 4) / (T, 12) from ``delta_timestamps``).

    Raises:
        ContractError: the sample has no model of ``camera``, or it is invalid (not finite, not a rotation).
    """
    try:
        intrinsics, pose = _numpy(sample[intrinsics_key(camera)]), _numpy(sample[pose_key(camera)])
    except KeyError as error:
        raise ContractError(f"the sample has no camera model of {camera!r} (key {error.args[0]!r})") from error
    if frame is not None:
        intrinsics, pose = intrinsics[frame], pose[frame]
    k, transform = matrices(intrinsics, pose)
    return CameraModel(intrinsics=k, base_from_camera=transform, width=width, height=height)


def observation_from_sample(sample: Mapping[str, Any], features: Mapping[str, Any]) -> Observation:
    """One lerobot sample (``LeRobotDataset(..., depth_output_unit="m")[i]``) as the core :class:`Observation`.

    Joint positions and gripper opening come from ``observation.state`` (J+1,), the tool pose from
    ``observation.ee_pose`` (7,), RGB from ``observation.images.<cam>`` ((3, H, W) float in [0, 1] -> (H, W, 3)
    uint8), depth from ``observation.depth.<cam>`` ((1, H, W) metres -> (H, W) float32), and a camera model
    for every camera with one recorded. Joint velocities are not recorded: they are zeros.

    Raises:
        ContractError: an image or depth of a camera without a recorded model (an Observation needs one), or
            a depth that is not in metres (load with ``depth_output_unit="m"``; lerobot's default is mm).
    """
    state = _numpy(sample[FeatureKey.STATE.value]).astype(np.float64)
    models: dict[str, CameraModel] = {}
    for camera in recorded_cameras(features):
        width, height = camera_size(features, camera)
        models[camera] = camera_model(sample, camera, width=width, height=height)
    images: dict[str, NDArray[np.uint8]] = {}
    depths: dict[str, NDArray[np.float32]] = {}
    for key in features:
        for prefix, store in ((FeatureKey.IMAGES.value, images), (FeatureKey.DEPTH.value, depths)):
            if not key.startswith(prefix + ".") or key not in sample:
                continue
            camera = key[len(prefix) + 1 :]
            if camera not in models:
                raise ContractError(f"{key}: the dataset records no camera model of {camera!r}")
            value = _numpy(sample[key])
            if store is images:
                store[camera] = np.clip(np.rint(np.moveaxis(value, 0, -1) * 255.0), 0, 255).astype(np.uint8)
            else:
                depth = value[0].astype(np.float32)
                if np.nanmedian(depth) > 100.0:  # no indoor scene is 100 m away: these are millimetres
                    raise ContractError(f"{key} looks like millimetres: load with depth_output_unit='m'")
                store[camera] = depth
    timestamp = sample.get(FeatureKey.TIMESTAMP.value, 0.0)
    return Observation(
        joint_positions=state[:-1],
        joint_velocities=np.zeros(len(state) - 1),
        ee_pose=_numpy(sample[FeatureKey.EE_POSE.value]).astype(np.float64),
        gripper_opening=float(state[-1]),
        timestamp=float(_numpy(timestamp)),
        images=images,
        depths=depths,
        cameras=models,
        instruction=str(sample.get(FeatureKey.TASK.value, "")),
    )


def load_observation(root: str | Path, index: int, *, repo_id: str | None = None) -> Observation:
    """Frame ``index`` (global) of the dataset at ``root`` as an :class:`Observation`, through ``LeRobotDataset``."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # heavy: imported when a frame is wanted

    root = Path(root)
    dataset = LeRobotDataset(repo_id or f"local/{root.name}", root=root, video_backend="pyav", depth_output_unit="m")
    return observation_from_sample(dataset[index], dataset.meta.features)


def _numpy(value: Any) -> NDArray[Any]:
    """A tensor or array-like as a numpy array (CPU)."""
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu().numpy())
    return np.asarray(value)
