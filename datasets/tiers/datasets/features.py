"""The feature schema of a tiers dataset (a plain LeRobotDataset v3) and how one frame is filled.

Columns (lerobot's ``features`` dict; keys from :class:`tiers.core.FeatureKey` where it has one):

    observation.state           float32 (J+1,)  joint positions (rad, EmbodimentSpec order), gripper opening (m)
    observation.ee_pose         float32 (7,)    tool centre point in the base frame: xyz (m), quaternion wxyz
    action                      float32 (A,)    the commanded action (joint_position: J targets rad + gripper m)
    observation.images.<cam>    video (H, W, 3) RGB, one per EmbodimentSpec camera (``image`` with use_videos=False)
    observation.depth.<cam>     video (H, W, 1) depth in metres for cameras with ``depth: true``, only when
                                depth is asked for (``depth=True``, ``tiers record --depth``); lerobot stores it
                                as a lossless 12-bit log-quantised HEVC depth video (``info.is_depth_map``) and
                                decodes it back to metres (millimetres by default: pass
                                ``depth_output_unit="m"`` to ``LeRobotDataset``)
    camera.<cam>.intrinsics     float32 (4,)    fx, fy, cx, cy (px), every frame, see :mod:`tiers.datasets.cameras`
    camera.<cam>.base_from_camera float32 (12,) optical frame -> base frame, top 3x4 row-major, every frame
    subtask                     string          the plan step being executed ("open the drawer")
    language_motion             string          RT-H language motion, see :mod:`tiers.datasets.language_motion`
    expert_motion               string          the scripted expert's primitive phase (only for expert data)
    task                        (lerobot)       the episode's instruction text, via ``tasks.parquet``

Why depth is opt-in: lerobot 0.6.1 takes every video feature as a visual input of its policies, and its ACT and
Diffusion image encoders take 3-channel RGB, so ``lerobot-train`` fails on a dataset holding a depth video (as it
does on a depth recording of ``lerobot-record``; lerobot's RealSense camera leaves depth off by default too).
Without depth a tiers dataset trains with ``lerobot-train`` as it is; the camera models are always kept, so a
depth recording can be unprojected whenever one is made.

Why plain string columns rather than lerobot's ``language_persistent`` / ``language_events``: in lerobot 0.6.1
those columns are filled only by the offline annotation pipeline, which rewrites the parquet files after
recording; ``add_frame`` drops any value given for them (``validate_feature_language`` warns and the column is
written as null). Plain ``string`` features go through ``add_frame``/``save_episode`` and load as Python
strings in every lerobot sample, so a policy reads the current subtask and language motion per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import ActionSpace, CameraSpec, EmbodimentSpec
from tiers.core.errors import ContractError
from tiers.core.features import EE_DELTA_NAMES, FeatureKey
from tiers.core.observation import Observation
from tiers.datasets.cameras import camera_features, camera_values, intrinsics_key, pose_key

EXPERT_MOTION = FeatureKey.EXPERT_MOTION.value  # per-frame scripted-expert primitive (a motions.Motion value)
EE_POSE_NAMES = ("x", "y", "z", "qw", "qx", "qy", "qz")
IMAGE_AXES = ["height", "width", "channels"]


@dataclass(frozen=True)
class DatasetSpec:
    """What a recorded dataset holds: built from an :class:`EmbodimentSpec` and recording options.

    Attributes:
        fps: frames per second, the robot's control rate (lerobot stores an integer).
        robot_type: lerobot's ``robot_type`` (the embodiment name).
        state_names: J joint names then "gripper_opening".
        action_names: A names of the action components.
        cameras: RGB cameras recorded (empty: proprioception only, no rendering needed).
        depth_cameras: names of cameras whose depth is recorded (a subset of ``cameras``; empty by default).
        use_videos: encode images as mp4 (True) or store PNG images in the parquet files (False).
        expert_motion: add the ``expert_motion`` column (scripted-expert recordings).
    """

    fps: int
    robot_type: str
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    cameras: tuple[CameraSpec, ...] = ()
    depth_cameras: tuple[str, ...] = ()
    use_videos: bool = True
    expert_motion: bool = True

    @classmethod
    def from_embodiment(
        cls,
        embodiment: EmbodimentSpec,
        *,
        cameras: bool = True,
        depth: bool = False,
        use_videos: bool = True,
        expert_motion: bool = True,
    ) -> DatasetSpec:
        """The spec of a recording of ``embodiment``; ``cameras=False`` records proprioception only.

        ``depth=True`` adds the depth of the cameras marked ``depth: true`` (a dataset lerobot's own policies
        cannot train on until the depth feature is removed, see the module docstring).
        """
        fps = embodiment.control_rate_hz
        if fps != int(fps):
            raise ContractError(f"lerobot stores an integer fps; robot {embodiment.name!r} runs at {fps} Hz")
        state_names = (*embodiment.joint_names, "gripper_opening")
        if embodiment.action_space is ActionSpace.JOINT_POSITION:
            action_names: tuple[str, ...] = state_names
        else:
            action_names = EE_DELTA_NAMES
        chosen = tuple(embodiment.cameras) if cameras else ()
        return cls(
            fps=int(fps),
            robot_type=embodiment.name,
            state_names=state_names,
            action_names=action_names,
            cameras=chosen,
            depth_cameras=tuple(c.name for c in chosen if c.depth) if depth else (),
            use_videos=use_videos,
            expert_motion=expert_motion,
        )

    def features(self) -> dict[str, dict[str, Any]]:
        """lerobot's ``features`` dict (without the default index/timestamp columns lerobot adds itself)."""
        visual = "video" if self.use_videos else "image"
        features: dict[str, dict[str, Any]] = {
            FeatureKey.STATE.value: _vector(self.state_names),
            FeatureKey.EE_POSE.value: _vector(EE_POSE_NAMES),
            FeatureKey.ACTION.value: _vector(self.action_names),
        }
        for camera in self.cameras:
            features[FeatureKey.IMAGES.camera(camera.name)] = {
                "dtype": visual,
                "shape": (camera.height, camera.width, 3),
                "names": IMAGE_AXES,
            }
        for camera in self.cameras:
            if camera.name in self.depth_cameras:
                features[FeatureKey.DEPTH.camera(camera.name)] = {
                    "dtype": visual,
                    "shape": (camera.height, camera.width, 1),
                    "names": IMAGE_AXES,
                    "info": {"is_depth_map": True},
                }
        features.update(camera_features(self.cameras))
        for key in self.language_keys:
            features[key] = {"dtype": "string", "shape": (1,), "names": None}
        return features

    @property
    def language_keys(self) -> tuple[str, ...]:
        keys = (FeatureKey.SUBTASK.value, FeatureKey.LANGUAGE_MOTION.value)
        return (*keys, EXPERT_MOTION) if self.expert_motion else keys

    def frame(
        self,
        observation: Observation,
        action: NDArray[np.floating[Any]],
        *,
        task: str,
        subtask: str,
        language_motion: str,
        expert_motion: str | None = None,
    ) -> dict[str, Any]:
        """One ``add_frame`` dict: the observation at time t and the action taken from it.

        Raises:
            ContractError: a missing camera image/depth, or a wrong action size; the message names the key.
        """
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (len(self.action_names),):
            raise ContractError(f"action has shape {action.shape}, the dataset stores ({len(self.action_names)},)")
        frame: dict[str, Any] = {
            FeatureKey.STATE.value: observation.state,
            FeatureKey.EE_POSE.value: observation.ee_pose.astype(np.float32),
            FeatureKey.ACTION.value: action,
            FeatureKey.SUBTASK.value: subtask,
            FeatureKey.LANGUAGE_MOTION.value: language_motion,
            "task": task,
        }
        for camera in self.cameras:
            if camera.name not in observation.images:
                raise ContractError(
                    f"observation has no image from camera {camera.name!r} ({sorted(observation.images)})"
                )
            frame[FeatureKey.IMAGES.camera(camera.name)] = observation.images[camera.name]
            # the Observation holds a model for every camera it has an image from (its own invariant)
            frame[intrinsics_key(camera.name)], frame[pose_key(camera.name)] = camera_values(
                observation.cameras[camera.name]
            )
        for name in self.depth_cameras:
            if name not in observation.depths:
                raise ContractError(f"observation has no depth from camera {name!r} ({sorted(observation.depths)})")
            frame[FeatureKey.DEPTH.camera(name)] = observation.depths[name][:, :, None]  # (H, W, 1) float32 m
        if self.expert_motion:
            if expert_motion is None:
                raise ContractError(f"the dataset has an {EXPERT_MOTION!r} column: pass expert_motion")
            frame[EXPERT_MOTION] = expert_motion
        return frame


def _vector(names: tuple[str, ...]) -> dict[str, Any]:
    return {"dtype": "float32", "shape": (len(names),), "names": list(names)}


def schema_differences(expected: dict[str, dict[str, Any]], found: dict[str, dict[str, Any]]) -> list[str]:
    """Human-readable differences between two features dicts (dtype and shape; lerobot's default columns ignored)."""
    defaults = {"timestamp", "frame_index", "episode_index", "index", "task_index"}
    problems = []
    for key in sorted((set(expected) | set(found)) - defaults):
        if key not in found:
            problems.append(f"missing feature {key!r}")
        elif key not in expected:
            problems.append(f"unexpected feature {key!r}")
        else:
            a, b = expected[key], found[key]
            if a["dtype"] != b["dtype"] or tuple(a["shape"]) != tuple(b["shape"]):
                problems.append(
                    f"{key!r} is {b['dtype']} {tuple(b['shape'])}, expected {a['dtype']} {tuple(a['shape'])}"
                )
    return problems
