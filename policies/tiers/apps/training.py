"""Training orchestration, what ``tiers train`` runs: a dataset and a run config -> a low-tier policy -> the loop.

:func:`train_low_policy` builds a :class:`~tiers.policies.low.policy.GenerativeLowPolicy` (BESO, flow, DDPM) from
the features and statistics of a LeRobotDataset, :func:`train_lerobot_policy` a
:class:`~tiers.policies.low.lerobot_adapter.LerobotPolicyAdapter` (lerobot's diffusion policy or ACT) from the
same windows; both train on the one loop (:func:`tiers.services.training.train`), so a comparison differs only
by the policy. :func:`kitchen_evaluator` runs every checkpoint in the kitchen (``tiers eval``'s control-mode
runner) while training. The RT-H motion predictor (``tiers train --policy motion``) has its own data and
metrics: :mod:`tiers.apps.motion_predictor_training`.

Run folder: the loop's (checkpoints, ``train_log.json``, ``learning_curve.png``; see
:mod:`tiers.services.training`) plus ``train_config.yaml``, the run's full config, which ``--resume`` reads back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tiers.apps.evaluation.report import EvalMode
from tiers.apps.evaluation.runner import EpisodeRunner
from tiers.apps.evaluation.settings import EpisodeJob, EvalSettings
from tiers.core.config import Config, read_yaml_mapping
from tiers.core.errors import ContractError
from tiers.datasets.loading import DatasetLoadingConfig, load_training_dataset
from tiers.policies.low.checkpoint import EMBODIMENT_FILE, PolicyFeatures, read_checkpoint
from tiers.policies.low.conditioning import HindsightConditions
from tiers.policies.low.lerobot_adapter import (
    LerobotAdapterConfig,
    LerobotPolicyAdapter,
    is_lerobot_checkpoint,
    window_shape,
)
from tiers.policies.low.policy import GenerativeLowPolicy, GenerativeLowPolicyConfig
from tiers.services.training import TrainerConfig, TrainSummary, last_checkpoint, launched_main_process, train
from tiers.sim.kitchen.tasks import get_task

RUN_CONFIG = "train_config.yaml"  # the run's full config in its folder (resume reads it back)


@dataclass
class KitchenEvalConfig(Config):
    """Evaluation of every checkpoint in the kitchen's control mode while training (off when ``tasks`` is empty)."""

    tasks: list[str] = field(default_factory=list)  # task ids ("open/drawer/0"); the gold plan, subtask by subtask
    seeds: int = 1  # episodes per task, seeds 0 .. seeds-1 (the layouts tiers eval uses)
    max_steps: int | None = None  # per-episode control-step limit; None: the task's own (300 per subtask)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or null, got {self.max_steps}")


@dataclass
class LowPolicyTrainConfig(Config):
    """A ``tiers train`` run: the policy and the trainer (YAML presets under ``configs/train/``)."""

    policy: GenerativeLowPolicyConfig = field(default_factory=GenerativeLowPolicyConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: KitchenEvalConfig = field(default_factory=KitchenEvalConfig)  # checkpoints evaluated in the kitchen
    video_backend: str = "pyav"  # lerobot's video decoder for camera datasets ("pyav" | "torchcodec")
    # camera frames decoded once into memory when they fit in this many GB (uint8 at the policy's image size);
    # 0 decodes from the videos at every read (DataLoader workers then do the decoding)
    frame_cache_gb: float = 4.0


@dataclass
class LerobotTrainConfig(Config):
    """A training run of a lerobot policy (YAML presets ``configs/train/lerobot_<kind>_kitchen.yaml``)."""

    policy: LerobotAdapterConfig = field(default_factory=LerobotAdapterConfig)  # which lerobot policy, what it reads
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # the tiers trainer's settings
    video_backend: str = "pyav"  # lerobot's video decoder for camera datasets ("pyav" | "torchcodec")


def is_lerobot_train_config(path: str | Path) -> bool:
    """Whether the YAML run config at ``path`` is a :class:`LerobotTrainConfig` (its policy names a ``kind``)."""
    policy = read_yaml_mapping(path).get("policy")
    return isinstance(policy, dict) and "kind" in policy


# -- the windows a policy trains on -------------------------------------------------------------------------------


def generative_loading_config(
    policy: GenerativeLowPolicyConfig, root: str | Path, *, video_backend: str = "pyav", frame_cache_gb: float = 4.0
) -> DatasetLoadingConfig:
    """The :class:`DatasetLoadingConfig` of the windows a :class:`GenerativeLowPolicy` of ``policy`` trains on."""
    conditioning = policy.conditioning
    return DatasetLoadingConfig(
        root=Path(root),
        cameras=conditioning.camera_keys,
        n_obs_steps=policy.n_obs_steps,
        horizon=policy.horizon,
        image_size=conditioning.image_size,
        video_backend=video_backend,
        frame_cache_gb=frame_cache_gb,
    )


def with_hindsight(windows: torch.utils.data.Dataset[Any], policy: GenerativeLowPolicyConfig) -> Any:
    """``windows`` labelled with the hindsight goal / path the policy conditions on (unchanged when it reads none)."""
    conditioning = policy.conditioning
    if conditioning.goal or conditioning.path_waypoints:
        return HindsightConditions(windows, goal=conditioning.goal, path_waypoints=conditioning.path_waypoints)
    return windows


def dataset_loading_config(
    adapter: LerobotAdapterConfig, root: str | Path, *, video_backend: str = "pyav"
) -> DatasetLoadingConfig:
    """The :class:`DatasetLoadingConfig` of the windows a lerobot policy of ``adapter`` trains on."""
    n_obs_steps, horizon = window_shape(adapter.lerobot_config())
    return DatasetLoadingConfig(
        root=Path(root),
        cameras=adapter.camera_keys,
        n_obs_steps=n_obs_steps,
        horizon=horizon,
        image_size=adapter.image_size,
        video_backend=video_backend,
    )


# -- runs ---------------------------------------------------------------------------------------------------------


def train_low_policy(
    dataset: str | Path,
    config: LowPolicyTrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainSummary:
    """``tiers train``: a :class:`GenerativeLowPolicy` on the LeRobotDataset at ``dataset``, into ``out``.

    The policy's features (robot, state/action names, cameras, language key) and normalisation
    statistics come from the dataset; with ``resume`` they are checked against the checkpoint's.
    """
    out = Path(out)
    policy_config = config.policy
    conditioning = policy_config.conditioning
    loading = generative_loading_config(
        policy_config, dataset, video_backend=config.video_backend, frame_cache_gb=config.frame_cache_gb
    )
    features = PolicyFeatures.from_dataset(
        dataset,
        cameras=conditioning.cameras,
        image_size=conditioning.image_size,
        language_key=conditioning.language_key,
    )
    features.check_dataset(dataset)
    with _DecodeBar(progress and launched_main_process()) as bar:
        windows, stats = load_training_dataset(loading, progress=bar.update)
    data = with_hindsight(windows, policy_config)
    policy = GenerativeLowPolicy(policy_config, features, stats)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        _check_resumable(out, features)
    if launched_main_process():
        config.to_yaml(out / RUN_CONFIG)
    evaluate = kitchen_evaluator(config.eval) if config.eval.tasks else None
    return train(policy, data, config.trainer, out, resume=resume, progress=progress, on_checkpoint=evaluate)


def train_lerobot_policy(
    dataset: str | Path, config: LerobotTrainConfig, out: str | Path, *, resume: bool = False, progress: bool = True
) -> TrainSummary:
    """``tiers train --policy lerobot_diffusion | lerobot_act``: a lerobot policy on the tiers dataset, into ``out``.

    The same windows, statistics, optimiser loop, EMA, checkpoints and logs as the tiers policies, so the
    comparison differs only by the policy. With ``resume`` the last checkpoint's features must match.
    """
    out = Path(out)
    windows, stats = load_training_dataset(
        dataset_loading_config(config.policy, dataset, video_backend=config.video_backend)
    )
    policy = LerobotPolicyAdapter.from_dataset(config.policy, dataset, stats)
    if resume:
        last = last_checkpoint(out)
        if is_lerobot_checkpoint(last):
            saved = json.loads((last / EMBODIMENT_FILE).read_text())
            if saved != policy.features.to_dict():
                raise ContractError(f"{last}: trained on other features ({saved}) than this dataset's")
    out.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out / RUN_CONFIG)
    return train(policy, windows, config.trainer, out, resume=resume, progress=progress)


def kitchen_evaluator(config: KitchenEvalConfig) -> Callable[[Path, int], dict[str, Any]]:
    """A checkpoint callback running ``config.tasks`` in the kitchen's control mode (``tiers eval``'s runner).

    Returns per call: success_rate, subtask_rate (subtasks reached / subtasks), episodes, mean steps.
    """
    jobs = [(get_task(task).id, seed) for task in config.tasks for seed in range(config.seeds)]  # fail early on a typo

    def evaluate(checkpoint: Path, step: int) -> dict[str, Any]:
        settings = EvalSettings(mode=EvalMode.CONTROL, controller=str(checkpoint), max_steps=config.max_steps)
        runner = EpisodeRunner(settings)
        try:
            results = [runner(EpisodeJob(index, task, seed)) for index, (task, seed) in enumerate(jobs)]
        finally:
            runner.env.close()
        done = sum(int(result.extra["subtasks_done"]) for result in results)
        total = sum(int(result.extra["subtasks"]) for result in results)
        return {
            "success_rate": sum(result.success for result in results) / len(results),
            "subtask_rate": done / max(total, 1),
            "episodes": len(results),
            "mean_steps": sum(result.steps for result in results) / len(results),
        }

    return evaluate


# -- internals ------------------------------------------------------------------------------------------------------


def _check_resumable(out: Path, features: PolicyFeatures) -> None:
    _, saved, _ = read_checkpoint(last_checkpoint(out))
    if saved != features:
        raise ContractError(
            f"{last_checkpoint(out)}: the checkpoint was trained on other features ({saved}) than this dataset's"
        )


class _DecodeBar:
    """A rich progress bar for decoding camera frames into memory; shown from the first episode decoded."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _DecodeBar:
        return self

    def update(self, done: int, total: int) -> None:
        if not self._enabled:
            return
        if self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("decode frames (episodes)"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
            )
            self._task = self._progress.add_task("decode", total=total)
            self._progress.start()
        self._progress.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
