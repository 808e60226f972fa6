"""lerobot's diffusion policy and ACT as tiers low tiers, trained on the same windows as the tiers policies.

:class:`LerobotPolicyAdapter` wraps a lerobot 0.6 policy (``DiffusionPolicy`` or ``ACTPolicy``) with lerobot's
own pre/post-processors (rename → batch → device → normalise, and unnormalise → cpu, built by
``lerobot.policies.factory.make_pre_post_processors`` from the tiers dataset's statistics), so that every
comparison of the low tier has a real, unmodified peer in it. It satisfies
:class:`tiers.core.protocols.LowLevelPolicy` and trains on the one training loop
(:func:`tiers.services.training.train`), run by ``tiers train --policy lerobot_diffusion | lerobot_act``
(:func:`tiers.apps.training.train_lerobot_policy`).

Training data are tiers windows (:func:`tiers.datasets.loading.load_training_dataset`, cut to
:func:`window_shape`): state and cameras
over ``To`` frames ending at t, actions over the window's horizon starting at t. lerobot's diffusion policy
predicts its ``horizon`` from t−To+1 (the first To−1 actions lie in the past and are never executed), so the
adapter prepends To−1 steps flagged as padding to each action window and has lerobot mask padded steps in
its loss (``do_mask_loss_for_padding``), as lerobot treats the start of an episode::

    lerobot diffusion, To=2, horizon H=16, n_action_steps=8
    step:             t-1   t    t+1  ...  t+7  t+8  ...  t+14
    tiers window:           a    a    ...  a    a    ...  a        <- window horizon H - To + 1 = 15, from t
    lerobot action:   pad   a    a    ...  a    a    ...  a        <- (B, H, A), action_is_pad[:, 0] = True
    executed:               a    a    ...  a                       <- select_action pops n_action_steps from t

ACT reads one observation frame (To = 1) and predicts ``chunk_size`` actions from t, the tiers window as is.

The lerobot policies condition on observations only (state and RGB cameras), as lerobot ships them; the
task/subtask/language-motion text of a batch passes through lerobot's processors and is ignored, so on
multi-task data they cannot tell tasks apart by instruction. No pretrained vision backbone is reachable
offline: the ResNet trains from scratch (``pretrained_backbone_weights`` is forced to None; the diffusion
policy then uses group norm, as lerobot advises without pretrained weights).

Checkpoint folder (:meth:`LerobotPolicyAdapter.save`)::

    config.json, model.safetensors                   lerobot's ``save_pretrained`` (its config + weights)
    policy_preprocessor.json, policy_postprocessor.json, policy_*_normalizer_processor.safetensors
                                                     lerobot's processors, normalisation statistics included
    embodiment.json                                  what it was trained for (tiers'
                                                     :class:`~tiers.policies.low.checkpoint.PolicyFeatures`)
    tiers_lerobot.json                               {"adapter": adapter config, "weights": "ema"|"raw", "step"}

Loading (:meth:`LerobotPolicyAdapter.load`, also reached through :func:`tiers.policies.low.checkpoint.load_policy`,
which knows these folders by ``tiers_lerobot.json``) goes through lerobot's ``from_pretrained`` (strict) and
checks the features against the robot and/or dataset it meets, failing with a message that names the mismatch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from tiers.core.config import Config
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError, EmbodimentMismatchError
from tiers.core.features import FeatureKey
from tiers.core.observation import Observation
from tiers.policies.low.checkpoint import EMBODIMENT_FILE, PolicyFeatures

# adapter metadata written next to lerobot's own files; the marker checkpoint.FOLDER_LAYOUTS knows these folders by
TIERS_FILE = "tiers_lerobot.json"
STATE, ACTION = FeatureKey.STATE.value, FeatureKey.ACTION.value
PAD_SUFFIX = "_is_pad"  # lerobot's padding flag, ``<key>_is_pad``
_STAT_NAMES = {"MEAN_STD": ("mean", "std"), "MIN_MAX": ("min", "max")}  # what each normalisation mode reads


class LerobotKind(StrEnum):
    """Which lerobot policy the adapter runs (lerobot's registered policy type)."""

    DIFFUSION = "diffusion"  # lerobot.policies.diffusion.modeling_diffusion.DiffusionPolicy (DDPM, 1-D conv UNet)
    ACT = "act"  # lerobot.policies.act.modeling_act.ACTPolicy (CVAE transformer, action chunking)


@dataclass
class LerobotAdapterConfig(Config):
    """Which lerobot policy, what it reads, and lerobot's own config fields.

    Every lerobot field not set in ``lerobot`` keeps lerobot's default (the diffusion policy at its defaults:
    To=2, horizon 64, 32 executed steps, a ResNet-18 per camera, UNet (512, 1024, 2048), DDPM with 100 steps;
    ACT: To=1, chunk 100, all executed, ResNet-18, 4+1 transformer layers of width 512, CVAE).
    """

    kind: LerobotKind = LerobotKind.DIFFUSION  # lerobot policy type
    cameras: list[str] = field(default_factory=list)  # RGB camera names read ("front" -> observation.images.front)
    image_size: tuple[int, int] | None = (96, 96)  # (H, W) px images are resized to; None keeps the recorded size
    lerobot: dict[str, Any] = field(default_factory=dict)  # lerobot config fields, e.g. {"down_dims": [32, 64]}

    def __post_init__(self) -> None:
        self.kind = LerobotKind(self.kind)  # also when built in code with a plain string
        for camera in self.cameras:
            if "." in camera:
                raise ValueError(f"cameras: give the camera name ('front'), not a key; got {camera!r}")
        if self.lerobot.get("pretrained_backbone_weights"):
            raise ValueError("lerobot.pretrained_backbone_weights: no model hub is reachable offline; leave it unset")
        if "device" in self.lerobot:
            raise ValueError("lerobot.device: the adapter runs where its module is moved (trainer.device); drop it")
        if not self.cameras:
            raise ValueError(f"cameras: lerobot's {self.kind.value} policy needs at least one RGB camera")
        if self.image_size is not None and min(self.image_size) < 8:
            raise ValueError(f"image_size must be at least 8x8 px, got {self.image_size}")

    @property
    def camera_keys(self) -> list[str]:
        """Batch keys of the cameras: ``observation.images.<name>``."""
        return [FeatureKey.IMAGES.camera(camera) for camera in self.cameras]

    def lerobot_config(self) -> Any:
        """lerobot's config object (``DiffusionConfig`` / ``ACTConfig``) on the CPU, features not yet set."""
        from lerobot.policies.factory import make_policy_config

        fields: dict[str, Any] = {"device": "cpu", "pretrained_backbone_weights": None}
        if self.kind is LerobotKind.DIFFUSION:
            # group norm: lerobot refuses it on pretrained weights and advises it without them; masking makes
            # the past steps the adapter prepends (see the module docstring) count as padding
            fields.update(use_group_norm=True, do_mask_loss_for_padding=True)
        fields.update({key: tuple(value) if isinstance(value, list) else value for key, value in self.lerobot.items()})
        try:
            return make_policy_config(self.kind.value, **fields)
        except (TypeError, ValueError) as error:
            raise ContractError(f"lerobot {self.kind.value} config: {error} (fields given: {self.lerobot})") from error


def window_shape(lerobot_config: Any) -> tuple[int, int]:
    """(To, window horizon Ta): the tiers training window a lerobot config reads (see the module docstring)."""
    steps = int(lerobot_config.n_obs_steps)
    if lerobot_config.type == LerobotKind.DIFFUSION:
        return steps, int(lerobot_config.horizon) - steps + 1
    return steps, int(lerobot_config.chunk_size)


class LerobotPolicyAdapter(nn.Module):
    """A lerobot policy with lerobot's processors, behind the tiers low-tier protocol.

    Batches hold raw (unnormalised) tensors under tiers keys: ``observation.state`` (B, S) at inference,
    (B, To, S) in training windows; ``observation.images.<cam>`` (B, 3, H, W) or (B, To, 3, H, W) float in
    [0, 1]; ``action`` (B, Ta, A) and ``action_is_pad`` (B, Ta) bool in training. Actions come back raw
    (the embodiment's action space), on the CPU, as lerobot's post-processor leaves them.
    """

    policy_type = "lerobot"

    def __init__(
        self,
        config: LerobotAdapterConfig,
        policy: Any,
        features: PolicyFeatures,
        stats: Mapping[str, Mapping[str, torch.Tensor]],
    ) -> None:
        super().__init__()
        self.config = config
        self.policy = policy  # lerobot's PreTrainedPolicy (an nn.Module): its weights are this module's
        self.features = features
        self.stats = {key: {name: value.detach().cpu() for name, value in sub.items()} for key, sub in stats.items()}
        _require_stats(policy.config, self.stats)
        self._processors_device = ""
        self._build_processors()

    @classmethod
    def from_dataset(
        cls, config: LerobotAdapterConfig, root: str | Path, stats: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> LerobotPolicyAdapter:
        """A fresh lerobot policy shaped by the tiers dataset at ``root`` and its statistics (tiers keys)."""
        features = PolicyFeatures.from_dataset(
            root, cameras=config.cameras, image_size=config.image_size, language_key=None
        )
        features.check_dataset(root)
        return cls.from_features(config, features, stats)

    @classmethod
    def from_features(
        cls, config: LerobotAdapterConfig, features: PolicyFeatures, stats: Mapping[str, Mapping[str, torch.Tensor]]
    ) -> LerobotPolicyAdapter:
        """A fresh lerobot policy for the given features (state/action sizes, cameras at (3, H, W)) and statistics."""
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.factory import get_policy_class

        if sorted(features.cameras) != sorted(config.camera_keys):
            raise ContractError(f"features read cameras {sorted(features.cameras)}, the config {config.camera_keys}")
        lerobot_config = config.lerobot_config()
        lerobot_config.input_features = {
            STATE: PolicyFeature(FeatureType.STATE, (features.state_dim,)),
            **{key: PolicyFeature(FeatureType.VISUAL, tuple(shape)) for key, shape in features.cameras.items()},
        }
        lerobot_config.output_features = {ACTION: PolicyFeature(FeatureType.ACTION, (features.action_dim,))}
        lerobot_config.validate_features()
        policy = get_policy_class(config.kind.value)(lerobot_config)
        return cls(config, policy, features, stats)

    # -- persistence ----------------------------------------------------------------------------------------

    def save(self, path: str | Path, *, weights: str = "raw", step: int = 0) -> Path:
        """Write the checkpoint folder (see the module docstring) through lerobot's ``save_pretrained``.

        Args:
            path: the folder.
            weights: "ema" when the module currently holds the trainer's EMA weights, else "raw".
            step: the optimiser step the weights come from.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save_pretrained(path)
        self.preprocessor.save_pretrained(path)
        self.postprocessor.save_pretrained(path)
        (path / EMBODIMENT_FILE).write_text(json.dumps(self.features.to_dict(), indent=2) + "\n")
        meta = {
            "adapter": self.config.to_dict(),
            "weights": weights,
            "step": step,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (path / TIERS_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        dataset: str | Path | None = None,
        embodiment: EmbodimentSpec | None = None,
        action_dim: int | None = None,
        device: str | torch.device = "cpu",
    ) -> LerobotPolicyAdapter:
        """Load a checkpoint folder through lerobot's ``from_pretrained``, checked against a dataset/robot first.

        Also reached through :func:`tiers.policies.low.checkpoint.load_policy` (``tiers eval --policy PATH``).
        ``action_dim`` is the environment's action size when it overrides the embodiment's action space.

        Raises:
            ContractError: the folder is not an adapter checkpoint, its statistics lack a feature, or the
                dataset lacks a camera the policy reads.
            EmbodimentMismatchError: the robot, state/action size, fps or cameras of ``dataset`` or
                ``embodiment`` differ from what the policy was trained for (the message names which).
        """
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        path = Path(path)
        if not is_lerobot_checkpoint(path):
            raise ContractError(f"{path}: no {TIERS_FILE}; not a checkpoint of a lerobot policy saved by tiers")
        meta = json.loads((path / TIERS_FILE).read_text())
        config = LerobotAdapterConfig.from_dict(meta["adapter"], source=str(path / TIERS_FILE))
        embodiment_file = path / EMBODIMENT_FILE
        features = PolicyFeatures.from_dict(json.loads(embodiment_file.read_text()), source=str(embodiment_file))
        if dataset is not None:
            features.check_dataset(dataset)
        if embodiment is not None:
            features.check_embodiment(embodiment, action_dim=action_dim)
        policy_class = get_policy_class(config.kind.value)
        lerobot_config = policy_class.config_class.from_pretrained(path)
        lerobot_config.device = "cpu"
        policy = policy_class.from_pretrained(path, config=lerobot_config, strict=True)
        preprocessor, _ = make_pre_post_processors(
            lerobot_config, pretrained_path=str(path), preprocessor_overrides={"device_processor": {"device": "cpu"}}
        )
        adapter = cls(config, policy, features, _normaliser_stats(preprocessor, where=str(path)))
        return adapter.to(device).eval()

    # -- lerobot's processors -----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        parameter: torch.Tensor = next(self.policy.parameters())
        return parameter.device

    def _build_processors(self) -> None:
        """(Re)build lerobot's processors for the device the weights are on (they follow ``.to(device)``)."""
        from lerobot.policies.factory import make_pre_post_processors

        device = str(self.device)
        self.policy.config.device = device
        self.preprocessor, self.postprocessor = make_pre_post_processors(self.policy.config, dataset_stats=self.stats)
        self._processors_device = device

    def _preprocess(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Raw tiers batch -> lerobot's normalised batch on the policy's device; NaN refused, naming the key."""
        if str(self.device) != self._processors_device:
            self._build_processors()
        needed = list(self.policy.config.input_features)
        absent = [key for key in needed if key not in batch]
        if absent:
            raise ContractError(f"batch lacks {absent}; the lerobot policy reads {needed} (batch has {sorted(batch)})")
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
                raise ContractError(f"batch[{key!r}] has {int((~torch.isfinite(value)).sum())} non-finite value(s)")
        processed: dict[str, Any] = self.preprocessor(dict(batch))
        return processed

    # -- LowLevelPolicy -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Clear lerobot's observation history and action queue (start of an episode)."""
        self.policy.reset()

    def drop_queued_actions(self) -> None:
        """Forget queued actions (the observation history is kept) so a new command acts on the next tick."""
        if self.config.kind is LerobotKind.DIFFUSION:
            self.policy._queues[ACTION].clear()
        elif self.policy.config.temporal_ensemble_coeff is not None:
            self.policy.temporal_ensembler.reset()
        else:
            self.policy._action_queue.clear()

    @torch.no_grad()
    def select_action(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """(B, A) raw action to apply now, through lerobot's own queues (one observation step per call).

        ``batch``: ``observation.state`` (B, S), each camera (B, 3, H, W) float in [0, 1]; other keys pass.
        """
        self.policy.eval()
        step = {key: value for key, value in batch.items() if key != ACTION}
        action: torch.Tensor = self.postprocessor(self.policy.select_action(self._preprocess(step)))
        return action

    @torch.no_grad()
    def predict_action_chunk(self, batch: Mapping[str, Any], *, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n_action_steps, A) raw actions from t for the given observations; lerobot's queues untouched.

        Args:
            batch: one step ((B, S), (B, 3, H, W): repeated To times, as lerobot fills its queue at an
                episode start) or a history ((B, To, S), (B, To, 3, H, W)).
            noise: (B, horizon, A) starting noise of lerobot's diffusion sampler; None draws it. (lerobot's
                DDPM adds fresh noise at each step: seed torch for a repeatable chunk.)
        """
        self.policy.eval()
        processed = self._preprocess(batch)
        if self.config.kind is LerobotKind.ACT:
            processed = _frame(processed, self.policy.config)
            actions = self.policy.predict_action_chunk(processed)[:, : self.policy.config.n_action_steps]
        else:
            processed = _history(processed, self.policy.config)
            actions = self.policy.diffusion.generate_actions(processed, noise=noise)
        chunk: torch.Tensor = self.postprocessor(actions)
        return chunk

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """lerobot's training loss on a batch of raw tiers windows (see the module docstring for the alignment).

        Returns:
            (scalar loss, logged values: lerobot's own for ACT (l1, kld), {"loss"} for diffusion).

        Raises:
            ContractError: a missing key, or a NaN or infinity in an input (the message names the key).
        """
        if ACTION not in batch:
            raise ContractError(f"training batch lacks {ACTION!r}; it has {sorted(batch)}")
        batch = dict(batch)
        actions, pad_key = batch[ACTION], ACTION + PAD_SUFFIX
        pad = batch.get(pad_key, torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device))
        if self.config.kind is LerobotKind.DIFFUSION:
            past = int(self.policy.config.n_obs_steps) - 1  # steps before t that lerobot predicts, never executed
            batch[ACTION] = torch.cat([actions[:, :1].expand(-1, past, -1), actions], dim=1)
            batch[pad_key] = torch.cat([torch.ones_like(pad[:, :1]).expand(-1, past), pad], dim=1)
        else:
            batch[pad_key] = pad
        processed = self._preprocess(batch)
        if self.config.kind is LerobotKind.ACT:
            processed = _frame(processed, self.policy.config)
        loss, info = self.policy.forward(processed)
        return loss, dict(info) if info else {"loss": float(loss.detach())}

    # -- observations in, actions out (the same helpers as GenerativeLowPolicy, for the kitchen controller) --

    def batch_from_observation(self, observation: Observation, *, command: str | None = None) -> dict[str, Any]:
        """A one-step batch (B = 1) for :meth:`select_action` from a kitchen or robot observation.

        Images are resized to the size the policy was trained on, as the dataset loader resized them.
        ``command`` is carried as the ``task`` text lerobot's processors pass through (the policies ignore it).

        Raises:
            EmbodimentMismatchError: the state size or a camera does not fit the policy.
        """
        from torchvision.transforms import v2

        state = torch.as_tensor(observation.state)
        if state.shape != (self.features.state_dim,):
            raise EmbodimentMismatchError(
                f"observation state has {state.shape[0]} components; the policy reads {self.features.state_dim}"
            )
        batch: dict[str, Any] = {STATE: state[None], FeatureKey.TASK.value: [command or observation.instruction]}
        for key, (_, height, width) in self.features.cameras.items():
            name = key.removeprefix(f"{FeatureKey.IMAGES.value}.")
            if name not in observation.images:
                raise EmbodimentMismatchError(
                    f"the policy reads camera {name!r}; the observation has {sorted(observation.images)}"
                )
            image = torch.from_numpy(np.ascontiguousarray(observation.images[name])).permute(2, 0, 1).float() / 255.0
            if image.shape[1:] != (height, width):
                image = v2.Resize([height, width], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)(image)
            batch[key] = image[None]
        return batch

    @staticmethod
    def action_for_env(action: torch.Tensor) -> NDArray[np.float32]:
        """(1, A) or (A,) action tensor -> (A,) float32 array for ``env.step``."""
        array = action.detach().to("cpu").float().numpy()
        if array.ndim == 2:
            if array.shape[0] != 1:
                raise ContractError(f"action_for_env takes one action, got a batch of {array.shape[0]}")
            array = array[0]
        return np.asarray(array, dtype=np.float32)


def is_lerobot_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint folder written by :meth:`LerobotPolicyAdapter.save`."""
    return (Path(path) / TIERS_FILE).is_file()


# -- internals --------------------------------------------------------------------------------------------------


def _frame(batch: dict[str, Any], config: Any) -> dict[str, Any]:
    """ACT reads one frame: (B, 1, ...) observation windows -> (B, ...)."""
    out = dict(batch)
    for key, feature in config.input_features.items():
        value = out[key]
        if value.ndim == 2 + len(feature.shape):
            if value.shape[1] != 1:
                raise ContractError(f"ACT reads one observation frame; batch[{key!r}] has {value.shape[1]}")
            out[key] = value[:, 0]
    return out


def _history(batch: dict[str, Any], config: Any) -> dict[str, Any]:
    """lerobot diffusion's model input: (B, To, S) state, (B, To, N, 3, H, W) stacked cameras."""
    out = dict(batch)
    steps = int(config.n_obs_steps)
    for key, feature in config.input_features.items():
        value = out[key]
        if value.ndim == 1 + len(feature.shape):  # one step: repeat it To times
            out[key] = value.unsqueeze(1).expand(-1, steps, *value.shape[1:])
        elif value.shape[1] != steps:
            raise ContractError(f"batch[{key!r}] holds {value.shape[1]} steps; the policy reads To={steps}")
    if config.image_features:
        out[FeatureKey.IMAGES.value] = torch.stack([out[key] for key in config.image_features], dim=-4)
    return out


def _require_stats(config: Any, stats: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Raise :class:`ContractError` for a feature the policy normalises without its statistics.

    lerobot's normaliser silently passes a feature through when its statistics are missing; the policy
    would then train and act on raw values without a word, so the adapter refuses instead.
    """
    for key, feature in {**config.input_features, **config.output_features}.items():
        mode = config.normalization_mapping.get(feature.type.value)
        names = _STAT_NAMES.get(getattr(mode, "value", str(mode)), ())
        if not names:
            continue
        if key not in stats:
            raise ContractError(f"normalisation statistics lack {key!r} (they have {sorted(stats)})")
        absent = [name for name in names if name not in stats[key]]
        if absent:
            raise ContractError(f"normalisation statistics of {key!r} lack {absent} ({mode} normalisation)")


def _normaliser_stats(preprocessor: Any, *, where: str) -> dict[str, dict[str, torch.Tensor]]:
    """The statistics held by the normaliser step of a loaded lerobot preprocessor."""
    for step in preprocessor.steps:
        if type(step).__name__ == "NormalizerProcessorStep":
            return {
                key: {name: torch.as_tensor(value).float() for name, value in sub.items()}
                for key, sub in step.stats.items()
            }
    raise ContractError(f"{where}: the saved lerobot preprocessor has no normaliser step (no statistics)")
