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
mismatch, never later as a shape error inside a network. :class:`PolicyFeatures` and those checks live in
:mod:`tiers.policies.low.policy_features` (no torch, so the ONNX Runtime policy reads them too); this module
re-exports them.

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
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError
from tiers.policies.low.policy_features import (  # re-exported: the features live torch-free there
    STATS_NAMES,
    PolicyFeatures,
    check_stats,
    read_json,
)

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATS_FILE = "stats.json"
EMBODIMENT_FILE = "embodiment.json"

# policy_type (config.json) -> "module:Class" with a ``from_checkpoint`` classmethod
POLICY_TYPES: dict[str, str] = {
    "generative": "tiers.policies.low.policy:GenerativeLowPolicy",
}
# marker file of a checkpoint folder in another library's layout -> "module:Class" with a ``load`` classmethod
FOLDER_LAYOUTS: dict[str, str] = {
    "tiers_lerobot.json": "tiers.policies.low.lerobot_adapter:LerobotPolicyAdapter",  # lerobot's save_pretrained
}

Stats = dict[str, dict[str, torch.Tensor]]


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
    meta = read_json(path / CONFIG_FILE)
    if meta.get("format") != FORMAT_VERSION:
        raise ContractError(f"{path / CONFIG_FILE}: format {meta.get('format')!r}, this tiers reads {FORMAT_VERSION}")
    features = PolicyFeatures.from_dict(read_json(path / EMBODIMENT_FILE), source=str(path / EMBODIMENT_FILE))
    stats = stats_from_json(read_json(path / STATS_FILE), source=str(path / STATS_FILE))
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


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


__all__ = [
    "CONFIG_FILE",
    "EMBODIMENT_FILE",
    "FOLDER_LAYOUTS",
    "FORMAT_VERSION",
    "POLICY_TYPES",
    "STATS_FILE",
    "STATS_NAMES",
    "WEIGHTS_FILE",
    "PolicyFeatures",
    "Stats",
    "check_stats",
    "load_policy",
    "read_checkpoint",
    "save_checkpoint",
    "stats_from_json",
    "stats_to_json",
]
