"""RT-H language-motion prediction: (camera image, state, task) -> the next language motion, as a high tier.

RT-H (Belkhale et al., 2024) puts a "language motion" between the task and the actions: "move arm forward",
"close gripper", ... This module learns to predict it from what the robot sees, trained on the motions that
:mod:`tiers.datasets.language_motion` auto-labels from proprioception in every ``tiers record`` dataset (the
``language_motion`` column), and hands it down as a :class:`~tiers.core.language.LanguageCommand` of style
``motion`` for a language-conditioned low tier. A person can say a motion at any time ("move arm left"): it
overrides the prediction for ``override_s`` seconds of the runtime clock, as in RT-H's intervention mode.

Network (:class:`MotionClassifier`, trained from scratch; B = batch, K = vocabulary size; S = state size: the
concatenated ``state_keys``, by default joint positions + gripper opening (J+1) and the tool pose (7))::

    image (B, 3, H, W) in [0, 1] ─ conv3x3/2 ─ GN ─ SiLU ─ ... (len(channels) stages) ─ flatten ─ linear ─┐
    state (B, S) ─ (x - mean) / std ─ linear ─ SiLU ──────────────────────────────────────────────────────┼─ MLP ─┐
    task (B, 384) MiniLM embedding (tiers.services.text_encoder) ─ linear ─ SiLU ─────────────────────────┘       │
                                                                                          logits (B, K) ◀─────────┘

Files of a trained predictor (``save`` / ``MotionPredictor.load``; never pickle): ``model.safetensors`` (weights and
the state normalisation) and ``config.json`` (:class:`MotionPredictorConfig`, the state size, provenance).

Training: :func:`train_motion_predictor` (episodes split into train / held-out, accuracy and the majority-class
baseline on the held-out episodes written to ``metrics.json``); command line: ``python -m
tiers.policies.high.motion_predictor --dataset DATA --out RUN`` (the flags of ``tiers train``; see
:func:`add_train_arguments`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from tiers.commands.motion_words import VOCABULARY
from tiers.core.config import Config, load_config
from tiers.core.errors import ConfigError, ContractError
from tiers.core.features import CommandSource, CommandStyle, FeatureKey
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.services.text_encoder import EMBEDDING_DIM, TextEncoder

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
PRESET = "motion_kitchen"  # configs/train/motion_kitchen.yaml
# dataset key -> Observation attribute of the proprioception the predictor may read
STATE_SOURCES = {FeatureKey.STATE.value: "state", FeatureKey.EE_POSE.value: "ee_pose"}


@dataclass
class MotionPredictorConfig(Config):
    """The predictor's inputs, network and runtime behaviour."""

    camera: str = "observation.images.front"  # camera key read from the dataset and observation.images[<name>]
    image_size: tuple[int, int] = (64, 64)  # (H, W) pixels the camera image is resized to (antialiased bilinear)
    channels: tuple[int, ...] = (16, 32, 64, 64)  # conv widths, one stride-2 3x3 conv stage each
    groups: int = 8  # GroupNorm groups in each conv stage (must divide every width)
    state_keys: tuple[str, ...] = (FeatureKey.STATE.value, FeatureKey.EE_POSE.value)  # proprioception read, in order
    state_width: int = 64  # width of the state embedding
    text_width: int = 64  # width of the task embedding (projected from the 384-d MiniLM vector)
    hidden: int = 256  # width of the fusion MLP
    dropout: float = 0.1  # dropout in the fusion MLP while training
    vocabulary: tuple[str, ...] = VOCABULARY  # the classes: RT-H language motions (tiers.datasets.language_motion)
    override_s: float = 2.0  # s of runtime clock a human motion command overrides the predictions
    min_confidence: float = 0.0  # below this softmax probability the previous motion is kept (0: always switch)

    def __post_init__(self) -> None:
        if not self.camera.startswith(f"{FeatureKey.IMAGES.value}."):
            raise ValueError(f"camera must be an {FeatureKey.IMAGES.value}.<name> key, got {self.camera!r}")
        if min(self.image_size) < 2 ** len(self.channels):
            raise ValueError(f"image_size {self.image_size} is too small for {len(self.channels)} stride-2 stages")
        if not self.channels or any(width % self.groups for width in self.channels):
            raise ValueError(f"channels {self.channels} must be non-empty multiples of groups={self.groups}")
        if len(set(self.vocabulary)) != len(self.vocabulary) or len(self.vocabulary) < 2:
            raise ValueError(f"vocabulary must hold at least 2 distinct phrases, got {list(self.vocabulary)}")
        unknown = [key for key in self.state_keys if key not in STATE_SOURCES]
        if not self.state_keys or unknown:
            raise ValueError(
                f"state_keys must be a non-empty subset of {list(STATE_SOURCES)}, got {list(self.state_keys)}"
            )
        if self.override_s < 0:
            raise ValueError(f"override_s must be >= 0 s, got {self.override_s}")
        if not 0.0 <= self.min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {self.min_confidence}")

    @property
    def camera_name(self) -> str:
        """The camera's name in :attr:`Observation.images` ("front")."""
        return self.camera.removeprefix(f"{FeatureKey.IMAGES.value}.")


@dataclass
class MotionTrainerConfig(Config):
    """How the predictor is trained and evaluated."""

    steps: int = 1500  # optimiser steps
    batch_size: int = 64  # frames per step
    lr: float = 2e-3  # AdamW peak learning rate (cosine decay to 5% after warmup)
    warmup_steps: int = 50  # linear learning-rate warmup
    weight_decay: float = 1e-4  # AdamW weight decay
    label_smoothing: float = 0.05  # cross-entropy label smoothing
    shift_pixels: int = 4  # random image shift (pad + crop) while training, in pixels of the resized image
    held_out_every: int = 4  # every k-th episode (k-1, 2k-1, ...) is held out; 0: no held-out split
    held_out_episodes: list[int] = field(default_factory=list)  # explicit held-out episodes; overrides held_out_every
    eval_every: int = 250  # steps between held-out evaluations in the log (0: only at the end)
    seed: int = 0  # torch seed of initialisation, batches and augmentation
    device: str = "cpu"  # cpu | cuda | auto
    num_workers: int = 0  # DataLoader workers decoding the dataset once before training
    cpu_threads: int = 0  # torch intra-op CPU threads; 0: torch's default (1 beats oversubscription on busy CPUs)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.held_out_every < 0 or self.held_out_every == 1:
            raise ValueError(f"held_out_every must be 0 or >= 2, got {self.held_out_every}")
        if self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be >= 0, got {self.cpu_threads}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be cpu, cuda or auto, got {self.device!r}")


@dataclass
class MotionTrainConfig(Config):
    """A training run: the predictor and the trainer (``configs/train/motion_kitchen.yaml``)."""

    predictor: MotionPredictorConfig = field(default_factory=MotionPredictorConfig)
    trainer: MotionTrainerConfig = field(default_factory=MotionTrainerConfig)


# --- the network ------------------------------------------------------------------------------------------------


class MotionClassifier(nn.Module):
    """Logits over the vocabulary from an image, a state and a task embedding (see the module docstring)."""

    state_mean: torch.Tensor  # (S,) buffer: training mean of the concatenated state_keys
    state_std: torch.Tensor  # (S,) buffer: training std of the concatenated state_keys

    def __init__(self, config: MotionPredictorConfig, state_dim: int) -> None:
        super().__init__()
        self.config = config
        self.state_dim = state_dim
        stages: list[nn.Module] = []
        width = 3
        for channels in config.channels:
            stages += [nn.Conv2d(width, channels, 3, stride=2, padding=1), nn.GroupNorm(config.groups, channels)]
            stages.append(nn.SiLU())
            width = channels
        self.encoder = nn.Sequential(*stages)
        height, breadth = (math.ceil(size / 2 ** len(config.channels)) for size in config.image_size)
        self.image_head = nn.Sequential(nn.Flatten(), nn.Linear(width * height * breadth, config.hidden), nn.SiLU())
        self.state_head = nn.Sequential(nn.Linear(state_dim, config.state_width), nn.SiLU())
        self.text_head = nn.Sequential(nn.Linear(EMBEDDING_DIM, config.text_width), nn.SiLU())
        fused = config.hidden + config.state_width + config.text_width
        self.classifier = nn.Sequential(
            nn.Linear(fused, config.hidden),
            nn.SiLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, len(config.vocabulary)),
        )
        # state normalisation from the training data's statistics, saved with the weights
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))

    def forward(self, images: torch.Tensor, states: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """
        Args:
            images: (B, 3, H, W) float in [0, 1], H, W = ``config.image_size``.
            states: (B, S) the ``state_keys`` concatenated (joint positions rad, gripper opening m; tool xyz m +
                quaternion wxyz in the base frame).
            texts: (B, 384) task embeddings from :class:`TextEncoder`.

        Returns:
            (B, K) logits over ``config.vocabulary``.
        """
        features = self.image_head(self.encoder(images * 2.0 - 1.0))  # (B, hidden)
        normalised = (states - self.state_mean) / self.state_std.clamp(min=1e-6)  # (B, S)
        fused = torch.cat([features, self.state_head(normalised), self.text_head(texts)], dim=-1)
        logits: torch.Tensor = self.classifier(fused)
        return logits


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, h, w) float [0, 1] -> (B, 3, H, W), antialiased bilinear (as the dataset loader resizes)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    from torchvision.transforms import v2

    resized: torch.Tensor = v2.Resize(list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)(images)
    return resized


# --- the predictor as a high tier ---------------------------------------------------------------------------------


class MotionPredictor:
    """A trained :class:`MotionClassifier` as a :class:`~tiers.core.protocols.HighLevelPlanner`.

    ``next_command`` returns the predicted language motion as ``LanguageCommand(style=motion, source=planner)``.
    A human motion (``handle_correction`` with style ``motion``, or ``stop``, or a ``correction`` whose text is a
    phrase of the vocabulary) is returned instead, unchanged (its provenance kept), until ``override_s`` seconds of
    observation time have passed since its timestamp. Other corrections (a new subtask) are not this tier's: they
    are ignored here and handled by the runtime.
    """

    def __init__(
        self, model: MotionClassifier, *, encoder: TextEncoder | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.model = model.eval().to(device)
        self.config = model.config
        self.device = torch.device(device)
        self.encoder = encoder or TextEncoder()
        self._task = torch.zeros(1, EMBEDDING_DIM)
        self.instruction = ""
        self._override: LanguageCommand | None = None
        self._last: LanguageCommand | None = None

    def reset(self, instruction: str) -> None:
        """Start an episode for ``instruction`` (embedded once); forget overrides and the previous motion."""
        self.instruction = instruction
        self._task = self.encoder([instruction]).to(self.device)  # (1, 384)
        self._override = None
        self._last = None

    @torch.no_grad()
    def probabilities(self, observation: Observation) -> dict[str, float]:
        """Softmax probability of every phrase of the vocabulary for ``observation``.

        Raises:
            ContractError: the observation lacks the camera or its state has another size than in training.
        """
        name = self.config.camera_name
        if name not in observation.images:
            raise ContractError(
                f"MotionPredictor reads camera {name!r}; the observation has {sorted(observation.images)}"
            )
        parts = [
            np.asarray(getattr(observation, STATE_SOURCES[key]), dtype=np.float32) for key in self.config.state_keys
        ]
        state = torch.as_tensor(np.concatenate(parts))[None].to(self.device)  # (1, S)
        if state.shape[1] != self.model.state_dim:
            raise ContractError(
                f"the observation's {list(self.config.state_keys)} have {state.shape[1]} values, the predictor was "
                f"trained on {self.model.state_dim}"
            )
        image = torch.as_tensor(np.ascontiguousarray(observation.images[name])).permute(2, 0, 1)[None]  # (1, 3, h, w)
        image = resize_images(image.float().div(255.0), self.config.image_size).to(self.device)
        probabilities = self.model(image, state, self._task).softmax(dim=-1)[0].cpu()
        return dict(zip(self.config.vocabulary, probabilities.tolist(), strict=True))

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        """The language motion to execute from ``observation`` (a human override while one is in force)."""
        now = observation.timestamp
        if self._override is not None:
            if now < self._override.timestamp + self.config.override_s:
                return self._override
            self._override = None
        probabilities = self.probabilities(observation)
        text = max(probabilities, key=probabilities.__getitem__)
        last = self._last
        if last is not None and probabilities[text] < self.config.min_confidence:
            text = last.text  # not confident enough to switch: keep the motion in force
        if last is not None and last.text == text and last.source is CommandSource.PLANNER:
            return last  # the same command goes on (one id per motion segment)
        self._last = LanguageCommand(text, CommandStyle.MOTION, CommandSource.PLANNER, timestamp=now, replaces=last)
        return self._last

    def handle_correction(self, correction: LanguageCommand) -> None:
        """A human motion overrides the predictions for ``override_s`` s from its timestamp (see the class)."""
        is_motion = correction.style in (CommandStyle.MOTION, CommandStyle.STOP)
        if is_motion or (correction.style is CommandStyle.CORRECTION and correction.text in self.config.vocabulary):
            self._override = correction
            self._last = correction

    # -- files ------------------------------------------------------------------------------------------------

    def save(self, folder: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``folder``; ``extra`` goes into the JSON as is."""
        return save_model(self.model, folder, extra=extra)

    @classmethod
    def load(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", encoder: TextEncoder | None = None
    ) -> MotionPredictor:
        """A predictor from a folder written by :meth:`save` / :func:`train_motion_predictor`."""
        return cls(load_model(folder), encoder=encoder, device=device)


def save_model(model: MotionClassifier, folder: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """``folder/model.safetensors`` (weights + state normalisation) and ``folder/config.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}, folder / WEIGHTS_FILE
    )
    document = {"predictor": model.config.to_dict(), "state_dim": model.state_dim, **(extra or {})}
    (folder / CONFIG_FILE).write_text(json.dumps(document, indent=2))
    return folder


def load_model(folder: str | Path) -> MotionClassifier:
    """The :class:`MotionClassifier` saved in ``folder``.

    Raises:
        ContractError: a file is missing, the config does not validate, or the weights do not fit it.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise ContractError(f"{folder / name}: not found; is {folder} a motion predictor folder?")
    document = json.loads((folder / CONFIG_FILE).read_text())
    try:
        config = MotionPredictorConfig.from_dict(document["predictor"], source=str(folder / CONFIG_FILE))
        state_dim = int(document["state_dim"])
    except (KeyError, ConfigError) as error:
        raise ContractError(f"{folder / CONFIG_FILE}: not a motion predictor config ({error})") from error
    model = MotionClassifier(config, state_dim)
    try:
        model.load_state_dict(load_file(folder / WEIGHTS_FILE))
    except RuntimeError as error:
        raise ContractError(f"{folder / WEIGHTS_FILE} does not fit {folder / CONFIG_FILE}: {error}") from error
    return model.eval()


# --- training --------------------------------------------------------------------------------------------------


@dataclass
class MotionFrames:
    """Every frame of a dataset in memory, ready for the classifier.

    Attributes:
        images: (N, 3, H, W) uint8, the camera resized to ``image_size``.
        states: (N, S) float32, the ``state_keys`` concatenated.
        tasks: (N,) int64 index into ``task_texts``.
        labels: (N,) int64 index into the vocabulary.
        episodes: (N,) int64 episode index.
        task_texts: the distinct task texts.
    """

    images: torch.Tensor
    states: torch.Tensor
    tasks: torch.Tensor
    labels: torch.Tensor
    episodes: torch.Tensor
    task_texts: list[str]


def load_motion_frames(
    dataset_root: str | Path, config: MotionPredictorConfig, *, num_workers: int = 0, progress: bool = False
) -> tuple[MotionFrames, dict[str, dict[str, torch.Tensor]]]:
    """Every frame of a dataset in memory: state, task and label through
    :func:`tiers.datasets.loading.load_training_dataset`, and the camera resized to ``config.image_size``.

    A video camera is decoded one episode at a time, in one pass, by lerobot's own decoder (``decode_video_frames``
    at the episode's frame timestamps): lerobot's per-item access seeks and decodes anew for every frame, which is
    two orders of magnitude slower for reading a whole dataset. A camera stored as images comes through the windows.
    ``progress`` shows bars (on stderr).

    Returns:
        The frames and the dataset's normalisation statistics (tiers keys).

    Raises:
        ContractError: the dataset lacks the camera or the ``language_motion`` column, or a label is not in the
            vocabulary (the message names the dataset, the label and the episode).
    """
    from tiers.datasets.loading import DatasetLoadingConfig, load_training_dataset

    root = Path(dataset_root)
    extra = [key for key in config.state_keys if key != FeatureKey.STATE.value]  # identity-mapped: loaded with stats
    base = DatasetLoadingConfig(
        root=root, n_obs_steps=1, horizon=1, image_size=config.image_size, feature_map={key: key for key in extra}
    )
    windows, stats = load_training_dataset(base)  # no camera: validates the dataset, reads no video
    features = json.loads((root / "meta/info.json").read_text())["features"]
    cameras = [key for key, spec in features.items() if spec["dtype"] in ("video", "image")]
    if config.camera not in cameras:
        raise ContractError(f"{root}: no camera {config.camera!r} to learn from; its cameras are {cameras}")
    motion = FeatureKey.LANGUAGE_MOTION.value
    if motion not in features:
        raise ContractError(f"{root}: no {motion!r} column to learn from (record it with `tiers record`)")
    video = features[config.camera]["dtype"] == "video"
    if not video:
        base.cameras = [config.camera]
        windows, stats = load_training_dataset(base)
    index = {phrase: number for number, phrase in enumerate(config.vocabulary)}
    loader: Any = torch.utils.data.DataLoader(windows, batch_size=256, num_workers=num_workers, shuffle=False)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="reading frames", unit="batch", file=sys.stderr)
    images, states, tasks, labels, episodes, steps = [], [], [], [], [], []
    task_texts: dict[str, int] = {}
    for batch in loader:
        if not video:
            image = batch[config.camera]  # (b, 3, H, W): lerobot drops the time axis of a one-frame image window
            image = image[:, -1] if image.ndim == 5 else image
            images.append(_to_uint8(image))
        # observation.state comes as a (b, To=1, J+1) window, the other keys as (b, D) frames
        parts = [batch[key][:, -1] if key == FeatureKey.STATE.value else batch[key] for key in config.state_keys]
        states.append(torch.cat([part.float() for part in parts], dim=-1))  # (b, S)
        steps += batch["frame_index"].tolist()
        for text, label, episode in zip(batch["task"], batch[motion], batch["episode_index"].tolist(), strict=True):
            if label not in index:
                raise ContractError(f"{root}: episode {episode} has language motion {label!r}, not in the vocabulary")
            labels.append(index[label])
            tasks.append(task_texts.setdefault(text, len(task_texts)))
            episodes.append(episode)
    if video:
        decoded = _decode_episodes(windows.dataset, config, sorted(set(episodes)), progress=progress)
        images = [torch.stack([decoded[e][t] for e, t in zip(episodes, steps, strict=True)])]
    frames = MotionFrames(
        images=torch.cat(images),
        states=torch.cat(states),
        tasks=torch.tensor(tasks),
        labels=torch.tensor(labels),
        episodes=torch.tensor(episodes),
        task_texts=list(task_texts),
    )
    return frames, stats


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [0, 1] -> uint8 [0, 255], rounded."""
    return (images * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)


def _decode_episodes(
    dataset: Any, config: MotionPredictorConfig, episodes: list[int], *, progress: bool
) -> dict[int, torch.Tensor]:
    """Episode -> (L, 3, H, W) uint8 frames of ``config.camera`` (a video), resized to ``config.image_size``."""
    from lerobot.datasets.video_utils import decode_video_frames

    meta = dataset.meta
    chosen: Any = episodes
    if progress:
        from tqdm.auto import tqdm

        chosen = tqdm(episodes, desc=f"decoding {config.camera_name}", unit="episode", file=sys.stderr)
    decoded: dict[int, torch.Tensor] = {}
    for episode in chosen:
        row = meta.episodes[episode]
        start = float(row[f"videos/{config.camera}/from_timestamp"])
        timestamps = [start + step / meta.fps for step in range(int(row["length"]))]
        path = Path(dataset.root) / meta.get_video_file_path(episode, config.camera)
        frames = decode_video_frames(path, timestamps, dataset.tolerance_s, backend="pyav")  # (L, 3, h, w) [0, 1]
        decoded[episode] = _to_uint8(resize_images(frames, config.image_size))
    return decoded


def split_episodes(episodes: Sequence[int], trainer: MotionTrainerConfig) -> tuple[list[int], list[int]]:
    """(train episodes, held-out episodes) of the distinct ``episodes``."""
    distinct = sorted(set(episodes))
    if trainer.held_out_episodes:
        unknown = sorted(set(trainer.held_out_episodes) - set(distinct))
        if unknown:
            raise ContractError(f"held_out_episodes {unknown} are not episodes of the dataset (0..{max(distinct)})")
        held = sorted(trainer.held_out_episodes)
    elif trainer.held_out_every:
        held = [e for number, e in enumerate(distinct) if number % trainer.held_out_every == trainer.held_out_every - 1]
    else:
        held = []
    train = [e for e in distinct if e not in held]
    if not train:
        raise ContractError(f"no training episode left after holding out {held}")
    return train, held


@dataclass
class MotionTrainSummary:
    """What :func:`train_motion_predictor` measured (also written to ``metrics.json``)."""

    dataset: str
    steps: int
    train_episodes: list[int]
    held_out_episodes: list[int]
    train_frames: int
    held_out_frames: int
    train_accuracy: float  # frame accuracy on the training episodes (eval mode, no augmentation)
    held_out_accuracy: float  # frame accuracy on the held-out episodes (nan without a split)
    majority_label: str  # most frequent label of the training frames
    majority_accuracy: float  # held-out accuracy of always predicting it (the baseline)
    held_out_per_label: dict[str, list[int]] = field(default_factory=dict)  # label -> [correct, frames]
    held_out_per_task: dict[str, list[int]] = field(default_factory=dict)  # task text -> [correct, frames]
    losses: list[float] = field(default_factory=list)  # training loss every log step
    wall_time: float = 0.0  # s, decoding included
    decode_time: float = 0.0  # s spent decoding the dataset


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device is cuda but torch sees no CUDA GPU")
    return torch.device(name)


def _shift(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``pixels`` (replicate padding, one offset per image)."""
    if pixels == 0:
        return images
    batch, _, height, width = images.shape
    padded = functional.pad(images, (pixels, pixels, pixels, pixels), mode="replicate")
    offsets = torch.randint(0, 2 * pixels + 1, (batch, 2), generator=generator)
    return torch.stack([padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets.tolist())])


@torch.no_grad()
def _predict(
    model: MotionClassifier, frames: MotionFrames, rows: torch.Tensor, texts: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """(len(rows),) predicted class of the frames ``rows``, in batches."""
    model.eval()
    out = []
    for chunk in torch.split(rows, 256):
        images = frames.images[chunk].to(device).float().div(255.0)
        logits = model(images, frames.states[chunk].to(device), texts[frames.tasks[chunk]].to(device))
        out.append(logits.argmax(dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def train_motion_predictor(
    dataset_root: str | Path,
    config: MotionTrainConfig,
    out_dir: str | Path,
    *,
    encoder: TextEncoder | None = None,
    progress: bool = False,
) -> MotionTrainSummary:
    """Train a predictor on the ``language_motion`` column of ``dataset_root`` and save it into ``out_dir``.

    Decodes the dataset once (camera resized to ``image_size``), holds out episodes (``trainer.held_out_*``), trains
    ``trainer.steps`` AdamW steps on random batches of training frames, and writes ``model.safetensors``,
    ``config.json`` (with the run's provenance) and ``metrics.json`` (:class:`MotionTrainSummary`).
    """
    start = time.perf_counter()
    predictor_config, trainer = config.predictor, config.trainer
    torch.manual_seed(trainer.seed)
    device = _device(trainer.device)
    if trainer.cpu_threads:
        torch.set_num_threads(trainer.cpu_threads)
    frames, stats = load_motion_frames(
        dataset_root, predictor_config, num_workers=trainer.num_workers, progress=progress
    )
    decode_time = time.perf_counter() - start
    encoder = encoder or TextEncoder()
    texts = encoder(frames.task_texts)  # (tasks, 384)
    train_episodes, held_episodes = split_episodes(frames.episodes.tolist(), trainer)
    held_mask = torch.isin(frames.episodes, torch.tensor(held_episodes, dtype=torch.long))
    train_rows, held_rows = torch.nonzero(~held_mask)[:, 0], torch.nonzero(held_mask)[:, 0]

    model = MotionClassifier(predictor_config, state_dim=frames.states.shape[1])
    model.state_mean.copy_(torch.cat([stats[key]["mean"].flatten() for key in predictor_config.state_keys]))
    model.state_std.copy_(torch.cat([stats[key]["std"].flatten() for key in predictor_config.state_keys]))
    model.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=trainer.lr, weight_decay=trainer.weight_decay)

    def learning_rate(step: int) -> float:
        if step < trainer.warmup_steps:
            return (step + 1) / trainer.warmup_steps
        progress_fraction = (step - trainer.warmup_steps) / max(1, trainer.steps - trainer.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress_fraction))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, learning_rate)
    generator = torch.Generator().manual_seed(trainer.seed)
    losses: list[float] = []
    log_every = max(1, trainer.steps // 50)
    bar = _progress_bar(trainer.steps) if progress else None
    for step in range(trainer.steps):
        model.train()
        rows = train_rows[torch.randint(len(train_rows), (trainer.batch_size,), generator=generator)]
        images = _shift(frames.images[rows].float().div(255.0), trainer.shift_pixels, generator).to(device)
        logits = model(images, frames.states[rows].to(device), texts[frames.tasks[rows]].to(device))
        loss = functional.cross_entropy(logits, frames.labels[rows].to(device), label_smoothing=trainer.label_smoothing)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        scheduler.step()
        if step % log_every == 0 or step == trainer.steps - 1:
            losses.append(loss.item())
        if bar is not None:
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            bar.update(1)
        if trainer.eval_every and (step + 1) % trainer.eval_every == 0 and len(held_rows) and bar is not None:
            accuracy = float(
                (_predict(model, frames, held_rows, texts, device) == frames.labels[held_rows]).float().mean()
            )
            bar.write(f"step {step + 1}: loss {loss.item():.3f}, held-out accuracy {accuracy:.1%}")
    if bar is not None:
        bar.close()

    vocabulary = predictor_config.vocabulary
    train_correct = _predict(model, frames, train_rows, texts, device) == frames.labels[train_rows]
    held_predicted = _predict(model, frames, held_rows, texts, device)
    held_labels = frames.labels[held_rows]
    majority = Counter(frames.labels[train_rows].tolist()).most_common(1)[0][0]
    per_label: dict[str, list[int]] = {}
    per_task: dict[str, list[int]] = {}
    held_tasks = frames.tasks[held_rows].tolist()
    for label, predicted, task in zip(held_labels.tolist(), held_predicted.tolist(), held_tasks, strict=True):
        for counts in (
            per_label.setdefault(vocabulary[label], [0, 0]),
            per_task.setdefault(frames.task_texts[task], [0, 0]),
        ):
            counts[0] += int(label == predicted)
            counts[1] += 1
    nan = float("nan")
    summary = MotionTrainSummary(
        dataset=str(dataset_root),
        steps=trainer.steps,
        train_episodes=train_episodes,
        held_out_episodes=held_episodes,
        train_frames=len(train_rows),
        held_out_frames=len(held_rows),
        train_accuracy=float(train_correct.float().mean()),
        held_out_accuracy=float((held_predicted == held_labels).float().mean()) if len(held_rows) else nan,
        majority_label=vocabulary[majority],
        majority_accuracy=float((held_labels == majority).float().mean()) if len(held_rows) else nan,
        held_out_per_label=dict(sorted(per_label.items(), key=lambda item: -item[1][1])),
        held_out_per_task=per_task,
        losses=losses,
        decode_time=decode_time,
    )
    summary.wall_time = time.perf_counter() - start
    out_dir = Path(out_dir)
    provenance = {"dataset": str(dataset_root), "trainer": trainer.to_dict(), "held_out_episodes": held_episodes}
    save_model(model.cpu(), out_dir, extra={"training": provenance})
    (out_dir / METRICS_FILE).write_text(json.dumps(summary.__dict__, indent=2))
    return summary


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="motion predictor", unit="step", file=sys.stderr)


# --- command line (to be wired as `tiers train --policy motion`) --------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``tiers train`` that apply to the motion predictor (same names, same meaning)."""
    parser.add_argument(
        "--dataset", type=Path, required=True, help="LeRobotDataset folder with a language_motion column"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for model.safetensors, config.json, metrics.json"
    )
    parser.add_argument("--config", type=Path, default=None, help=f"YAML preset (default configs/train/{PRESET}.yaml)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (trainer.steps)")
    parser.add_argument("--batch-size", type=int, default=None, help="frames per step (trainer.batch_size)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="trainer.device")
    parser.add_argument("--num-workers", type=int, default=None, help="decoding workers (trainer.num_workers)")
    parser.add_argument("--seed", type=int, default=None, help="trainer.seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", default=[], help="config overrides key=value (trainer.lr=1e-3)")


def run_train(args: argparse.Namespace) -> int:
    """Train from parsed :func:`add_train_arguments` flags (``tiers train``'s namespace works too); prints a summary."""
    from tiers.core.locations import preset_path

    path = args.config if args.config is not None else preset_path("train", PRESET)
    overrides = list(args.overrides)
    for flag in ("steps", "batch_size", "device", "num_workers", "seed"):  # tiers train's flags
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"trainer.{flag}={value}")
    config = load_config(MotionTrainConfig, path, overrides=overrides)
    summary = train_motion_predictor(args.dataset, config, args.out, progress=not args.no_progress)
    print(
        f"motion predictor -> {args.out}: {summary.steps} steps in {summary.wall_time:.0f} s "
        f"(decoding {summary.decode_time:.0f} s)\n"
        f"  train episodes {len(summary.train_episodes)} ({summary.train_frames} frames): "
        f"accuracy {summary.train_accuracy:.1%}\n"
        f"  held-out episodes {summary.held_out_episodes} ({summary.held_out_frames} frames): "
        f"accuracy {summary.held_out_accuracy:.1%}; majority baseline ({summary.majority_label!r}) "
        f"{summary.majority_accuracy:.1%}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tiers.policies.high.motion_predictor --dataset DATA --out RUN [key=value ...]``."""
    from tiers.core.errors import TiersError

    parser = argparse.ArgumentParser(
        prog="python -m tiers.policies.high.motion_predictor", description="train the RT-H language-motion predictor"
    )
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_train(args)
    except TiersError as error:
        print(f"motion predictor: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
