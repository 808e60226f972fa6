"""Training windows from a LeRobotDataset: observation history, action horizon, renamed keys, statistics.

Any LeRobotDataset v3 loads, whether tiers recorded it or lerobot's own API wrote it with other camera
names, another fps and no language columns: ``feature_map`` renames its keys to tiers keys
(:class:`tiers.core.FeatureKey`). The window at frame ``t`` (``To = n_obs_steps``, ``Ta = horizon``)::

    frame index        t-To+1  ...  t-1    t    t+1  ...  t+Ta-1
    observation        |--------- To --------|
    action                                   |------- Ta --------|

Steps before the episode start or after its end repeat the first or last frame and are flagged in
``<key>_is_pad`` (lerobot's padding), so a loss can mask them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms import v2

from tiers.core.config import Config
from tiers.core.errors import ContractError
from tiers.core.features import FeatureKey
from tiers.datasets.memory import InMemoryWindows, decode_camera_frames, frame_cache_bytes

STATS_NAMES = ("mean", "std", "min", "max")  # the statistics returned per feature
PAD_SUFFIX = "_is_pad"  # lerobot's padding flag: ``<key>_is_pad`` (T,) bool
CAMERA_PREFIXES = (f"{FeatureKey.IMAGES.value}.", f"{FeatureKey.DEPTH.value}.")


@dataclass
class DatasetLoadingConfig(Config):
    """Where a training dataset lives and which windows of it a policy reads."""

    root: Path  # the dataset folder (holds meta/info.json)
    repo_id: str = ""  # lerobot's repo id; empty: "local/<root folder name>"
    feature_map: dict[str, str] = field(default_factory=dict)  # dataset key -> tiers key; empty: identity
    cameras: list[str] = field(default_factory=list)  # tiers camera keys loaded ("observation.images.front")
    n_obs_steps: int = 2  # To: observation frames per window, the last one at t
    horizon: int = 16  # Ta: action steps per window, the first one at t
    image_size: tuple[int, int] | None = None  # (H, W) pixels to resize images to; None keeps the recorded size
    video_backend: str = "pyav"  # lerobot's decoder; torchcodec needs FFmpeg's shared libraries installed
    # decode every camera frame once and serve windows from memory when the frames (uint8 RGB, float16 depth,
    # at image_size) fit in this many GB; 0 always decodes from the videos at each read
    frame_cache_gb: float = 4.0

    def __post_init__(self) -> None:
        if self.frame_cache_gb < 0:
            raise ValueError(f"frame_cache_gb must be >= 0, got {self.frame_cache_gb}")
        if self.n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {self.n_obs_steps}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.image_size is not None and min(self.image_size) < 1:
            raise ValueError(f"image_size must be positive (H, W), got {self.image_size}")
        for camera in self.cameras:
            if not camera.startswith(CAMERA_PREFIXES):
                raise ValueError(f"cameras: {camera!r} is not a camera key (expected a prefix {CAMERA_PREFIXES})")
        targets = list(self.feature_map.values())
        duplicates = sorted({key for key in targets if targets.count(key) > 1})
        if duplicates:
            raise ValueError(f"feature_map maps several dataset keys to {duplicates}")

    @property
    def resolved_repo_id(self) -> str:
        """``repo_id``, or ``local/<root folder name>`` when it is empty."""
        return self.repo_id or f"local/{Path(self.root).name}"


class TrainingWindows(torch.utils.data.Dataset[dict[str, Any]]):
    """A LeRobotDataset seen through tiers keys; item ``i`` is the window around frame ``i``.

    Item entries (tiers keys; ``To = n_obs_steps``, ``Ta = horizon``):
        observation.state               (To, S) float32
        observation.images.<cam>        (To, 3, H, W) float32 in [0, 1], for each camera in ``config.cameras``
        observation.depth.<cam>         (To, 1, H, W) float32 metres, when listed in ``config.cameras``
        action                          (Ta, A) float32
        <key>_is_pad                    (To,) or (Ta,) bool, True where the step lies outside the episode
        task, timestamp (s), index, frame_index, episode_index, and any other non-camera column, renamed.
    """

    def __init__(self, dataset: Any, config: DatasetLoadingConfig, rename: Mapping[str, str]) -> None:
        self.dataset = dataset  # lerobot's LeRobotDataset, opened with the window's delta_timestamps
        self.config = config
        self.rename = dict(rename)  # dataset key -> tiers key, every dataset feature
        self._cameras = set(dataset.meta.camera_keys)  # dataset keys of the visual features still read
        self._dropped = {key for key in self._cameras if self.rename[key] not in config.cameras}
        self._depth = set(dataset.meta.depth_keys)
        self._resize_rgb, self._resize_depth = _resizers(config.image_size)

    def __len__(self) -> int:
        return int(self.dataset.num_frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = self.dataset[index]
        out: dict[str, Any] = {}
        for key, value in item.items():
            source = key.removesuffix(PAD_SUFFIX)
            if source in self._dropped:
                continue
            name = self.rename.get(source, source) + key[len(source) :]
            if source in self._cameras and key == source and value.ndim == 3:
                value = value.unsqueeze(0)  # lerobot drops the time axis of a one-frame video window: (C, H, W)
            if source in self._depth and key == source:
                value = self._resize_depth(value)
            elif source in self._cameras and key == source:
                value = self._resize_rgb(value)
            out[name] = value
        return out


Windows = TrainingWindows | InMemoryWindows  # what load_training_dataset returns: the same items either way


def load_training_dataset(
    config: DatasetLoadingConfig, *, progress: Callable[[int, int], None] | None = None
) -> tuple[Windows, dict[str, dict[str, torch.Tensor]]]:
    """Open ``config.root`` as training windows and return them with their normalisation statistics.

    Args:
        config: where the dataset is and which windows to cut.
        progress: called with (episodes decoded, episodes) while camera frames are decoded into memory.

    Returns:
        windows: the dataset of windows (see :class:`TrainingWindows` for the entries and shapes). Served
            from memory (:class:`~tiers.datasets.memory.InMemoryWindows`, the same items) when there is no
            camera, or the cameras are videos whose decoded frames fit in ``config.frame_cache_gb``;
            otherwise read and decoded at each access.
        stats: tiers key -> {"mean", "std", "min", "max"} float32 tensors, per feature component
            ((S,) for the state, (A,) for the action, (C, 1, 1) for images), for the state, the action,
            the loaded cameras and every other feature the map renames.

    Raises:
        ContractError: a feature-map key or a requested camera is not in the dataset (the message lists
            the dataset's keys), the dataset lacks a state or action, or ``meta/stats.json`` lacks a
            statistic of a loaded feature.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

    root = Path(config.root)
    meta = LeRobotDatasetMetadata(config.resolved_repo_id, root=root)
    rename = resolve_feature_map(config.feature_map, meta.features, root=root)
    _require_keys(config, rename, root)
    source = {tiers: dataset for dataset, tiers in rename.items()}
    loaded = [FeatureKey.STATE.value, FeatureKey.ACTION.value, *config.cameras]
    loaded += [tiers for tiers in config.feature_map.values() if tiers not in loaded]
    cameras = [source[camera] for camera in config.cameras]
    cache_bytes = frame_cache_bytes(
        meta.total_frames, _frame_shapes(meta, cameras, config.image_size), set(meta.depth_keys)
    )
    # cameras stored as images in the table (not videos) are read per row by lerobot, never cached
    cacheable = all(key in meta.video_keys for key in cameras) and cache_bytes <= config.frame_cache_gb * 1e9
    if not cameras or cacheable:
        # the table (and the decoded frames) in memory: the same items, tens of times faster
        plain = LeRobotDataset(
            config.resolved_repo_id, root=root, video_backend=config.video_backend, depth_output_unit="m"
        )
        stats = select_stats(plain.meta.stats, {key: source[key] for key in loaded}, root=root)
        rgb, depth = _resizers(config.image_size)
        resize = {key: depth if key in meta.depth_keys else rgb for key in cameras}
        frames = decode_camera_frames(plain, cameras, resize, progress=progress) if cameras else {}
        return InMemoryWindows(plain, config, rename, frames), stats
    dataset = LeRobotDataset(
        config.resolved_repo_id,
        root=root,
        delta_timestamps=window_timestamps(config, source, fps=meta.fps),
        video_backend=config.video_backend,
        depth_output_unit="m",
    )
    _skip_unloaded_videos(dataset, keep=set(cameras))
    stats = select_stats(dataset.meta.stats, {key: source[key] for key in loaded}, root=root)
    return TrainingWindows(dataset, config, rename), stats


def resolve_feature_map(feature_map: Mapping[str, str], features: Mapping[str, Any], *, root: Path) -> dict[str, str]:
    """Dataset key -> tiers key for every dataset feature; keys outside ``feature_map`` keep their name.

    Raises:
        ContractError: a key of ``feature_map`` is not a feature of the dataset, or a renamed key
            collides with a dataset key kept under its own name.
    """
    missing = sorted(set(feature_map) - set(features))
    if missing:
        raise ContractError(
            f"{root}/meta/info.json: feature_map keys {missing} are not in the dataset; its keys are {sorted(features)}"
        )
    rename = {key: feature_map.get(key, key) for key in features}
    targets = list(rename.values())
    clashes = sorted({key for key in targets if targets.count(key) > 1})
    if clashes:
        raise ContractError(f"{root}: feature_map gives {clashes} to two dataset keys; dataset keys {sorted(features)}")
    return rename


def window_timestamps(config: DatasetLoadingConfig, source: Mapping[str, str], *, fps: float) -> dict[str, list[float]]:
    """lerobot's ``delta_timestamps`` (dataset key -> offsets in s) of the window at frame ``t``.

    The state and the cameras get ``To`` offsets ending at 0 (``-(To-1)/fps .. 0``); the action gets
    ``Ta`` offsets starting at 0 (``0 .. (Ta-1)/fps``).
    """
    history = [(step - config.n_obs_steps + 1) / fps for step in range(config.n_obs_steps)]
    future = [step / fps for step in range(config.horizon)]
    deltas = {source[FeatureKey.STATE.value]: history, source[FeatureKey.ACTION.value]: future}
    deltas.update({source[camera]: history for camera in config.cameras})
    return deltas


def select_stats(
    stats: Mapping[str, Mapping[str, Any]] | None, keys: Mapping[str, str], *, root: Path
) -> dict[str, dict[str, torch.Tensor]]:
    """Statistics of ``keys`` (tiers key -> dataset key) from lerobot's ``meta.stats``, under tiers keys.

    Raises:
        ContractError: the dataset has no statistics, or one of ``STATS_NAMES`` is missing for a key.
    """
    if not stats:
        raise ContractError(f"{root}/meta/stats.json: no statistics (needed for normalisation)")
    out: dict[str, dict[str, torch.Tensor]] = {}
    for tiers, dataset in keys.items():
        if dataset not in stats:
            raise ContractError(
                f"{root}/meta/stats.json: no statistics for {dataset!r} (tiers {tiers!r}); it has {sorted(stats)}"
            )
        absent = [name for name in STATS_NAMES if name not in stats[dataset]]
        if absent:
            raise ContractError(f"{root}/meta/stats.json: {dataset!r} lacks {absent}")
        out[tiers] = {name: torch.as_tensor(stats[dataset][name], dtype=torch.float32) for name in STATS_NAMES}
    return out


def _require_keys(config: DatasetLoadingConfig, rename: Mapping[str, str], root: Path) -> None:
    """Raise :class:`ContractError` unless the renamed dataset has a state, an action and the cameras."""
    wanted = [FeatureKey.STATE.value, FeatureKey.ACTION.value, *config.cameras]
    absent = [key for key in wanted if key not in rename.values()]
    if absent:
        raise ContractError(
            f"{root}: tiers keys {absent} are not in the dataset after feature_map; "
            f"renamed dataset keys are {sorted(rename.values())} (map dataset keys to them in feature_map)"
        )


def _frame_shapes(meta: Any, cameras: list[str], image_size: tuple[int, int] | None) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of each camera's frames after resizing to ``image_size`` (the recorded size when None)."""
    shapes = {}
    for key in cameras:
        names = meta.features[key].get("names") or []
        shape = tuple(meta.features[key]["shape"])  # lerobot writes video shapes as (H, W, C)
        height, width, channels = shape if names[:1] != ["channels"] else (shape[1], shape[2], shape[0])
        if image_size is not None:
            height, width = image_size
        shapes[key] = (int(channels), int(height), int(width))
    return shapes


def _skip_unloaded_videos(dataset: Any, keep: set[str]) -> None:
    """Stop ``dataset`` from decoding the video streams of cameras that are not loaded.

    lerobot decodes every video key of its metadata for every item; the cameras a policy does not read
    would cost most of the loading time (three cameras and a depth stream in a tiers recording). The
    reader finds its video keys in ``meta.info.features`` at each item, so those cameras are removed
    from this dataset's in-memory copy of ``meta/info.json`` (files on disk are untouched; the
    statistics keep every key).
    """
    for key in list(dataset.meta.video_keys):
        if key not in keep:
            del dataset.meta.info.features[key]


def _resizers(image_size: tuple[int, int] | None) -> tuple[v2.Transform, v2.Transform]:
    """Resize transforms for (…, C, H, W) images: antialiased bilinear for RGB, nearest for depth."""
    if image_size is None:
        return v2.Identity(), v2.Identity()
    size = list(image_size)
    rgb = v2.Resize(size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    depth = v2.Resize(size, interpolation=v2.InterpolationMode.NEAREST_EXACT, antialias=False)
    return rgb, depth
