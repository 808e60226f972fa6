"""Windows served from memory are the windows lerobot serves, item for item."""

from __future__ import annotations

from pathlib import Path

import torch

from tiers.datasets.loading import DatasetLoadingConfig, TrainingWindows, load_training_dataset, window_timestamps
from tiers.datasets.memory import InMemoryWindows


def test_in_memory_windows_equal_lerobots_own(state_dataset: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    config = DatasetLoadingConfig(root=state_dataset, n_obs_steps=3, horizon=8)
    memory, stats = load_training_dataset(config)
    assert isinstance(memory, InMemoryWindows) and set(stats) == {"observation.state", "action"}
    source = {tiers: key for key, tiers in memory.rename.items()}
    deltas = window_timestamps(config, source, fps=memory.dataset.meta.fps)
    windowed = LeRobotDataset(config.resolved_repo_id, root=state_dataset, delta_timestamps=deltas)
    reference = TrainingWindows(windowed, config, memory.rename)
    assert len(memory) == len(reference)
    ends = [int(e["dataset_to_index"]) for e in memory.dataset.meta.episodes]
    # episode starts and ends (padding on both sides) and frames in between
    for index in sorted({0, 1, 2, 40, ends[0] - 1, ends[0], ends[0] + 1, len(memory) - 2, len(memory) - 1}):
        expected, got = reference[index], memory[index]
        assert set(expected) == set(got)
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == got[key].dtype and torch.equal(value, got[key]), (index, key)
            else:
                assert value == got[key], (index, key)
    assert memory[0]["observation.state_is_pad"].tolist() == [True, True, False]
    assert memory[len(memory) - 1]["action_is_pad"].tolist() == [False] + [True] * 7
