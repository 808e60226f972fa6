"""Camera models in recordings: the round trip to the live point cloud, ``tiers dataset check`` and ``show``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiers.core.features import FeatureKey
from tiers.datasets.cameras import intrinsics_key, observation_from_sample, pose_key
from tiers.datasets.check import check_dataset
from tiers.datasets.show import summarize
from tiers.policies.mid.perception import PerceptionConfig, PointCloudBuilder
from tiers.sim.kitchen.env import KitchenEnv

TASK = "open/drawer/0"
FRAME = 60  # a frame mid-episode: the drawer is moving and the wrist camera has left its start


def test_a_recorded_depth_frame_unprojects_onto_the_live_point_cloud(camera_dataset: Path) -> None:
    """Episode 0 (seed 0) replayed in the simulator with its recorded actions reaches frame FRAME's state; the
    recorded depth unprojected with the recorded camera model lies on the live cloud of that state."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/test", root=camera_dataset, video_backend="pyav", depth_output_unit="m")
    recorded = observation_from_sample(dataset[FRAME], dataset.meta.features)
    first = observation_from_sample(dataset[0], dataset.meta.features)
    actions = np.stack([dataset.hf_dataset[i][FeatureKey.ACTION.value].numpy() for i in range(FRAME)])

    env = KitchenEnv([TASK], render=True)
    try:
        live, _ = env.reset(seed=0, options={"task": TASK})
        for action in actions:
            live, *_ = env.step(action)
    finally:
        env.close()
    np.testing.assert_allclose(recorded.joint_positions, live.joint_positions, atol=1e-5)  # the same state

    assert set(recorded.cameras) == {"front", "wrist", "top"} and set(recorded.depths) == {"front"}
    for name, model in recorded.cameras.items():
        np.testing.assert_allclose(model.intrinsics, live.cameras[name].intrinsics, rtol=1e-6)
        np.testing.assert_allclose(model.base_from_camera, live.cameras[name].base_from_camera, atol=1e-6)
    wrist_travel = recorded.cameras["wrist"].base_from_camera[:3, 3] - first.cameras["wrist"].base_from_camera[:3, 3]
    assert np.linalg.norm(wrist_travel) > 0.02  # the wrist camera's pose is per frame, not the first one repeated

    points = recorded.cameras["front"].unproject(recorded.depths["front"])  # (H, W, 3) m, base frame
    truth = live.cameras["front"].unproject(live.depths["front"])
    error = np.linalg.norm(points - truth, axis=-1)
    # lerobot's depth video is 12-bit log-quantised: about 1 mm per metre of range, exact up to that
    range_m = np.linalg.norm(truth - live.cameras["front"].base_from_camera[:3, 3], axis=-1)
    assert np.median(error) < 2e-3 and np.percentile(error / range_m, 99) < 3e-3, (np.median(error), error.max())
    # the mid tier's perception builds the same cloud from the recording as live (no masks are recorded, so
    # both skip them); the cloud is voxel-downsampled, so the comparison is per voxel, not per pixel
    builder = PointCloudBuilder(PerceptionConfig(use_masks=False))
    offline, online = builder.build(recorded).points, builder.build(live).points
    assert len(offline) > 500 and abs(len(offline) - len(online)) < 0.05 * len(online)
    np.testing.assert_allclose(offline.mean(axis=0), online.mean(axis=0), atol=2e-3)
    # and the images are the live ones (the RGB video is lossy: within a few grey levels on most pixels)
    difference = np.abs(recorded.images["wrist"].astype(int) - live.images["wrist"].astype(int))
    assert np.median(difference) <= 4


def test_show_reports_each_camera_model(default_dataset: Path) -> None:
    cameras = {camera.name: camera for camera in summarize(default_dataset).cameras}
    assert set(cameras) == {"front", "wrist", "top"}
    front, wrist = cameras["front"], cameras["wrist"]
    focal = 0.5 * 128 / np.tan(np.deg2rad(58.0) / 2)  # configs/robots/panda.yaml: front fovy 58 deg, 128 px
    assert (front.width, front.height) == (128, 128) and front.fx == pytest.approx(focal, rel=1e-5)
    assert (front.cx, front.cy) == (63.5, 63.5) and not front.intrinsics_vary
    assert front.travel < 1e-6 < 0.05 < wrist.travel  # the front camera is mounted, the wrist one rides the arm
    assert not front.depth  # a default recording has no depth


def _rewrite_column(root: Path, key: str, row: int, values: list[float]) -> None:
    """Replace ``key`` at ``row`` of the first data file."""
    path = sorted((root / "data").glob("*/*.parquet"))[0]
    table = pq.read_table(path)
    column = table.column(key).to_pylist()
    column[row] = values
    index = table.column_names.index(key)
    table = table.set_column(index, table.schema.field(index), pa.array(column, type=table.schema.field(index).type))
    pq.write_table(table, path)


def test_check_names_an_invalid_camera_model(default_dataset: Path, tmp_path: Path) -> None:
    root = tmp_path / "broken"
    shutil.copytree(default_dataset, root)
    assert check_dataset(root, video_frames=False).ok
    _rewrite_column(root, intrinsics_key("front"), 3, [-115.0, 115.0, 63.5, 63.5])
    reflection = [1.0, 0, 0, 0.1, 0, 1.0, 0, 0.2, 0, 0, -1.0, 0.3]  # det R = -1
    _rewrite_column(root, pose_key("wrist"), 5, reflection)
    sheared = [1.0, 0.2, 0, 0.1, 0, 1.0, 0, 0.2, 0, 0, 1.0, 0.3]
    _rewrite_column(root, pose_key("top"), 7, sheared)
    report = check_dataset(root, video_frames=False)
    found = {(f.check, f.feature, f.frame): f.message for f in report.errors}
    assert set(found) == {
        ("cameras", intrinsics_key("front"), 3),
        ("cameras", pose_key("wrist"), 5),
        ("cameras", pose_key("top"), 7),
    }, found
    assert "fx=-115" in found["cameras", intrinsics_key("front"), 3]
    assert "reflection" in found["cameras", pose_key("wrist"), 5]
    assert "not orthonormal" in found["cameras", pose_key("top"), 7]


def test_check_warns_of_depth_without_a_camera_model(camera_dataset: Path, tmp_path: Path) -> None:
    """A tiers depth recording keeps its models (no finding); depth without one (as lerobot records it) is a
    warning, not an error: the dataset is sound, only its depth cannot be turned into points."""
    report = check_dataset(camera_dataset, video_frames=False)
    assert report.ok and "cameras" in report.checks_run
    assert not [f for f in report.findings if f.check == "cameras"]

    root = tmp_path / "no_models"
    shutil.copytree(camera_dataset, root)
    info_path = root / "meta/info.json"
    info = json.loads(info_path.read_text())
    for key in [key for key in info["features"] if key.startswith("camera.")]:
        del info["features"][key]
    info_path.write_text(json.dumps(info))
    report = check_dataset(root, video_frames=False)
    cameras = [f for f in report.findings if f.check == "cameras"]
    assert report.ok and [(f.severity, f.feature) for f in cameras] == [("warning", FeatureKey.DEPTH.camera("front"))]
