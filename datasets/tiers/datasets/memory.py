"""Training windows served from memory, for datasets read without cameras (proprioception and language).

lerobot answers every item by querying its parquet-backed table for each delta timestamp: about 50 ms per
window on a busy 2-core machine, which starves a small state-based policy (a 64-window batch takes seconds,
the network step milliseconds). Without cameras the whole table is a few MB, so :class:`InMemoryWindows`
reads it once and cuts windows by indexing, giving the same items as
:class:`~tiers.datasets.loading.TrainingWindows` (same keys, dtypes, padding rule and flags) at
microseconds each. :func:`~tiers.datasets.loading.load_training_dataset` uses it whenever no camera is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tiers.core.features import FeatureKey

PAD_SUFFIX = "_is_pad"


class InMemoryWindows(torch.utils.data.Dataset[dict[str, Any]]):
    """Windows of a camera-free LeRobotDataset, from its table loaded once (see the module docstring).

    Attributes (as :class:`~tiers.datasets.loading.TrainingWindows`): ``dataset`` (lerobot's dataset, opened
    without delta timestamps), ``config`` (the loading config), ``rename`` (dataset key -> tiers key).
    """

    def __init__(self, dataset: Any, config: Any, rename: Mapping[str, str]) -> None:
        self.dataset = dataset
        self.config = config
        self.rename = dict(rename)
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
        item: dict[str, Any] = {}
        for key, column in self._columns.items():
            name = self.rename.get(key, key)
            if key == state_key:
                rows = row + self._history_offsets
                item[name] = column[rows.clamp(min=first)]
                item[name + PAD_SUFFIX] = rows < first
            elif key == action_key:
                rows = row + self._future_offsets
                item[name] = column[rows.clamp(max=last)]
                item[name + PAD_SUFFIX] = rows > last
            elif isinstance(column, torch.Tensor):
                item[name] = column[row]
            else:
                item[name] = str(column[row])
        item["task"] = self._task_text[int(self._columns["task_index"][row])]
        return item
