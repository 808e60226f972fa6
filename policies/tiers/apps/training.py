"""Training orchestration, what ``tiers train`` runs: a dataset and a run config -> a low-tier policy -> the loop.

:func:`train_low_policy` builds a :class:`~tiers.policies.low.policy.GenerativeLowPolicy` (BESO, flow, DDPM) from
the features and statistics of a LeRobotDataset, :func:`train_lerobot_policy` a
:class:`~tiers.policies.low.lerobot_adapter.LerobotPolicyAdapter` (lerobot's diffusion policy or ACT) from the
same windows; both train on the one loop (:func:`tiers.services.training.train`), so a comparison differs only
by the policy. :func:`kitchen_evaluator` runs every checkpoint in the kitchen (``tiers eval``'s control-mode
runner) while training. The RT-H motion predictor (``tiers train --policy motion``) has its own data and
metrics: :mod:`tiers.apps.motion_predictor_training`.

Before a run, :func:`fit_to_dataset` maps the preset's cameras and language column onto a dataset that names
them otherwise (or names the flags to pass when it cannot decide), and :func:`loader_workers` sizes the
DataLoader's worker processes to the CPUs this process may use.

Run folder: the loop's (checkpoints, ``train_log.json``, ``learning_curve.png``; see
:mod:`tiers.services.training`) plus ``train_config.yaml``, the run's full config, which ``--resume`` reads back.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tiers.apps.evaluation.report import EvalMode
from tiers.apps.evaluation.runner import EpisodeRunner
from tiers.apps.evaluation.seeding import seed_globals
from tiers.apps.evaluation.settings import EpisodeJob, EvalSettings
from tiers.core.config import Config, read_yaml_mapping
from tiers.core.errors import ConfigError, ContractError
from tiers.core.features import FeatureKey
from tiers.datasets.loading import DatasetLoadingConfig, load_training_dataset
from tiers.policies.hierarchy.registry import shipped_checkpoint
from tiers.policies.low.checkpoint import EMBODIMENT_FILE, PolicyFeatures, load_policy, read_checkpoint
from tiers.policies.low.conditioning import LANGUAGE_KEYS, HindsightConditions
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
    # fine-tune: a checkpoint folder (or "pretrained:<name>") whose config, weights and normalisation statistics
    # the run starts from instead of a fresh policy on the dataset's statistics; None: train from scratch
    init_from: str | None = None


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


# -- fitting a preset to a dataset --------------------------------------------------------------------------------

CAMERAS_FLAG = "policy.conditioning.cameras"  # the override naming the cameras a generative policy reads
LANGUAGE_FLAG = "policy.conditioning.language_key"  # the override naming its language column
LEROBOT_CAMERAS_FLAG = "policy.cameras"  # the override naming the cameras a lerobot policy reads


@dataclass(frozen=True)
class DatasetFit:
    """The cameras and language column a preset reads on one dataset, and how they were mapped.

    ``notes`` say each change from the preset, for the console ("camera front -> cam_high (the one
    camera left)"); empty when the dataset has what the preset names.
    """

    cameras: list[str]  # camera names of the dataset, in the preset's order
    language_key: str | None
    notes: list[str] = field(default_factory=list)


def dataset_cameras(dataset: str | Path) -> list[str]:
    """The RGB camera names (``observation.images.<name>``) of the LeRobotDataset at ``dataset``, as recorded."""
    prefix = f"{FeatureKey.IMAGES.value}."
    return [key.removeprefix(prefix) for key in _dataset_features(dataset) if key.startswith(prefix)]


def dataset_language_keys(dataset: str | Path) -> list[str]:
    """The language columns of the dataset a policy can condition on, ``task`` first (every LeRobotDataset has it)."""
    features = _dataset_features(dataset)
    return [key for key in LANGUAGE_KEYS if key == FeatureKey.TASK.value or key in features]


def fit_to_dataset(
    cameras: Sequence[str],
    language_key: str | None,
    dataset: str | Path,
    *,
    fixed_cameras: bool = False,
    fixed_language: bool = False,
    cameras_flag: str = CAMERAS_FLAG,
    language_flag: str = LANGUAGE_FLAG,
) -> DatasetFit:
    """Map a preset's cameras and language column onto the dataset at ``dataset`` when that is unambiguous.

    Cameras, in this order: a preset camera the dataset has keeps its name; one whose name is part of
    exactly one spare dataset camera's name (and no other preset camera's) takes it (``wrist`` ->
    ``cam_wrist``); one preset camera left and one dataset camera left pair up; preset cameras left when
    every dataset camera is taken are dropped (the dataset has a subset of them). Language: the preset's
    column when the dataset has it, else ``task`` when the dataset has no other language column.
    ``fixed_*``: the user named them (a command-line override): used as given, never mapped.

    Raises:
        ConfigError: the dataset has no RGB camera while the preset reads some, a mapping is ambiguous, or
            a fixed value is not in the dataset; the message names the flag to pass with the dataset's
            own names (``policy.conditioning.cameras=[cam_high,cam_wrist]``).
    """
    have = dataset_cameras(dataset)
    languages = dataset_language_keys(dataset)
    problems: list[str] = []
    notes: list[str] = []
    mapped = list(cameras)
    if cameras and not set(cameras) <= set(have):
        try:
            mapped, camera_notes = _map_cameras(list(cameras), have, fixed=fixed_cameras, flag=cameras_flag)
            notes += camera_notes
        except ConfigError as error:
            problems.append(str(error))
    language = language_key
    if language_key is not None and language_key not in languages:
        others = [key for key in languages if key != FeatureKey.TASK.value]
        if not fixed_language and not others:
            language = FeatureKey.TASK.value
            notes.append(f"language {language_key} -> task (the dataset's only language column)")
        else:
            flags = " or ".join(f"{language_flag}={key}" for key in [*languages, "null"])
            problems.append(f"the dataset has no {language_key!r} language column; pass {flags}")
    if problems:
        raise ConfigError(f"{dataset}: " + "; ".join(problems))
    return DatasetFit(cameras=mapped, language_key=language, notes=notes)


def _map_cameras(wanted: list[str], have: list[str], *, fixed: bool, flag: str) -> tuple[list[str], list[str]]:
    """(cameras, notes): ``wanted`` mapped onto the dataset's ``have`` (see :func:`fit_to_dataset`)."""
    example = f"{flag}=[{','.join(have[: len(wanted)])}]"
    its = f"its cameras: {', '.join(have) or 'none'}"
    if not have:
        raise ConfigError(f"the dataset has no RGB camera; pass {flag}=[] to train on the state alone")
    if fixed:
        absent = [camera for camera in wanted if camera not in have]
        raise ConfigError(f"the dataset has no camera {absent} ({its}); pass e.g. {example}")
    chosen = {camera: camera for camera in wanted if camera in have}
    why: dict[str, str] = {}
    changed = True
    while changed:  # unique name matches, repeated: each one taken can make another unique
        changed = False
        spare = [camera for camera in have if camera not in chosen.values()]
        missing = [camera for camera in wanted if camera not in chosen]
        matches = {camera: [name for name in spare if camera.lower() in name.lower()] for camera in missing}
        for camera, names in matches.items():
            claimed = sum(names[0] in others for others in matches.values()) if len(names) == 1 else 0
            if claimed == 1:
                chosen[camera], why[camera] = names[0], "by name"
                changed = True
                break
    spare = [camera for camera in have if camera not in chosen.values()]
    missing = [camera for camera in wanted if camera not in chosen]
    if len(missing) == 1 and len(spare) == 1:
        chosen[missing[0]], why[missing[0]] = spare[0], "the one camera left"
    elif missing and spare:
        raise ConfigError(
            f"cannot tell which dataset camera is the preset's {missing} ({its}); "
            f"pass the {len(wanted)} camera(s) to read, e.g. {example}"
        )
    notes = [f"camera {camera} -> {chosen[camera]} ({why[camera]})" for camera in wanted if camera in why]
    notes += [f"camera {camera} dropped (the dataset has no such camera)" for camera in wanted if camera not in chosen]
    return [chosen[camera] for camera in wanted if camera in chosen], notes


def _dataset_features(dataset: str | Path) -> dict[str, Any]:
    """``features`` of the dataset's ``meta/info.json``."""
    path = Path(dataset) / "meta" / "info.json"
    try:
        features = json.loads(path.read_text())["features"]
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"{path}: not a LeRobotDataset's info ({error})") from error
    return dict(features)


def loader_workers(configured: int, *, explicit: bool = False) -> tuple[int, str]:
    """(DataLoader workers for this process, a line saying why).

    Rule: the configured number, at most the CPUs this process may run on, shared among the processes
    launched on this machine (``LOCAL_WORLD_SIZE``, set by accelerate / torchrun), minus one for the
    training loop itself: 4 configured on a 2-core machine -> 1. ``explicit`` (the user set it on the
    command line): the configured number, as given.
    """
    if explicit or configured == 0:
        where = "as given" if explicit else "in the training process"
        return configured, f"loader workers: {configured} ({where})"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    processes = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    cap = max(cpus // processes - 1, 0)
    if configured <= cap:
        return configured, f"loader workers: {configured} (trainer.num_workers)"
    share = f"{cpus} CPUs / {processes} processes" if processes > 1 else f"{cpus} CPUs"
    return cap, (
        f"loader workers: {cap} (trainer.num_workers={configured} capped at {share} - 1 for the training loop; "
        "--num-workers N sets it)"
    )


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
    workers: int | None = None,
) -> TrainSummary:
    """``tiers train``: a :class:`GenerativeLowPolicy` on the LeRobotDataset at ``dataset``, into ``out``.

    The policy's features (robot, state/action names, cameras, language key) and normalisation
    statistics come from the dataset; with ``resume`` they are checked against the checkpoint's. With
    ``config.init_from`` the run fine-tunes that checkpoint instead: its policy config, weights and statistics
    (checked against the dataset), whatever ``config.policy`` says.
    ``workers``: DataLoader workers of this session (:func:`loader_workers`); None: ``trainer.num_workers``.
    The saved config keeps ``trainer.num_workers`` as configured, so a resume elsewhere sizes it again.
    """
    out = Path(out)
    initial = None
    if config.init_from:  # fine-tuning: the checkpoint's config, weights and statistics (a resume then loads its own)
        initial = load_policy(shipped_checkpoint(config.init_from), dataset=dataset).train()
        config = dataclasses.replace(config, policy=initial.config)
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
    seed_globals(config.trainer.seed)  # the initial weights are drawn here, before the trainer seeds its loop
    policy = initial if initial is not None else GenerativeLowPolicy(policy_config, features, stats)
    out.mkdir(parents=True, exist_ok=True)
    if resume:
        _check_resumable(out, features)
    if launched_main_process():
        config.to_yaml(out / RUN_CONFIG)
    evaluate = kitchen_evaluator(config.eval) if config.eval.tasks else None
    trainer = _with_workers(config.trainer, workers)
    return train(policy, data, trainer, out, resume=resume, progress=progress, on_checkpoint=evaluate)


def train_lerobot_policy(
    dataset: str | Path,
    config: LerobotTrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> TrainSummary:
    """``tiers train --policy lerobot_diffusion | lerobot_act``: a lerobot policy on the tiers dataset, into ``out``.

    The same windows, statistics, optimiser loop, EMA, checkpoints and logs as the tiers policies, so the
    comparison differs only by the policy. With ``resume`` the last checkpoint's features must match.
    ``workers`` as for :func:`train_low_policy`.
    """
    out = Path(out)
    windows, stats = load_training_dataset(
        dataset_loading_config(config.policy, dataset, video_backend=config.video_backend)
    )
    seed_globals(config.trainer.seed)  # the initial weights are drawn here, before the trainer seeds its loop
    policy = LerobotPolicyAdapter.from_dataset(config.policy, dataset, stats)
    if resume:
        last = last_checkpoint(out)
        if is_lerobot_checkpoint(last):
            saved = json.loads((last / EMBODIMENT_FILE).read_text())
            if saved != policy.features.to_dict():
                raise ContractError(f"{last}: trained on other features ({saved}) than this dataset's")
    out.mkdir(parents=True, exist_ok=True)
    config.to_yaml(out / RUN_CONFIG)
    return train(policy, windows, _with_workers(config.trainer, workers), out, resume=resume, progress=progress)


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


def _with_workers(trainer: TrainerConfig, workers: int | None) -> TrainerConfig:
    return trainer if workers is None else dataclasses.replace(trainer, num_workers=workers)


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
