"""``tiers bench data``: how fast training windows load, and how much of a training step waits for them.

Figures (all on CPU, from :func:`run_data_benchmark`):
    state_samples_per_s                 state + action windows (no cameras), 1 process
    video_samples_per_s_workers_<N>     windows with one RGB camera decoded from the video at each read,
                                        DataLoader with N worker processes
    frame_cache_decode_s, frame_cache_mb
                                        decoding every frame of that camera once into memory (the default
                                        when the frames fit in ``frame_cache_gb``), and the memory it holds
    cached_samples_per_s_workers_0      windows with that camera served from the decoded frames, 1 process
    train_step_ms                       forward + backward + Adam step of a small CNN/MLP policy on one batch
    data_wait_ms_per_step               time the training loop blocks on the DataLoader per step (2 workers),
                                        with the frames in memory (``tiers train``'s default)
    data_wait_share                     data wait / (data wait + train step); the goal is <= 0.15
    data_wait_share_in_process          the same with the windows cut in the training process (0 workers)
    data_wait_share_decoding            the same with 2 workers when every read decodes from the video
                                        (frame_cache_gb=0)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tiers.core.features import FeatureKey
from tiers.datasets.loading import DatasetLoadingConfig, Windows, load_training_dataset
from tiers.datasets.memory import InMemoryWindows

STATE, ACTION = FeatureKey.STATE.value, FeatureKey.ACTION.value
WORKERS = (0, 2)  # DataLoader worker processes compared for video windows
PREFETCH = 2  # batches each worker loads ahead (DataLoader's prefetch_factor)


def run_data_benchmark(
    root: Path,
    *,
    batch_size: int = 8,
    batches: int = 12,
    n_obs_steps: int = 2,
    horizon: int = 16,
    image_size: tuple[int, int] | None = (96, 96),
) -> dict[str, float | int | str]:
    """Measure loading speed and the data-wait share of training steps on the dataset at ``root``.

    Args:
        root: a LeRobotDataset folder with at least one RGB camera (``observation.images.<cam>``).
        batch_size: windows per batch.
        batches: batches timed per figure, after the untimed batches loaded during start-up (one, or each
            worker's prefetched ones), so the figures are steady-state rates.
        n_obs_steps, horizon: window lengths To and Ta (steps).
        image_size: (H, W) pixels the camera frames are resized to; None keeps the recorded size.

    Raises:
        ValueError: the dataset has no RGB camera.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    root = Path(root)
    meta = LeRobotDatasetMetadata(f"local/{root.name}", root=root)
    rgb = [key for key in meta.camera_keys if key.startswith(f"{FeatureKey.IMAGES.value}.")]
    if not rgb:
        raise ValueError(f"{root}: no RGB camera (observation.images.*) to time; dataset keys {sorted(meta.features)}")
    state_config = DatasetLoadingConfig(root=root, n_obs_steps=n_obs_steps, horizon=horizon)
    state_windows, _ = load_training_dataset(state_config)
    camera_config = replace(state_config, cameras=[rgb[0]], image_size=image_size)
    video_windows, _ = load_training_dataset(replace(camera_config, frame_cache_gb=0))
    start = time.perf_counter()
    cached_windows, _ = load_training_dataset(camera_config)
    if not isinstance(cached_windows, InMemoryWindows):
        raise ValueError(f"{root}: the frames of {rgb[0]} do not fit in {camera_config.frame_cache_gb} GB")
    figures: dict[str, float | int | str] = {"camera": rgb[0], "batch_size": batch_size, "frames": len(state_windows)}
    figures["frame_cache_decode_s"] = time.perf_counter() - start
    figures["frame_cache_mb"] = sum(f.numel() * f.element_size() for f in cached_windows.frames.values()) / 1e6
    figures["state_samples_per_s"] = _samples_per_s(state_windows, batch_size, batches, workers=0)
    for workers in WORKERS:
        figures[f"video_samples_per_s_workers_{workers}"] = _samples_per_s(video_windows, batch_size, batches, workers)
    figures["cached_samples_per_s_workers_0"] = _samples_per_s(cached_windows, batch_size, batches, workers=0)
    figures.update(_data_wait(cached_windows, rgb[0], batch_size, batches, workers=WORKERS[-1]))
    in_process = _data_wait(cached_windows, rgb[0], batch_size, batches, workers=0)
    figures["data_wait_share_in_process"] = in_process["data_wait_share"]
    decoding = _data_wait(video_windows, rgb[0], batch_size, batches, workers=WORKERS[-1])
    figures["data_wait_share_decoding"] = decoding["data_wait_share"]
    figures["data_wait_ms_per_step_decoding"] = decoding["data_wait_ms_per_step"]
    return figures


def _loader(windows: Windows, batch_size: int, workers: int) -> Iterator[dict[str, Any]]:
    """Shuffled batches (seeded), as a training run reads them."""
    generator = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(
        windows,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=generator,
        drop_last=True,
        prefetch_factor=PREFETCH if workers else None,
        # forking a process that already runs torch/decoder threads can deadlock the children
        multiprocessing_context="forkserver" if workers else None,
    )
    return iter(loader)


def _warm_up(batch_iter: Iterator[dict[str, Any]], workers: int) -> dict[str, Any]:
    """Drain the batches loaded during start-up (one, or each worker's prefetch), so timing sees steady state."""
    for _ in range(max(1, workers * PREFETCH)):
        batch = next(batch_iter)
    return batch


def _samples_per_s(windows: Windows, batch_size: int, batches: int, workers: int) -> float:
    """Windows per second over ``batches`` batches, after the start-up batches (see :func:`_warm_up`)."""
    batch_iter = _loader(windows, batch_size, workers)
    _warm_up(batch_iter, workers)
    start = time.perf_counter()
    for _ in range(batches):
        next(batch_iter)
    return batches * batch_size / (time.perf_counter() - start)


class _TinyPolicy(nn.Module):
    """A small low-level policy: CNN on the (To·3, H, W) stacked frames + state MLP -> (Ta, A) actions."""

    def __init__(self, n_obs_steps: int, state_size: int, horizon: int, action_size: int) -> None:
        super().__init__()
        self.horizon, self.action_size = horizon, action_size
        self.vision = nn.Sequential(
            nn.Conv2d(3 * n_obs_steps, 32, 5, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(64 + n_obs_steps * state_size, 256), nn.ReLU(), nn.Linear(256, horizon * action_size)
        )

    def forward(self, images: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """images (B, To, 3, H, W) in [0, 1], state (B, To, S) -> actions (B, Ta, A)."""
        features = self.vision(images.flatten(1, 2))  # (B, 64)
        out: torch.Tensor = self.head(torch.cat([features, state.flatten(1)], dim=1))  # (B, Ta·A)
        return out.view(-1, self.horizon, self.action_size)


def _data_wait(windows: Windows, camera: str, batch_size: int, batches: int, workers: int) -> dict[str, float | int]:
    """Per-step training compute and DataLoader wait while the loader's workers prefetch during compute."""
    torch.manual_seed(0)
    batch_iter = _loader(windows, batch_size, workers)
    first = _warm_up(batch_iter, workers)
    _, n_obs_steps, state_size = first[STATE].shape
    _, horizon, action_size = first[ACTION].shape
    policy = _TinyPolicy(n_obs_steps, state_size, horizon, action_size)
    optimiser = torch.optim.Adam(policy.parameters(), lr=1e-3)
    _train_step(policy, optimiser, first, camera)  # warm-up (allocations, kernels)
    wait = compute = 0.0
    for _ in range(batches):
        start = time.perf_counter()
        batch = next(batch_iter)
        ready = time.perf_counter()
        _train_step(policy, optimiser, batch, camera)
        wait, compute = wait + ready - start, compute + time.perf_counter() - ready
    return {
        "train_step_ms": 1000 * compute / batches,
        "data_wait_ms_per_step": 1000 * wait / batches,
        "data_wait_share": wait / (wait + compute),
        "data_wait_workers": workers,
    }


def _train_step(policy: _TinyPolicy, optimiser: torch.optim.Optimizer, batch: dict[str, Any], camera: str) -> None:
    """One behaviour-cloning step: MSE between predicted and recorded action chunks, masked at padding."""
    predicted = policy(batch[camera], batch[STATE])  # (B, Ta, A)
    valid = (~batch[f"{ACTION}_is_pad"]).unsqueeze(-1).float()  # (B, Ta, 1)
    loss = (((predicted - batch[ACTION]) ** 2) * valid).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
