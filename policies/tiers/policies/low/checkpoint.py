"""Low-tier checkpoints: a folder of safetensors and JSON, checked against what it is used with.

Layout of a checkpoint folder (no pickle anywhere)::

    <dir>/
      model.safetensors   the weights the policy acts with (the EMA weights when training kept an EMA)
      config.json         {"format": 1, "policy_type": "generative", "config": {...policy config...},
                           "weights": "ema" | "raw", "step": N, "created": ISO time}
      stats.json          normalisation statistics: feature key -> {"mean", "std", "min", "max"} nested lists
      embodiment.json     what the policy was trained for (:class:`PolicyFeatures`): robot, action space,
                          state / action names (their lengths are S and A), cameras with the (3, H, W) size
                          the policy reads, the language key, fps
      training_state/     only in training checkpoints, see :mod:`tiers.services.training`

Loading checks the checkpoint against the dataset or the environment it meets (:meth:`PolicyFeatures.check_dataset`,
:meth:`PolicyFeatures.check_embodiment`): a different robot, action space, action or state size, a missing
camera or language column, or missing normalisation statistics fail at load with a message naming the
mismatch, never later as a shape error inside a network.

A policy type registers a loader in :data:`POLICY_TYPES` (``"module:Class"``, imported on first use); the
class provides ``from_checkpoint(config: dict, features, stats) -> policy`` and is an ``nn.Module``. A policy
saved in another library's own layout (lerobot's ``save_pretrained``) registers in :data:`FOLDER_LAYOUTS` by the
file that marks its folders; its class provides ``load(path, *, dataset, embodiment, action_dim, device)``. Both
registries name their classes by string because those modules build on this one (they read
:class:`PolicyFeatures`), so this module cannot import them.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from tiers.core.config import Config
from tiers.core.embodiment import ActionSpace, EmbodimentSpec
from tiers.core.errors import ContractError, EmbodimentMismatchError
from tiers.core.features import EE_DELTA_NAMES, FeatureKey

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATS_FILE = "stats.json"
EMBODIMENT_FILE = "embodiment.json"
STATS_NAMES = ("mean", "std", "min", "max")

# policy_type (config.json) -> "module:Class" with a ``from_checkpoint`` classmethod
POLICY_TYPES: dict[str, str] = {
    "generative": "tiers.policies.low.policy:GenerativeLowPolicy",
}
# marker file of a checkpoint folder in another library's layout -> "module:Class" with a ``load`` classmethod
FOLDER_LAYOUTS: dict[str, str] = {
    "tiers_lerobot.json": "tiers.policies.low.lerobot_adapter:LerobotPolicyAdapter",  # lerobot's save_pretrained
}

Stats = dict[str, dict[str, torch.Tensor]]


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


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    policy_type: str,
    config: Mapping[str, Any],
    features: PolicyFeatures,
    stats: Stats,
    weights: str = "raw",
    step: int = 0,
) -> Path:
    """Write a checkpoint folder (see the module docstring); returns ``path``.

    Files are written next to their final names and renamed, so a reader never sees half a file.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{WEIGHTS_FILE}.tmp"
    save_model(model, str(tmp))
    tmp.chmod(0o644)  # safetensors writes owner-only files; a checkpoint is meant to be shared
    tmp.replace(path / WEIGHTS_FILE)
    meta = {
        "format": FORMAT_VERSION,
        "policy_type": policy_type,
        "config": dict(config),
        "weights": weights,
        "step": step,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json(path / CONFIG_FILE, meta)
    _write_json(path / STATS_FILE, stats_to_json(stats))
    _write_json(path / EMBODIMENT_FILE, features.to_dict())
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], PolicyFeatures, Stats]:
    """(config.json contents, features, stats) of a checkpoint folder, without building the model.

    Raises:
        ContractError: the folder or one of its files is missing or malformed; the message names the file.
    """
    path = Path(path)
    if not path.is_dir():
        raise ContractError(f"{path}: not a checkpoint folder (no such directory)")
    for name in (WEIGHTS_FILE, CONFIG_FILE, STATS_FILE, EMBODIMENT_FILE):
        if not (path / name).is_file():
            raise ContractError(f"{path}: not a checkpoint folder, {name} is missing")
    meta = _read_json(path / CONFIG_FILE)
    if meta.get("format") != FORMAT_VERSION:
        raise ContractError(f"{path / CONFIG_FILE}: format {meta.get('format')!r}, this tiers reads {FORMAT_VERSION}")
    features = PolicyFeatures.from_dict(_read_json(path / EMBODIMENT_FILE), source=str(path / EMBODIMENT_FILE))
    stats = stats_from_json(_read_json(path / STATS_FILE), source=str(path / STATS_FILE))
    return meta, features, stats


def load_policy(
    path: str | Path,
    *,
    dataset: str | Path | None = None,
    embodiment: EmbodimentSpec | None = None,
    action_dim: int | None = None,
    device: str | torch.device = "cpu",
) -> Any:
    """Build the policy saved at ``path``, check it against a dataset and/or a robot, load its weights.

    Args:
        path: checkpoint folder.
        dataset: a LeRobotDataset root the policy will train or be evaluated on (checked, see
            :meth:`PolicyFeatures.check_dataset`).
        embodiment: the robot or simulator it will drive (checked, see :meth:`PolicyFeatures.check_embodiment`).
        action_dim: the environment's action size when it differs from the embodiment's own action space.
        device: where the policy runs.

    Returns:
        the policy (an ``nn.Module`` in eval mode), with ``features`` and ``stats`` of the checkpoint.

    Raises:
        EmbodimentMismatchError / ContractError: naming the mismatch, before any weight is read.
    """
    path = Path(path)
    for marker, loader in FOLDER_LAYOUTS.items():  # a policy saved in another library's layout by its adapter
        if (path / marker).is_file():
            return _registered(loader).load(
                path, dataset=dataset, embodiment=embodiment, action_dim=action_dim, device=device
            )
    meta, features, stats = read_checkpoint(path)
    check_stats(stats, features.required_stats(), where=str(path / STATS_FILE))
    if dataset is not None:
        features.check_dataset(dataset)
    if embodiment is not None:
        features.check_embodiment(embodiment, action_dim=action_dim)
    policy_type = str(meta.get("policy_type"))
    if policy_type not in POLICY_TYPES:
        raise ContractError(f"{path / CONFIG_FILE}: unknown policy_type {policy_type!r}; known: {sorted(POLICY_TYPES)}")
    policy = _registered(POLICY_TYPES[policy_type]).from_checkpoint(meta["config"], features, stats)
    missing, unexpected = load_model(policy, str(path / WEIGHTS_FILE), strict=False)
    if missing or unexpected:
        raise ContractError(
            f"{path / WEIGHTS_FILE} does not fit the policy its config.json describes: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    return policy.to(device).eval()


def stats_to_json(stats: Stats) -> dict[str, dict[str, Any]]:
    """Tensors -> nested lists (float32 values, JSON-exact enough for normalisation)."""
    return {
        key: {name: value.detach().cpu().float().tolist() for name, value in entry.items()}
        for key, entry in stats.items()
    }


def stats_from_json(data: Mapping[str, Any], *, source: str) -> Stats:
    """Nested lists -> float32 tensors; raises :class:`ContractError` naming the key that is not numeric."""
    out: Stats = {}
    for key, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ContractError(f"{source}: {key!r} is not a mapping of statistics")
        out[key] = {}
        for name, value in entry.items():
            try:
                out[key][name] = torch.tensor(value, dtype=torch.float32)
            except (TypeError, ValueError) as error:
                raise ContractError(f"{source}: {key}.{name} is not numeric: {error}") from None
    return out


def _registered(spec: str) -> Any:
    """The class a registry entry ``"module:Class"`` names (its module imported on first use)."""
    module_name, _, class_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


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
    info = _read_json(info_path)
    for key in (FeatureKey.STATE.value, FeatureKey.ACTION.value):
        if key not in info.get("features", {}):
            raise ContractError(f"{info_path}: the dataset has no {key!r} feature")
    return info


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ContractError(f"{path}: cannot read JSON: {error}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}: expected a JSON object at top level")
    return data


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
