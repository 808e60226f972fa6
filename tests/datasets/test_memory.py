"""Windows served from memory are the windows lerobot serves, item for item."""

from __future__ import annotations

from dataclasses import replace
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


def test_cached_camera_frames_serve_the_windows_decoded_from_video(camera_dataset: Path) -> None:
    """RGB kept as uint8 and depth as float16 after resizing: within half a grey level and a millimetre."""
    front, depth = "observation.images.front", "observation.depth.front"
    config = DatasetLoadingConfig(
        root=camera_dataset, cameras=[front, depth], n_obs_steps=2, horizon=4, image_size=(40, 32)
    )
    decoded_at_read, _ = load_training_dataset(replace(config, frame_cache_gb=0))
    episodes: list[int] = []
    cached, stats = load_training_dataset(config, progress=lambda done, total: episodes.append(total - done))
    assert isinstance(cached, InMemoryWindows) and not isinstance(decoded_at_read, InMemoryWindows)
    assert episodes[-1] == 0 and set(stats) == {"observation.state", "action", front, depth}
    assert cached.frames["observation.images.front"].dtype == torch.uint8
    assert cached.frames["observation.images.front"].shape == (len(cached), 3, 40, 32)
    end = int(cached.dataset.meta.episodes[0]["dataset_to_index"])
    for index in (0, 1, 7, end - 1, end, len(cached) - 1):
        expected, got = decoded_at_read[index], cached[index]
        assert set(expected) == set(got), set(expected) ^ set(got)
        for key, value in expected.items():
            if not isinstance(value, torch.Tensor):
                assert value == got[key], (index, key)
                continue
            assert value.dtype == got[key].dtype and value.shape == got[key].shape, (index, key)
            tolerance = {front: 0.5 / 255 + 1e-6, depth: 2e-3}.get(key, 0.0)
            assert torch.allclose(value.float(), got[key].float(), atol=tolerance, rtol=0), (index, key)
    assert cached[end][f"{front}_is_pad"].tolist() == [True, False]  # the first frame of episode 1


def test_frames_over_the_cache_budget_are_decoded_at_each_read(camera_dataset: Path) -> None:
    config = DatasetLoadingConfig(root=camera_dataset, cameras=["observation.images.front"], frame_cache_gb=1e-6)
    windows, _ = load_training_dataset(config)
    assert isinstance(windows, TrainingWindows)
