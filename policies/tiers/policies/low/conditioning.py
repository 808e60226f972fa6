"""Observation encoders: what the low tier sees, turned into conditioning tokens for its generative core.

Token layout of one sample (D = ``token_dim``; To observation steps; C cameras; K path waypoints)::

    index   0 .. To-1        To .. To+To·C-1               then 1        then 1      then K
    token   state(t-To+1..t)  camera c at step s (s-major)  language      goal        path waypoint k
            ───────────── observation (always kept) ──────  ──── conditions (nulled for CFG) ────

Every token gets a learned position embedding, so the network knows which slot it is. Classifier-free
guidance (BESO) drops the *conditions* (language, goal, path), never the observation: the null tokens are
the same observation tokens with each condition slot replaced by a learned null embedding, so the
unconditional model still knows where the robot is.

Inputs are normalised by the policy before they reach the encoder (state by its dataset statistics,
images by per-channel statistics); language arrives as text and is embedded here with the offline MiniLM
:class:`~tiers.services.text_encoder.TextEncoder` (cached, frozen; not part of the weights).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from tiers.core.config import Config
from tiers.core.errors import ContractError
from tiers.core.features import FeatureKey
from tiers.policies.low.generator import Conditioning
from tiers.policies.low.path_tokens import (  # re-exported: the condition keys and path tokens live torch-free there
    EE_PATH_KEY,
    GOAL_STATE_KEY,
    PATH_WAYPOINT_DIM,
    canonical_path,
    resample_path,
)
from tiers.services.text_encoder import EMBEDDING_DIM, TextEncoder

LANGUAGE_KEYS = (FeatureKey.TASK.value, FeatureKey.SUBTASK.value, FeatureKey.LANGUAGE_MOTION.value)


@dataclass
class ImageEncoderConfig(Config):
    """A small residual CNN trained from scratch, one per camera (no pretrained weights are reachable)."""

    channels: list[int] = field(default_factory=lambda: [32, 64, 128])  # width of each stage; each halves H, W
    blocks_per_stage: int = 1  # residual blocks per stage (ResNet-18 has 2)
    groups: int = 8  # GroupNorm groups (BatchNorm misbehaves with small batches and EMA weights)
    keypoints: int = 32  # spatial-softmax keypoints; the feature is their (x, y): 2 * keypoints values
    # stem: None, a 3x3 stride-2 conv (the first stage runs at H/2 x W/2: the encoder of checkpoints without this
    # field); P, a PxP stride-P "patchify" conv (ConvNeXt, ViT), so the first stage runs at H/P x W/P, with
    # (2/P)^2 of the multiply-adds there (P = 4: 1/4, P = 8: 1/16)
    stem_patch: int | None = None

    def __post_init__(self) -> None:
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must list positive stage widths, got {self.channels}")
        if self.stem_patch is not None and self.stem_patch < 2:
            raise ValueError(
                f"stem_patch must be >= 2 (a PxP stride-P stem) or null (3x3 stride 2), got {self.stem_patch}"
            )
        bad = [c for c in self.channels if c % self.groups]
        if bad:
            raise ValueError(f"channels {bad} are not divisible by groups={self.groups}")
        if self.blocks_per_stage < 0 or self.keypoints < 1:
            raise ValueError(
                f"blocks_per_stage must be >= 0 and keypoints >= 1, got {self.blocks_per_stage}, {self.keypoints}"
            )


@dataclass
class ConditioningConfig(Config):
    """Which observations and conditions become tokens, and how wide the tokens are."""

    token_dim: int = 256  # D, width of every conditioning token
    cameras: list[str] = field(default_factory=list)  # camera names ("front"): observation.images.<name>
    image_size: tuple[int, int] | None = (96, 96)  # (H, W) px images are resized to; None keeps the recorded size
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    # one CNN for every camera, run once on the cameras' images stacked in a batch (lerobot's
    # use_separate_rgb_encoder_per_camera=False); each camera keeps its own projection and position tokens.
    # False (one CNN per camera) is what checkpoints without this field were trained with.
    shared_image_encoder: bool = False
    language_key: str | None = FeatureKey.SUBTASK.value  # text that conditions: task | subtask | language_motion
    goal: bool = False  # add a goal-state token (batch key "goal.state", (B, S))
    path_waypoints: int = 0  # K > 0 adds K EEPath waypoint tokens (batch key "ee_path", (B, K, 8)); 0: none

    def __post_init__(self) -> None:
        if self.token_dim < 1:
            raise ValueError(f"token_dim must be positive, got {self.token_dim}")
        if self.language_key is not None and self.language_key not in LANGUAGE_KEYS:
            raise ValueError(f"language_key must be one of {list(LANGUAGE_KEYS)} or null, got {self.language_key!r}")
        if self.path_waypoints < 0:
            raise ValueError(f"path_waypoints must be >= 0, got {self.path_waypoints}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be unique, got {self.cameras}")
        for camera in self.cameras:
            if "." in camera:
                raise ValueError(f"cameras: give the camera name ('front'), not a key; got {camera!r}")
        if self.image_size is not None and min(self.image_size) < 8:
            raise ValueError(f"image_size must be at least 8x8 px, got {self.image_size}")

    @property
    def camera_keys(self) -> list[str]:
        """Batch keys of the cameras: ``observation.images.<name>``."""
        return [FeatureKey.IMAGES.camera(camera) for camera in self.cameras]

    @property
    def has_conditions(self) -> bool:
        """Whether any token can be dropped for classifier-free guidance."""
        return self.language_key is not None or self.goal or self.path_waypoints > 0


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and a skip connection (ResNet's basic block)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False),
            _norm(channels_out, groups),
            nn.SiLU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False),
            _norm(channels_out, groups),
        )
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.skip = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False), _norm(channels_out, groups)
            )
        self.activation = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activation(self.body(x) + self.skip(x))
        return out


class ImageEncoder(nn.Module):
    """(N, 3, H, W) normalised image -> (N, 2 * keypoints) spatial-softmax keypoint coordinates in [-1, 1].

    A stem (a 3x3 stride-2 conv, or a PxP stride-P patchify conv: ``stem_patch``), then one residual stage per
    entry of ``channels``, each after the first halving H and W, then lerobot's spatial softmax (expected image
    position of each learned keypoint), which keeps *where* things are, the information a manipulation policy
    needs, instead of pooling it away. The stem sets the cost: the first stage's 3x3 convolutions run at the
    stem's output resolution and hold most of the multiply-adds (96 px, channels (32, 64, 128): 111 M with
    the stride-2 stem, 28 M with a 4 px patchify stem).
    """

    def __init__(self, config: ImageEncoderConfig, image_size: tuple[int, int]):
        super().__init__()
        from lerobot.policies.diffusion.modeling_diffusion import SpatialSoftmax

        groups = config.groups
        patch = config.stem_patch
        stem = (
            nn.Conv2d(3, config.channels[0], 3, stride=2, padding=1, bias=False)
            if patch is None
            else nn.Conv2d(3, config.channels[0], patch, stride=patch, bias=False)
        )
        layers: list[nn.Module] = [stem, _norm(config.channels[0], groups), nn.SiLU()]
        width = config.channels[0]
        for stage, channels in enumerate(config.channels):
            for block in range(max(config.blocks_per_stage, 1 if stage else 0)):
                layers.append(_ResidualBlock(width, channels, 2 if block == 0 and stage > 0 else 1, groups))
                width = channels
        self.backbone = nn.Sequential(*layers)
        with torch.no_grad():
            feature_shape = self.backbone(torch.zeros(1, 3, *image_size)).shape[1:]
        self.pool = SpatialSoftmax(tuple(feature_shape), num_kp=config.keypoints)
        self.out_dim = 2 * config.keypoints

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        keypoints: torch.Tensor = self.pool(self.backbone(images))  # (N, keypoints, 2)
        return keypoints.flatten(1)


class ObservationEncoder(nn.Module):
    """Normalised observation history + conditions -> :class:`Conditioning` tokens (B, Tc, D).

    Args:
        config: what to encode.
        state_dim: S, length of ``observation.state``.
        n_obs_steps: To, observation steps per sample.
        image_size: (H, W) of the images the encoder will see (after resizing).
    """

    def __init__(self, config: ConditioningConfig, *, state_dim: int, n_obs_steps: int, image_size: tuple[int, int]):
        super().__init__()
        self.config = config
        self.n_obs_steps = n_obs_steps
        width = config.token_dim
        self.state_proj = nn.Linear(state_dim, width)
        shared = config.shared_image_encoder and bool(config.cameras)
        # separate encoders: cameras.<name>.*; a shared one: image_encoder.* (state-dict keys of each layout)
        self.cameras = nn.ModuleDict(
            {} if shared else {camera: ImageEncoder(config.image_encoder, image_size) for camera in config.cameras}
        )
        self.image_encoder = ImageEncoder(config.image_encoder, image_size) if shared else None
        self.camera_proj = nn.ModuleDict(
            {camera: nn.Linear(2 * config.image_encoder.keypoints, width) for camera in config.cameras}
        )
        self.language_proj = nn.Linear(EMBEDDING_DIM, width) if config.language_key else None
        self.goal_proj = nn.Linear(state_dim, width) if config.goal else None
        self.path_proj = nn.Linear(PATH_WAYPOINT_DIM, width) if config.path_waypoints else None
        n_observation = n_obs_steps * (1 + len(config.cameras))
        n_conditions = (config.language_key is not None) + int(config.goal) + config.path_waypoints
        self.n_observation_tokens = n_observation
        self.n_tokens = n_observation + n_conditions
        self.position = nn.Parameter(torch.randn(1, self.n_tokens, width) * 0.02)
        # one learned "no condition" embedding per condition slot (classifier-free guidance)
        self.null = nn.Parameter(torch.randn(1, n_conditions, width) * 0.02) if n_conditions else None
        self._text = TextEncoder()

    def camera_features(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Keypoint features of each camera's images, in ``config.cameras`` order.

        Args:
            images: per camera, (N, 3, H, W) normalised images (the same N for every camera).

        Returns:
            per camera, (N, 2 * keypoints) spatial-softmax coordinates in [-1, 1].
        """
        if self.image_encoder is None:
            return [self.cameras[camera](frames) for camera, frames in zip(self.config.cameras, images, strict=True)]
        # one batched pass: half the per-layer dispatch cost of two small CNNs, which dominates at 96 px on a CPU
        return list(self.image_encoder(torch.cat(list(images))).chunk(len(images)))

    def forward(self, batch: Mapping[str, Any], *, null_tokens: bool = True) -> Conditioning:
        """Encode a normalised batch.

        Args:
            batch: ``observation.state`` (B, To, S); ``observation.images.<cam>`` (B, To, 3, H, W) for each
                configured camera; the language key's text (a list of B strings); ``goal.state`` (B, S)
                normalised like the state; ``ee_path`` (B, K, 8).

            null_tokens: also build the null tokens (training's condition dropout and classifier-free guidance
                need them; a chunk sampled at ``cfg_scale`` 1 does not).

        Returns:
            Conditioning with tokens (B, Tc, D) and, when any condition is configured and ``null_tokens``, null
            tokens (B, Tc, D).
        """
        state = batch[FeatureKey.STATE.value]
        batch_size, steps = state.shape[:2]
        if steps != self.n_obs_steps:
            raise ContractError(f"observation.state has {steps} steps, the policy reads n_obs_steps={self.n_obs_steps}")
        tokens = [self.state_proj(state)]  # (B, To, D)
        histories = [batch[FeatureKey.IMAGES.camera(camera)] for camera in self.config.cameras]  # (B, To, 3, H, W)
        # one frame repeated To times (a single-step batch, or the first chunk of an episode): the CNN runs once
        # per sample, not To times; the features are those of every copy
        repeated = steps > 1 and all(images.stride(1) == 0 for images in histories)
        flat = [images[:, 0] if repeated else images.flatten(0, 1) for images in histories]  # (N, 3, H, W)
        for camera, features in zip(self.config.cameras, self.camera_features(flat), strict=True):  # (N, 2K)
            history = features[:, None].expand(-1, steps, -1) if repeated else features.view(batch_size, steps, -1)
            tokens.append(self.camera_proj[camera](history))  # (B, To, 2K) -> (B, To, D)
        conditions = []
        if self.language_proj is not None:
            key = self.config.language_key
            assert key is not None
            texts = _texts(batch, key, batch_size)
            embedded = self._text(texts).to(device=state.device, dtype=state.dtype)  # (B, 384)
            conditions.append(self.language_proj(embedded)[:, None])
        if self.goal_proj is not None:
            conditions.append(self.goal_proj(_required(batch, GOAL_STATE_KEY))[:, None])
        if self.path_proj is not None:
            path = _required(batch, EE_PATH_KEY)
            if path.shape[1:] != (self.config.path_waypoints, PATH_WAYPOINT_DIM):
                raise ContractError(
                    f"{EE_PATH_KEY} has shape {tuple(path.shape)}, expected (B, {self.config.path_waypoints}, "
                    f"{PATH_WAYPOINT_DIM}) (resample with resample_path)"
                )
            conditions.append(self.path_proj(path))
        observation = torch.cat(tokens, dim=1)  # (B, To*(1+C), D)
        if not conditions:
            return Conditioning(tokens=observation + self.position)
        condition = torch.cat(conditions, dim=1)  # (B, Tn, D)
        assert self.null is not None
        full = torch.cat([observation, condition], dim=1) + self.position
        if not null_tokens:
            return Conditioning(tokens=full)
        null = torch.cat([observation, self.null.expand(batch_size, -1, -1)], dim=1) + self.position
        return Conditioning(tokens=full, null_tokens=null)


def _texts(batch: Mapping[str, Any], key: str, batch_size: int) -> list[str]:
    """B strings from a batch entry: a list/tuple of strings (a DataLoader's collation) or one string."""
    value = _required(batch, key)
    texts = [value] * batch_size if isinstance(value, str) else list(value)
    if len(texts) != batch_size or not all(isinstance(text, str) for text in texts):
        raise ContractError(f"batch[{key!r}] must hold {batch_size} strings, got {value!r}")
    return texts


def _required(batch: Mapping[str, Any], key: str) -> Any:
    if key not in batch:
        raise ContractError(f"the policy is conditioned on {key!r} but the batch has no such key ({sorted(batch)})")
    return batch[key]


def hindsight_path(
    ee_poses: NDArray[np.floating[Any]], gripper: NDArray[np.floating[Any]], waypoints: int
) -> NDArray[np.float32]:
    """Path tokens from the poses an episode actually went through (training labels for path conditioning).

    Args:
        ee_poses: (T, 7) the end-effector poses of the coming frames (xyz m, wxyz), base frame.
        gripper: (T,) commanded gripper openings (m) at those frames.
        waypoints: K.

    Returns:
        (K, 8) float32 waypoints picked evenly over the T frames (nearest frame, no interpolation).
    """
    index = np.round(np.linspace(0, len(ee_poses) - 1, waypoints)).astype(int)
    return canonical_path(np.concatenate([ee_poses[index], np.asarray(gripper)[index, None]], axis=1))


def condition_keys(config: ConditioningConfig) -> Sequence[str]:
    """Batch keys the encoder reads beyond the state and the cameras."""
    keys: list[str] = []
    if config.language_key is not None:
        keys.append(config.language_key)
    if config.goal:
        keys.append(GOAL_STATE_KEY)
    if config.path_waypoints:
        keys.append(EE_PATH_KEY)
    return keys


class HindsightConditions(torch.utils.data.Dataset[dict[str, Any]]):
    """Training windows with hindsight goal and path conditions added (BESO-style goal relabelling).

    ``goal.state`` (S,) is the state at the episode's last frame, where the demonstration ended up;
    ``ee_path`` (K, 8) is the end-effector path the demonstration actually took over the window's action
    horizon (frames t .. t+Ta-1, clamped to the episode), from ``observation.ee_pose`` and the commanded
    gripper opening (the action's last component). Commanded, not measured: a planned path's gripper values
    are targets too (0 m to squeeze what is held, the release opening to let go), while the measured opening
    of a hand holding a cup only moves between the cup's width and a centimetre more, so a policy trained on
    it never learns the mid tier's "open now". Both read the dataset's parquet columns, never its videos.

    Args:
        windows: :class:`tiers.datasets.loading.TrainingWindows` of a dataset with tiers keys.
        goal: add ``goal.state``.
        path_waypoints: K > 0 adds ``ee_path``.

    Raises:
        ContractError: a path is asked for but the dataset has no ``observation.ee_pose``.
    """

    def __init__(self, windows: Any, *, goal: bool, path_waypoints: int):
        self.windows = windows
        self.goal = goal
        self.path_waypoints = path_waypoints
        self.horizon = int(windows.config.horizon)
        source = {tiers: dataset for dataset, tiers in windows.rename.items()}
        table = windows.dataset.hf_dataset
        self._state = np.stack([np.asarray(row) for row in table[source[FeatureKey.STATE.value]]]).astype(np.float32)
        actions = np.stack([np.asarray(row) for row in table[source[FeatureKey.ACTION.value]]])
        self._gripper_target = actions[:, -1].astype(np.float32)  # (N,) m, the commanded opening
        self._ee_pose: NDArray[np.float32] | None = None
        if path_waypoints:
            key = source.get(FeatureKey.EE_POSE.value)
            if key is None:
                raise ContractError(f"path conditioning needs {FeatureKey.EE_POSE.value!r}; the dataset has none")
            self._ee_pose = np.stack([np.asarray(row) for row in table[key]]).astype(np.float32)
        self._rows = {int(index): row for row, index in enumerate(table["index"])}  # global frame index -> row
        # global frame index -> last global index of its episode
        self._episode_end = {
            int(episode["episode_index"]): int(episode["dataset_to_index"]) - 1
            for episode in windows.dataset.meta.episodes
        }

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = self.windows[index]
        frame = int(item["index"])
        last = self._episode_end[int(item["episode_index"])]
        if self.goal:
            item[GOAL_STATE_KEY] = torch.from_numpy(self._state[self._rows[last]])
        if self._ee_pose is not None:
            frames = [self._rows[min(frame + step, last)] for step in range(self.horizon)]
            path = hindsight_path(self._ee_pose[frames], self._gripper_target[frames], self.path_waypoints)
            item[EE_PATH_KEY] = torch.from_numpy(path)
        return item


__all__ = [
    "EE_PATH_KEY",
    "GOAL_STATE_KEY",
    "LANGUAGE_KEYS",
    "PATH_WAYPOINT_DIM",
    "ConditioningConfig",
    "HindsightConditions",
    "ImageEncoder",
    "ImageEncoderConfig",
    "ObservationEncoder",
    "canonical_path",
    "condition_keys",
    "hindsight_path",
    "resample_path",
]
