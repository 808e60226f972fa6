"""What a low-tier policy was trained for (:class:`PolicyFeatures`, ``embodiment.json``), in plain Python: no torch.

Shared by the checkpoint format (:mod:`tiers.policies.low.checkpoint`, which re-exports these names) and the
ONNX Runtime policy (:mod:`tiers.policies.low.onnx_policy`), which reads the same features from its sidecar on
a robot computer without torch. The checks against a dataset (its ``meta/info.json``) and a robot live here
with the features they check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiers.core.config import Config
from tiers.core.embodiment import ActionSpace, EmbodimentSpec
from tiers.core.errors import ContractError, EmbodimentMismatchError
from tiers.core.features import EE_DELTA_NAMES, FeatureKey

STATS_NAMES = ("mean", "std", "min", "max")  # the normalisation statistics kept per feature key


@dataclass
class PolicyFeatures(Config):
    """What a low-tier policy was trained for: its embodiment and the features it reads (``embodiment.json``)."""

    robot: str  # embodiment name (the dataset's robot_type), e.g. "panda"
    action_space: str  # "joint_position" | "ee_delta" | "" when the dataset does not say
    fps: float  # control rate the actions were recorded at, Hz
    state_names: list[str]  # components of observation.state, S = len
    action_names: list[str]  # components of action, A = len
    cameras: dict[str, list[int]] = field(default_factory=dict)  # observation.images.<cam> -> [3, H, W] read
    language_key: str | None = None  # text column that conditions the policy (task / subtask / language_motion)

    def __post_init__(self) -> None:
        if not self.state_names or not self.action_names:
            raise ValueError("state_names and action_names must not be empty")
        if self.action_space not in ("", *(space.value for space in ActionSpace)):
            raise ValueError(
                f"action_space must be one of {[s.value for s in ActionSpace]} or '', got {self.action_space!r}"
            )
        for key, shape in self.cameras.items():
            if not key.startswith(f"{FeatureKey.IMAGES.value}.") or len(shape) != 3 or shape[0] != 3:
                raise ValueError(f"cameras: {key!r} -> {shape} is not 'observation.images.<name>' -> [3, H, W]")

    @property
    def state_dim(self) -> int:
        """S."""
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        """A."""
        return len(self.action_names)

    @classmethod
    def from_dataset(
        cls,
        root: str | Path,
        *,
        cameras: list[str],
        image_size: tuple[int, int] | None,
        language_key: str | None,
        repo_id: str = "",
    ) -> PolicyFeatures:
        """The features of a LeRobotDataset (tiers keys) as a policy reading ``cameras`` (names) sees them."""
        info = _dataset_info(Path(root))
        features = info["features"]
        state, action = features[FeatureKey.STATE.value], features[FeatureKey.ACTION.value]
        camera_shapes: dict[str, list[int]] = {}
        for camera in cameras:
            key = FeatureKey.IMAGES.camera(camera)
            if key not in features:
                raise ContractError(f"{root}: dataset has no camera {key!r}; its cameras: {_camera_keys(features)}")
            height, width = image_size if image_size is not None else features[key]["shape"][:2]
            camera_shapes[key] = [3, int(height), int(width)]
        return cls(
            robot=str(info.get("robot_type") or ""),
            action_space=_action_space(action.get("names")),
            fps=float(info["fps"]),
            state_names=_given_names(state) or _default_names("state", int(state["shape"][0])),
            action_names=_given_names(action) or _default_names("action", int(action["shape"][0])),
            cameras=camera_shapes,
            language_key=language_key,
        )

    def check_dataset(self, root: str | Path, stats: Mapping[str, Any] | None = None) -> None:
        """Raise naming the first way the dataset at ``root`` differs from what this policy was trained for.

        Checks the robot type, the state and action sizes and names, the fps, the cameras, the language
        column and (with ``stats``, tiers key -> statistics) the normalisation statistics the policy needs.

        Raises:
            EmbodimentMismatchError: robot, action/state size or names, fps differ.
            ContractError: a camera, the language column or a statistic is missing.
        """
        root = Path(root)
        info = _dataset_info(root)
        features = info["features"]
        where = f"dataset {root}"
        robot = str(info.get("robot_type") or "")
        if robot != self.robot:
            raise EmbodimentMismatchError(f"{where} is for robot {robot!r}; the policy was trained for {self.robot!r}")
        for key, names, prefix in (
            (FeatureKey.STATE.value, self.state_names, "state"),
            (FeatureKey.ACTION.value, self.action_names, "action"),
        ):
            if key not in features:
                raise ContractError(f"{where} has no {key!r} column")
            size, found = int(features[key]["shape"][0]), _given_names(features[key])
            if size != len(names):
                raise EmbodimentMismatchError(
                    f"{where}: {key} has dimension {size}; the policy was trained with {len(names)} ({names})"
                )
            # names are compared when both sides have them (an unnamed dataset gets default names)
            if found is not None and names != _default_names(prefix, size) and found != names:
                raise EmbodimentMismatchError(f"{where}: {key} components are {found}; the policy expects {names}")
        space = _action_space(features[FeatureKey.ACTION.value].get("names"))
        if self.action_space and space and space != self.action_space:
            raise EmbodimentMismatchError(f"{where} has {space} actions; the policy outputs {self.action_space}")
        if float(info["fps"]) != self.fps:
            raise EmbodimentMismatchError(f"{where} runs at {info['fps']} fps; the policy acts at {self.fps} Hz")
        for key in self.cameras:
            if key not in features:
                raise ContractError(
                    f"{where} has no camera {key!r} the policy reads; its cameras: {_camera_keys(features)}"
                )
        language = self.language_key
        if language is not None and language != FeatureKey.TASK.value and language not in features:
            raise ContractError(f"{where} has no {language!r} column, which conditions the policy")
        if stats is not None:
            check_stats(stats, self.required_stats(), where=f"{where}/meta/stats.json")

    def check_embodiment(self, embodiment: EmbodimentSpec, *, action_dim: int | None = None) -> None:
        """Raise :class:`EmbodimentMismatchError` naming the first way ``embodiment`` differs from the training one.

        Args:
            embodiment: the robot the policy is about to drive.
            action_dim: the environment's action size, when it overrides the embodiment's action space.
        """
        where = f"robot {embodiment.name!r}"
        if embodiment.name != self.robot:
            raise EmbodimentMismatchError(f"the policy was trained for robot {self.robot!r}, not {where}")
        if self.action_space and embodiment.action_space.value != self.action_space and action_dim is None:
            raise EmbodimentMismatchError(
                f"{where} takes {embodiment.action_space.value} actions; the policy outputs {self.action_space}"
            )
        dim = embodiment.action_dim if action_dim is None else action_dim
        if dim != self.action_dim:
            raise EmbodimentMismatchError(
                f"{where} takes actions of dimension {dim}; the policy outputs {self.action_dim} ({self.action_names})"
            )
        if embodiment.state_dim != self.state_dim:
            raise EmbodimentMismatchError(
                f"{where} has a state of dimension {embodiment.state_dim}; the policy reads {self.state_dim}"
            )
        if embodiment.control_rate_hz != self.fps:
            raise EmbodimentMismatchError(
                f"{where} runs at {embodiment.control_rate_hz} Hz; the policy was trained at {self.fps} Hz"
            )
        have = {camera.name for camera in embodiment.cameras}
        for key in self.cameras:
            name = key.removeprefix(f"{FeatureKey.IMAGES.value}.")
            if name not in have:
                raise EmbodimentMismatchError(f"{where} has no camera {name!r} the policy reads; it has {sorted(have)}")

    def required_stats(self) -> list[str]:
        """Feature keys whose statistics normalisation needs."""
        return [FeatureKey.STATE.value, FeatureKey.ACTION.value, *self.cameras]


def check_stats(stats: Mapping[str, Any], keys: list[str], *, where: str) -> None:
    """Raise :class:`ContractError` naming the first missing feature key or statistic."""
    for key in keys:
        if key not in stats:
            raise ContractError(f"{where}: no normalisation statistics for {key!r}; it has {sorted(stats)}")
        absent = [name for name in STATS_NAMES if name not in stats[key]]
        if absent:
            raise ContractError(f"{where}: statistics of {key!r} lack {absent}")


def _default_names(prefix: str, size: int) -> list[str]:
    """Component names given to a feature the dataset does not name: ``<prefix>_<i>``."""
    return [f"{prefix}_{i}" for i in range(size)]


def _given_names(feature: Mapping[str, Any]) -> list[str] | None:
    """Component names of a vector feature, or None when the dataset does not name them all."""
    names = feature.get("names")
    if isinstance(names, Mapping):  # lerobot also allows {"motors": [...]}
        names = next(iter(names.values()), None)
    if not names or len(names) != int(feature["shape"][0]):
        return None
    return [str(name) for name in names]


def _action_space(names: Any) -> str:
    """The tiers action space a dataset's action names imply; "" when they imply none."""
    if isinstance(names, list):
        if tuple(names) == EE_DELTA_NAMES:
            return ActionSpace.EE_DELTA.value
        if names and names[-1] == "gripper_opening":
            return ActionSpace.JOINT_POSITION.value
    return ""


def _camera_keys(features: Mapping[str, Any]) -> list[str]:
    return sorted(key for key in features if key.startswith(f"{FeatureKey.IMAGES.value}."))


def _dataset_info(root: Path) -> dict[str, Any]:
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise ContractError(f"{root}: not a LeRobotDataset (no meta/info.json)")
    info = read_json(info_path)
    for key in (FeatureKey.STATE.value, FeatureKey.ACTION.value):
        if key not in info.get("features", {}):
            raise ContractError(f"{info_path}: the dataset has no {key!r} feature")
    return info


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; raises :class:`ContractError` naming the file when it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ContractError(f"{path}: cannot read JSON: {error}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}: expected a JSON object at top level")
    return data
