"""Training the RT-H language-motion predictor (``tiers train --policy motion``) on the one training loop.

The predictor (config, network, planner) is :mod:`tiers.policies.high.motion_predictor`; this application reads
its data and trains it. :func:`load_motion_frames` decodes every frame of a ``tiers record`` dataset once into
memory (camera resized to the predictor's ``image_size``, the state keys, the task text, the ``language_motion``
label); :func:`split_episodes` holds episodes out; :func:`train_motion_predictor` trains the classifier with
:func:`tiers.services.training.train` (a cross-entropy wrapper, :class:`MotionClassifierLoss`, with random image
shifts) and measures frame accuracy on the training and held-out episodes against the majority-class baseline.

Output folder::

    <out>/
      model.safetensors, config.json   the trained predictor (``MotionPredictor.load(out)``), with provenance
      metrics.json                     :class:`MotionTrainSummary`: accuracies, baseline, per label / per task
      training/                        the loop's run folder: checkpoints, train_log.json, learning_curve.png

Command line: ``tiers train --policy motion --dataset DATA --out RUN`` or ``python -m
tiers.apps.motion_predictor_training --dataset DATA --out RUN`` (the same flags; see :func:`add_train_arguments`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from tiers.core.config import Config, load_config
from tiers.core.errors import ContractError, TiersError
from tiers.core.features import FeatureKey
from tiers.core.locations import preset_path
from tiers.datasets.loading import DatasetLoadingConfig, load_training_dataset
from tiers.policies.high.motion_predictor import MotionClassifier, MotionPredictorConfig, resize_images, save_model
from tiers.services.text_encoder import TextEncoder
from tiers.services.training import TrainerConfig, train

METRICS_FILE = "metrics.json"
RUN_DIR = "training"  # the training loop's run folder inside the output folder
PRESET = "motion_kitchen"  # configs/train/motion_kitchen.yaml


@dataclass
class MotionTrainerConfig(Config):
    """How the predictor is trained and evaluated."""

    steps: int = 1500  # optimiser steps
    batch_size: int = 64  # frames per step
    lr: float = 2e-3  # AdamW peak learning rate (cosine decay to 5% after warmup)
    warmup_steps: int = 50  # linear learning-rate warmup
    weight_decay: float = 1e-4  # AdamW weight decay
    label_smoothing: float = 0.05  # cross-entropy label smoothing
    class_weight_power: float = 0.5  # class weights (frames / (classes * count)) ** power; 0: unweighted
    done_s: float = 0.25  # s: a frame is "subtask done" when its subtask segment ends within this long
    done_weight: float = 1.0  # weight of the done head's binary cross-entropy beside the motion loss
    unseen_dataset: str | None = None  # a recording of other tasks, evaluated after training (unseen tasks)
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
        if self.class_weight_power < 0 or self.done_s < 0 or self.done_weight < 0:
            raise ValueError(
                f"class_weight_power, done_s and done_weight must be >= 0, got {self.class_weight_power}, "
                f"{self.done_s}, {self.done_weight}"
            )
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


# --- the dataset's frames in memory ---------------------------------------------------------------------------


@dataclass
class MotionFrames:
    """Every frame of a dataset in memory, ready for the classifier.

    Attributes:
        images: (N, 3, H, W) uint8, the camera resized to ``image_size``; (N, 0, 1, 1) without a camera.
        states: (N, S) float32, the ``state_keys`` concatenated.
        tasks: (N,) int64 index into ``task_texts``.
        labels: (N,) int64 index into the vocabulary.
        episodes: (N,) int64 episode index.
        task_texts: the distinct task texts.
        subtasks: (N,) int64 index into ``subtask_texts`` (the dataset's ``subtask`` column).
        elapsed: (N,) float32 s since the frame's subtask segment began.
        remaining: (N,) float32 s until the frame's subtask segment ends (0 on its last frame).
        subtask_texts: the distinct subtask texts.
    """

    images: torch.Tensor
    states: torch.Tensor
    tasks: torch.Tensor
    labels: torch.Tensor
    episodes: torch.Tensor
    task_texts: list[str]
    subtasks: torch.Tensor
    elapsed: torch.Tensor
    remaining: torch.Tensor
    subtask_texts: list[str]


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
    root = Path(dataset_root)
    extra = [key for key in config.state_keys if key != FeatureKey.STATE.value]  # identity-mapped: loaded with stats
    base = DatasetLoadingConfig(
        root=root, n_obs_steps=1, horizon=1, image_size=config.image_size, feature_map={key: key for key in extra}
    )
    windows, stats = load_training_dataset(base)  # no camera: validates the dataset, reads no video
    features = json.loads((root / "meta/info.json").read_text())["features"]
    cameras = [key for key, spec in features.items() if spec["dtype"] in ("video", "image")]
    if config.camera is not None and config.camera not in cameras:
        raise ContractError(f"{root}: no camera {config.camera!r} to learn from; its cameras are {cameras}")
    motion = FeatureKey.LANGUAGE_MOTION.value
    if motion not in features:
        raise ContractError(f"{root}: no {motion!r} column to learn from (record it with `tiers record`)")
    if config.subtask and FeatureKey.SUBTASK.value not in features:
        raise ContractError(f"{root}: no {FeatureKey.SUBTASK.value!r} column for a subtask-conditioned predictor")
    fps = float(json.loads((root / "meta/info.json").read_text())["fps"])
    video = config.camera is not None and features[config.camera]["dtype"] == "video"
    if config.camera is not None and not video:
        base.cameras = [config.camera]
        windows, stats = load_training_dataset(base)
    index = {phrase: number for number, phrase in enumerate(config.vocabulary)}
    loader: Any = torch.utils.data.DataLoader(windows, batch_size=256, num_workers=num_workers, shuffle=False)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc="reading frames", unit="batch", file=sys.stderr)
    images, states, tasks, labels, episodes, steps, subtasks = [], [], [], [], [], [], []
    task_texts: dict[str, int] = {}
    subtask_texts: dict[str, int] = {}
    for batch in loader:
        if config.camera is not None and not video:
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
        for text in batch.get(FeatureKey.SUBTASK.value, batch["task"]):
            subtasks.append(subtask_texts.setdefault(text, len(subtask_texts)))
    if config.camera is None:
        images = [torch.zeros(len(labels), 0, 1, 1, dtype=torch.uint8)]
    elif video:
        decoded = _decode_episodes(windows.dataset, config, sorted(set(episodes)), progress=progress)
        images = [torch.stack([decoded[e][t] for e, t in zip(episodes, steps, strict=True)])]
    frames = MotionFrames(
        images=torch.cat(images),
        states=torch.cat(states),
        tasks=torch.tensor(tasks),
        labels=torch.tensor(labels),
        episodes=torch.tensor(episodes),
        task_texts=list(task_texts),
        subtasks=torch.tensor(subtasks),
        subtask_texts=list(subtask_texts),
        **_subtask_clock(episodes, steps, subtasks, fps),
    )
    return frames, stats


def _subtask_clock(episodes: list[int], steps: list[int], subtasks: list[int], fps: float) -> dict[str, torch.Tensor]:
    """``elapsed`` and ``remaining`` (N,) s of every frame in its subtask segment (a run of one subtask).

    Frames are in episode order (episode, then frame index), as the loader reads them.
    """
    count = len(episodes)
    starts = [
        i == 0 or episodes[i] != episodes[i - 1] or steps[i] != steps[i - 1] + 1 or subtasks[i] != subtasks[i - 1]
        for i in range(count)
    ]
    elapsed, remaining = torch.zeros(count), torch.zeros(count)
    begin = 0
    for i in range(count + 1):
        if i == count or (i > 0 and starts[i]):
            length = i - begin
            frames = torch.arange(length, dtype=torch.float32)
            elapsed[begin:i] = frames / fps
            remaining[begin:i] = (length - 1 - frames) / fps
            begin = i
    return {"elapsed": elapsed, "remaining": remaining}


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
    unseen_dataset: str | None = None  # the recording of other tasks evaluated after training (trainer)
    unseen_frames: int = 0
    unseen_accuracy: float = float("nan")  # frame accuracy on the unseen tasks' episodes
    unseen_majority_accuracy: float = float("nan")  # accuracy there of the training majority label
    unseen_per_task: dict[str, list[int]] = field(default_factory=dict)  # task text -> [correct, frames]
    losses: list[float] = field(default_factory=list)  # mean training loss of every log interval of the loop
    wall_time: float = 0.0  # s, decoding included
    decode_time: float = 0.0  # s spent decoding the dataset


def _shift(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Random translation by up to ``pixels`` (replicate padding, one offset per image); offsets drawn on the CPU."""
    if pixels == 0:
        return images
    batch, _, height, width = images.shape
    padded = functional.pad(images, (pixels, pixels, pixels, pixels), mode="replicate")
    offsets = torch.randint(0, 2 * pixels + 1, (batch, 2))  # torch's CPU generator (the loop seeds it)
    return torch.stack([padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets.tolist())])


def _inputs(frames: MotionFrames, rows: torch.Tensor, texts: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The classifier's inputs of the frames ``rows`` (as :class:`MotionFrameItems` stacks them), on the CPU."""
    return {
        "image": frames.images[rows],
        "state": frames.states[rows],
        "text": texts["tasks"][frames.tasks[rows]],
        "subtask": texts["subtasks"][frames.subtasks[rows]],
        "elapsed": frames.elapsed[rows],
    }


def _forward(model: MotionClassifier, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(motion logits (B, K), done logits (B,)) of a batch of inputs (see :func:`_inputs`), on the model's device."""
    device = next(model.parameters()).device
    images = batch["image"].to(device).float().div(255.0) if model.config.camera is not None else None
    outputs: tuple[torch.Tensor, torch.Tensor] = model(
        batch["state"].to(device).float(),
        batch["text"].to(device).float(),
        images=images,
        subtasks=batch["subtask"].to(device).float(),
        elapsed=batch["elapsed"].to(device).float(),
    )
    return outputs


@torch.no_grad()
def _predict(
    model: MotionClassifier, frames: MotionFrames, rows: torch.Tensor, texts: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """(len(rows),) predicted class of the frames ``rows``, in batches, on the model's device (eval mode)."""
    model.eval()
    out = [_forward(model, _inputs(frames, chunk, texts))[0].argmax(dim=-1).cpu() for chunk in torch.split(rows, 256)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _accuracy(
    model: MotionClassifier, frames: MotionFrames, rows: torch.Tensor, texts: Mapping[str, torch.Tensor]
) -> float:
    """Frame accuracy of ``model`` on the frames ``rows``."""
    return float((_predict(model, frames, rows, texts) == frames.labels[rows]).float().mean())


def embed_texts(frames: MotionFrames, encoder: TextEncoder) -> dict[str, torch.Tensor]:
    """MiniLM embeddings of the frames' distinct texts: ``tasks`` (T, 384), ``subtasks`` (U, 384)."""
    return {"tasks": encoder(frames.task_texts), "subtasks": encoder(frames.subtask_texts)}


def class_weights(labels: torch.Tensor, classes: int, power: float) -> torch.Tensor | None:
    """(classes,) cross-entropy weights ``(N / (present classes * count)) ** power`` (1 for absent classes).

    ``power`` 0 gives None (unweighted); 1 balances the classes fully; 0.5, the default, halves the log-imbalance,
    so rare motions ("close gripper", a few frames per grasp) count without drowning the frequent ones.
    """
    if power == 0:
        return None
    counts = torch.bincount(labels, minlength=classes).float()
    present = counts > 0
    weights = torch.ones(classes)
    weights[present] = (counts.sum() / (present.sum() * counts[present])) ** power
    return weights


# --- training on the one loop -------------------------------------------------------------------------------------


class MotionFrameItems(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Frames ``rows`` of :class:`MotionFrames` as items of the training loop.

    Item: ``image`` (3, H, W) uint8 ((0, 1, 1) without a camera), ``state`` (S,) float32, ``text`` (384,) the task
    embedding, ``subtask`` (384,) the subtask embedding, ``elapsed`` () s in the subtask, ``label`` () int64,
    ``done`` () float32 (1: the subtask segment ends within ``done_s``).
    """

    def __init__(
        self, frames: MotionFrames, rows: torch.Tensor, texts: Mapping[str, torch.Tensor], *, done_s: float
    ) -> None:
        self.frames = frames
        self.rows = rows
        self.texts = texts
        self.done = (frames.remaining <= done_s + 1e-6).float()  # (N,)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.rows[index : index + 1]
        item = {key: value[0] for key, value in _inputs(self.frames, row, self.texts).items()}
        return {**item, "label": self.frames.labels[row][0], "done": self.done[row][0]}


class MotionClassifierLoss(nn.Module):
    """A :class:`MotionClassifier` as the training loop sees it: ``forward(batch) -> (loss, info)`` and ``save``.

    The loss is class-weighted cross-entropy with label smoothing on the motion plus ``done_weight`` times the done
    head's binary cross-entropy; in training mode each image is first shifted at random by up to ``shift_pixels``
    (replicate padding). ``save`` writes a predictor folder (``model.safetensors``, ``config.json`` with
    ``provenance`` and the step).
    """

    def __init__(
        self,
        model: MotionClassifier,
        *,
        label_smoothing: float,
        shift_pixels: int,
        provenance: dict[str, Any],
        weights: torch.Tensor | None = None,
        done_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing
        self.shift_pixels = shift_pixels
        self.provenance = provenance
        self.done_weight = done_weight
        self.weights: torch.Tensor | None
        self.register_buffer("weights", weights)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Args: a batch of :class:`MotionFrameItems` (B stacked). Returns: (scalar loss, {"loss", "done_loss"})."""
        inputs = dict(batch)
        if self.training and self.model.config.camera is not None and self.shift_pixels:
            inputs["image"] = _to_uint8(_shift(batch["image"].float().div(255.0), self.shift_pixels))
        logits, done = _forward(self.model, inputs)  # (B, K), (B,)
        loss = functional.cross_entropy(
            logits, batch["label"], weight=self.weights, label_smoothing=self.label_smoothing
        )
        done_loss = functional.binary_cross_entropy_with_logits(done, batch["done"].float())
        total = loss + self.done_weight * done_loss
        return total, {"loss": total.detach(), "done_loss": done_loss.detach()}

    def save(self, path: str | Path, *, weights: str = "raw", step: int = 0) -> Path:
        """A predictor folder at ``path`` (what ``MotionPredictor.load`` reads)."""
        return save_model(self.model, path, extra={"training": self.provenance, "weights": weights, "step": step})


def loop_config(trainer: MotionTrainerConfig) -> TrainerConfig:
    """The one loop's settings for the predictor's recipe.

    AdamW with torch's default betas, warmup then cosine decay to 5 % of the peak rate, no gradient clipping, no
    EMA; frames are in memory (no loader workers); one checkpoint at the end; about 50 log records per run.
    """
    return TrainerConfig(
        steps=trainer.steps,
        batch_size=trainer.batch_size,
        num_workers=0,
        seed=trainer.seed,
        device=trainer.device,
        lr=trainer.lr,
        weight_decay=trainer.weight_decay,
        betas=(0.9, 0.999),
        warmup_steps=trainer.warmup_steps,
        lr_schedule="cosine",
        lr_floor=0.05,
        grad_clip=None,
        ema=False,
        log_every=max(1, trainer.steps // 50),
        save_every=trainer.steps,
    )


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
    ``trainer.steps`` optimiser steps of the one training loop on shuffled training frames (run folder
    ``out_dir/training``), and writes ``model.safetensors``, ``config.json`` (with the run's provenance) and
    ``metrics.json`` (:class:`MotionTrainSummary`). With ``progress``, bars and a held-out accuracy every
    ``trainer.eval_every`` steps (at the first log record from there) go to stderr.
    """
    start = time.perf_counter()
    predictor_config, trainer = config.predictor, config.trainer
    torch.manual_seed(trainer.seed)  # the classifier's initial weights
    if trainer.cpu_threads:
        torch.set_num_threads(trainer.cpu_threads)
    frames, stats = load_motion_frames(
        dataset_root, predictor_config, num_workers=trainer.num_workers, progress=progress
    )
    decode_time = time.perf_counter() - start
    encoder = encoder or TextEncoder()
    texts = embed_texts(frames, encoder)
    train_episodes, held_episodes = split_episodes(frames.episodes.tolist(), trainer)
    held_mask = torch.isin(frames.episodes, torch.tensor(held_episodes, dtype=torch.long))
    train_rows, held_rows = torch.nonzero(~held_mask)[:, 0], torch.nonzero(held_mask)[:, 0]

    model = MotionClassifier(predictor_config, state_dim=frames.states.shape[1])
    model.state_mean.copy_(torch.cat([stats[key]["mean"].flatten() for key in predictor_config.state_keys]))
    model.state_std.copy_(torch.cat([stats[key]["std"].flatten() for key in predictor_config.state_keys]))
    provenance = {"dataset": str(dataset_root), "trainer": trainer.to_dict(), "held_out_episodes": held_episodes}
    vocabulary = predictor_config.vocabulary
    wrapper = MotionClassifierLoss(
        model,
        label_smoothing=trainer.label_smoothing,
        shift_pixels=trainer.shift_pixels,
        provenance=provenance,
        weights=class_weights(frames.labels[train_rows], len(vocabulary), trainer.class_weight_power),
        done_weight=trainer.done_weight,
    )
    losses: list[float] = []
    next_eval = trainer.eval_every

    def on_log(record: dict[str, Any]) -> None:
        nonlocal next_eval
        losses.append(record["loss"])
        if not (progress and trainer.eval_every and len(held_rows)) or record["step"] < next_eval:
            return
        while next_eval <= record["step"]:
            next_eval += trainer.eval_every
        accuracy = _accuracy(model, frames, held_rows, texts)
        wrapper.train()  # the loop goes on training
        print(f"step {record['step']}: loss {record['loss']:.3f}, held-out accuracy {accuracy:.1%}", file=sys.stderr)

    out_dir = Path(out_dir)
    train(
        wrapper,
        MotionFrameItems(frames, train_rows, texts, done_s=trainer.done_s),
        loop_config(trainer),
        out_dir / RUN_DIR,
        progress=progress,
        on_log=on_log,
    )

    train_correct = _predict(model, frames, train_rows, texts) == frames.labels[train_rows]
    held_predicted = _predict(model, frames, held_rows, texts)
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
    if trainer.unseen_dataset:
        unseen, _ = load_motion_frames(trainer.unseen_dataset, predictor_config, num_workers=trainer.num_workers)
        rows = torch.arange(len(unseen.labels))
        correct = _predict(model, unseen, rows, embed_texts(unseen, encoder)) == unseen.labels
        summary.unseen_dataset = trainer.unseen_dataset
        summary.unseen_frames = len(rows)
        summary.unseen_accuracy = float(correct.float().mean())
        summary.unseen_majority_accuracy = float((unseen.labels == majority).float().mean())
        for task, hit in zip(unseen.tasks.tolist(), correct.tolist(), strict=True):
            counts = summary.unseen_per_task.setdefault(unseen.task_texts[task], [0, 0])
            counts[0] += int(hit)
            counts[1] += 1
    summary.wall_time = time.perf_counter() - start
    save_model(model.cpu(), out_dir, extra={"training": provenance})
    (out_dir / METRICS_FILE).write_text(json.dumps(summary.__dict__, indent=2))
    return summary


# --- command line (``tiers train --policy motion``; ``python -m tiers.apps.motion_predictor_training``) -------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``tiers train`` that apply to the motion predictor (same names, same meaning)."""
    parser.add_argument(
        "--dataset", type=Path, required=True, help="LeRobotDataset folder with a language_motion column"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for model.safetensors, config.json, metrics.json, training/"
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
    if summary.unseen_dataset:
        print(
            f"  unseen tasks {summary.unseen_dataset} ({summary.unseen_frames} frames): accuracy "
            f"{summary.unseen_accuracy:.1%}; majority baseline {summary.unseen_majority_accuracy:.1%}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tiers.apps.motion_predictor_training --dataset DATA --out RUN [key=value ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m tiers.apps.motion_predictor_training", description="train the RT-H language-motion predictor"
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
