"""Training windows served from memory: the table always, the camera frames when they fit.

lerobot answers every item by querying its parquet-backed table for each delta timestamp (about 50 ms per
window on a busy 2-core machine) and, with cameras, by seeking into the videos and decoding a group of
pictures for every frame of the window. A training step of a small policy is milliseconds, so it waits
for data most of the time. :class:`InMemoryWindows` reads the table once and cuts windows by indexing,
giving the same items as :class:`~tiers.datasets.loading.TrainingWindows` (same keys, dtypes, padding rule
and flags) at microseconds each. Camera frames are decoded once, episode by episode in one forward pass
each (:func:`decode_camera_frames`), resized to the policy's image size and kept as uint8 RGB / float16
depth (robomimic's "cache everything" mode); :func:`~tiers.datasets.loading.load_training_dataset` does
this when the frames fit in ``frame_cache_gb`` and otherwise decodes from the videos at every read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from tiers.core.features import FeatureKey

PAD_SUFFIX = "_is_pad"


class InMemoryWindows(torch.utils.data.Dataset[dict[str, Any]]):
    """Windows of a LeRobotDataset from its table loaded once and decoded frames (see the module docstring).

    Attributes (as :class:`~tiers.datasets.loading.TrainingWindows`): ``dataset`` (lerobot's dataset, opened
    without delta timestamps), ``config`` (the loading config), ``rename`` (dataset key -> tiers key).
    ``frames``: dataset camera key -> (N, C, H, W) frames of every row, uint8 RGB or float16 depth in metres
    (from :func:`decode_camera_frames`); served as (To, C, H, W) float32 windows, RGB scaled to [0, 1].
    """

    def __init__(
        self, dataset: Any, config: Any, rename: Mapping[str, str], frames: Mapping[str, torch.Tensor] | None = None
    ) -> None:
        self.dataset = dataset
        self.config = config
        self.rename = dict(rename)
        self.frames = dict(frames or {})
        table = dataset.hf_dataset.with_format("numpy")[:]
        self._columns: dict[str, Any] = {}
        for key, values in table.items():
            array = np.asarray(values)
            self._columns[key] = torch.from_numpy(array) if array.dtype.kind in "fiub" else array
        episodes = self._columns["episode_index"].numpy()
        order = self._columns["index"].numpy()
        if not np.all(np.diff(order) == 1):
            raise ValueError(f"{config.root}: frame indices are not consecutive; cannot serve windows from memory")
        # first and last row of each row's episode (rows of one episode are contiguous in a LeRobotDataset)
        boundaries = np.flatnonzero(np.diff(episodes)) + 1
        starts = np.concatenate([[0], boundaries])
        ends = np.concatenate([boundaries, [len(episodes)]]) - 1
        lengths = ends - starts + 1
        self._first = torch.from_numpy(np.repeat(starts, lengths))
        self._last = torch.from_numpy(np.repeat(ends, lengths))
        tasks = dataset.meta.tasks  # a DataFrame indexed by task text with a task_index column
        self._task_text = {int(index): str(text) for text, index in zip(tasks.index, tasks["task_index"], strict=True)}
        self._source = {tiers: key for key, tiers in self.rename.items()}
        history = config.n_obs_steps
        self._history_offsets = torch.arange(history) - (history - 1)  # (To,) -To+1 .. 0
        self._future_offsets = torch.arange(config.horizon)  # (Ta,) 0 .. Ta-1

    def __len__(self) -> int:
        return len(self._first)

    @property
    def episode_indices(self) -> torch.Tensor:
        """(N,) int64 episode index of every window's frame."""
        column: torch.Tensor = self._columns["episode_index"]
        return column

    def __getitem__(self, row: int) -> dict[str, Any]:
        first, last = int(self._first[row]), int(self._last[row])
        state_key = self._source[FeatureKey.STATE.value]
        action_key = self._source[FeatureKey.ACTION.value]
        history = row + self._history_offsets  # (To,) rows of the observation window, state and cameras alike
        past, history_pad = history.clamp(min=first), history < first
        item: dict[str, Any] = {}
        for key, column in self._columns.items():
            name = self.rename.get(key, key)
            if key == state_key:
                item[name] = column[past]
                item[name + PAD_SUFFIX] = history_pad
            elif key == action_key:
                rows = row + self._future_offsets
                item[name] = column[rows.clamp(max=last)]
                item[name + PAD_SUFFIX] = rows > last
            elif isinstance(column, torch.Tensor):
                item[name] = column[row]
            else:
                item[name] = str(column[row])
        for key, frames in self.frames.items():
            name = self.rename.get(key, key)
            window = frames[past].float()  # (To, C, H, W)
            item[name] = window / 255.0 if frames.dtype == torch.uint8 else window
            item[name + PAD_SUFFIX] = history_pad
        item["task"] = self._task_text[int(self._columns["task_index"][row])]
        return item


def frame_cache_bytes(num_frames: int, shapes: Mapping[str, tuple[int, int, int]], depth: set[str]) -> int:
    """Bytes :func:`decode_camera_frames` holds: ``num_frames`` × (C·H·W) per camera, 1 byte RGB, 2 bytes depth."""
    return sum(num_frames * c * h * w * (2 if key in depth else 1) for key, (c, h, w) in shapes.items())


def decode_camera_frames(
    dataset: Any,
    keys: list[str],
    resize: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Every frame of the cameras ``keys`` of ``dataset`` (lerobot's, opened without delta timestamps).

    Each episode's frames are decoded with lerobot's own reader (its timestamp tolerance and depth
    dequantisation; ``DatasetReader._query_videos``, private in lerobot 0.6, hence the pin in pyproject.toml
    and the equality test against decoding at each read) in one forward pass per camera, resized with
    ``resize[key]`` ((T, C, H, W) -> resized), and stored as uint8 RGB or float16 depth in metres.

    Returns:
        dataset key -> (N, C, H, W) tensor, row ``i`` the frame of table row ``i``.
    """
    reader = dataset.reader
    depth = set(dataset.meta.depth_keys)
    timestamps = dataset.hf_dataset.with_format("numpy")["timestamp"]
    out: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
    episodes = dataset.meta.episodes
    for number, episode in enumerate(episodes):
        first, end = int(episode["dataset_from_index"]), int(episode["dataset_to_index"])
        query = [float(t) for t in timestamps[first:end]]
        decoded = reader._query_videos({key: query for key in keys}, int(episode["episode_index"]))
        for key in keys:
            frames = decoded[key].reshape(len(query), *decoded[key].shape[-3:])  # one-frame episodes lose T
            frames = resize[key](frames)
            if key in depth:
                out[key].append(frames.to(torch.float16))
            else:
                out[key].append((frames * 255.0).round_().clamp_(0, 255).to(torch.uint8))
        if progress is not None:
            progress(number + 1, len(episodes))
    return {key: torch.cat(parts) for key, parts in out.items()}
