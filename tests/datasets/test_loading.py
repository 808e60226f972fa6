"""Training windows: shapes, time alignment and padding, feature mapping of foreign datasets, named errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tiers.core.errors import ContractError
from tiers.core.features import FeatureKey
from tiers.datasets.loading import DatasetLoadingConfig, load_training_dataset

STATE, ACTION = FeatureKey.STATE.value, FeatureKey.ACTION.value
FRONT = FeatureKey.IMAGES.camera("front")
CAM_HIGH = "observation.images.cam_high"  # an ALOHA-style camera name, not a tiers camera
FOREIGN_FPS, FOREIGN_FRAMES, FOREIGN_EPISODES = 10, 12, 2


@pytest.fixture(scope="module")
def foreign_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset written directly with lerobot's API: camera ``cam_high``, 10 fps, 32 px PNG images, no language.

    State and action of frame ``i`` of episode ``e`` hold the value ``100 e + i`` in every component, and
    the image holds ``10 i`` in every pixel, so a window shows which frames it came from.
    """
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path_factory.mktemp("foreign") / "aloha"
    features = {
        STATE: {"dtype": "float32", "shape": (4,), "names": None},
        ACTION: {"dtype": "float32", "shape": (3,), "names": None},
        CAM_HIGH: {"dtype": "image", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
    }
    dataset = LeRobotDataset.create("local/aloha", fps=FOREIGN_FPS, root=root, features=features, use_videos=False)
    for episode in range(FOREIGN_EPISODES):
        for frame in range(FOREIGN_FRAMES):
            value = 100 * episode + frame
            dataset.add_frame(
                {
                    STATE: np.full(4, value, np.float32),
                    ACTION: np.full(3, value, np.float32),
                    CAM_HIGH: np.full((32, 32, 3), 10 * frame, np.uint8),
                    "task": "fold the towel",
                }
            )
        dataset.save_episode()
    dataset.finalize()
    return root


def _recorded_actions(root: Path) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Every recorded action (N, A) and each episode's [from, to) frame index range."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    plain = LeRobotDataset("local/plain", root=root, video_backend="pyav")
    actions = torch.stack(list(plain.hf_dataset[ACTION]))
    episodes = [(int(ep["dataset_from_index"]), int(ep["dataset_to_index"])) for ep in plain.meta.episodes]
    return actions, episodes


def test_camera_windows_have_the_contract_shapes(camera_dataset: Path) -> None:
    config = DatasetLoadingConfig(
        root=camera_dataset,
        cameras=[FRONT, FeatureKey.DEPTH.camera("front")],
        n_obs_steps=2,
        horizon=8,
        image_size=(64, 48),
    )
    windows, stats = load_training_dataset(config)
    item = windows[5]
    state_size = stats[STATE]["mean"].shape[0]
    action_size = stats[ACTION]["mean"].shape[0]
    assert item[STATE].shape == (2, state_size)
    assert item[FRONT].shape == (2, 3, 64, 48) and item[FRONT].min() >= 0.0 and item[FRONT].max() <= 1.0
    assert item[FeatureKey.DEPTH.camera("front")].shape == (2, 1, 64, 48)
    assert item[ACTION].shape == (8, action_size)
    assert item[f"{ACTION}_is_pad"].shape == (8,) and item[f"{STATE}_is_pad"].shape == (2,)
    assert not any(key.startswith(FeatureKey.IMAGES.value) and key != FRONT for key in item if "_is_pad" not in key)
    assert isinstance(item[FeatureKey.TASK.value], str)
    assert set(stats) == {STATE, ACTION, FRONT, FeatureKey.DEPTH.camera("front")}
    assert stats[FRONT]["mean"].shape == (3, 1, 1)

    batch = next(iter(torch.utils.data.DataLoader(windows, batch_size=3)))
    assert batch[FRONT].shape == (3, 2, 3, 64, 48)


def test_a_one_frame_window_keeps_its_time_axis(camera_dataset: Path) -> None:
    config = DatasetLoadingConfig(root=camera_dataset, cameras=[FRONT], n_obs_steps=1, horizon=1, image_size=(32, 32))
    item = load_training_dataset(config)[0][3]
    assert item[FRONT].shape == (1, 3, 32, 32) and item[STATE].shape[0] == 1  # (To, ...) like every window


def test_windows_align_with_recorded_frames_and_pad_at_episode_ends(state_dataset: Path) -> None:
    windows, _ = load_training_dataset(DatasetLoadingConfig(root=state_dataset, n_obs_steps=3, horizon=5))
    actions, episodes = _recorded_actions(state_dataset)
    start, end = episodes[1]
    for frame in (start, start + 1, start + 10, end - 2, end - 1):
        item = windows[frame]
        wanted = [min(max(frame + step, start), end - 1) for step in range(5)]
        torch.testing.assert_close(item[ACTION], actions[wanted])
        assert item[f"{ACTION}_is_pad"].tolist() == [frame + step >= end for step in range(5)]
        assert item[f"{STATE}_is_pad"].tolist() == [frame + step < start for step in (-2, -1, 0)]
        assert int(item["index"]) == frame


def test_a_dataset_written_directly_with_lerobot_loads_through_the_feature_map(foreign_dataset: Path) -> None:
    config = DatasetLoadingConfig(
        root=foreign_dataset, feature_map={CAM_HIGH: FRONT}, cameras=[FRONT], n_obs_steps=2, horizon=4
    )
    windows, stats = load_training_dataset(config)
    assert len(windows) == FOREIGN_EPISODES * FOREIGN_FRAMES
    item = windows[FOREIGN_FRAMES + 1]  # episode 1, frame 1
    assert CAM_HIGH not in item and f"{CAM_HIGH}_is_pad" not in item
    torch.testing.assert_close(item[STATE][:, 0], torch.tensor([100.0, 101.0]))  # frames t-1, t
    torch.testing.assert_close(item[ACTION][:, 0], torch.tensor([101.0, 102.0, 103.0, 104.0]))
    assert item[FRONT].shape == (2, 3, 32, 32)
    torch.testing.assert_close(item[FRONT][:, 0, 0, 0], torch.tensor([0.0, 10.0]) / 255)
    assert item[f"{FRONT}_is_pad"].tolist() == [False, False]
    torch.testing.assert_close(float(item["timestamp"]), 1 / FOREIGN_FPS)  # 10 fps timestamps
    assert set(stats) == {STATE, ACTION, FRONT}
    assert stats[ACTION]["max"].tolist() == [111.0] * 3


def test_a_feature_map_key_missing_in_the_dataset_lists_the_dataset_keys(foreign_dataset: Path) -> None:
    config = DatasetLoadingConfig(root=foreign_dataset, feature_map={"observation.images.top": FRONT}, cameras=[FRONT])
    with pytest.raises(ContractError, match=r"observation\.images\.top.*observation\.images\.cam_high"):
        load_training_dataset(config)


def test_a_camera_absent_after_mapping_is_named(foreign_dataset: Path) -> None:
    with pytest.raises(ContractError, match=r"observation\.images\.front.*cam_high"):
        load_training_dataset(DatasetLoadingConfig(root=foreign_dataset, cameras=[FRONT]))


def test_missing_statistics_raise_instead_of_defaulting(foreign_dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "aloha"
    shutil.copytree(foreign_dataset, copy)
    stats_file = copy / "meta" / "stats.json"
    stats = json.loads(stats_file.read_text())
    del stats[ACTION]
    stats_file.write_text(json.dumps(stats))
    config = DatasetLoadingConfig(root=copy, feature_map={CAM_HIGH: FRONT}, cameras=[FRONT])
    with pytest.raises(ContractError, match=r"stats\.json: no statistics for 'action'"):
        load_training_dataset(config)


def test_config_rejects_bad_values_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_obs_steps"):
        DatasetLoadingConfig(root=tmp_path, n_obs_steps=0)
    with pytest.raises(ValueError, match="not a camera key"):
        DatasetLoadingConfig(root=tmp_path, cameras=["front"])
    with pytest.raises(ValueError, match="several dataset keys"):
        DatasetLoadingConfig(root=tmp_path, feature_map={"a": FRONT, "b": FRONT})
    assert DatasetLoadingConfig(root=tmp_path / "towels").resolved_repo_id == "local/towels"
    config = DatasetLoadingConfig(root=tmp_path, feature_map={CAM_HIGH: FRONT}, cameras=[FRONT], image_size=(96, 96))
    assert DatasetLoadingConfig.from_dict(config.to_dict()) == config  # the YAML/JSON round trip


def test_data_benchmark_returns_finite_figures(camera_dataset: Path) -> None:
    from tiers.apps.bench.data import run_data_benchmark

    figures = run_data_benchmark(camera_dataset, batch_size=2, batches=1, horizon=4, image_size=(32, 32))
    assert figures["camera"] == FRONT
    for name in (
        "state_samples_per_s",
        "video_samples_per_s_workers_0",
        "video_samples_per_s_workers_2",
        "cached_samples_per_s_workers_0",
        "frame_cache_decode_s",
        "frame_cache_mb",
    ):
        assert 0 < float(figures[name]) < float("inf"), name
    for name in ("data_wait_share", "data_wait_share_in_process", "data_wait_share_decoding"):
        assert 0 <= float(figures[name]) <= 1, name
    assert float(figures["train_step_ms"]) > 0
