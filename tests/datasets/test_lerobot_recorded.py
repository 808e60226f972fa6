"""tiers' own dataset tools on a dataset lerobot recorded (written with lerobot's API, depth as lerobot stores it,
no camera models): ``tiers dataset check`` passes it with one warning, ``show`` summarises it, and turning a
frame into an Observation names what is missing rather than guessing a camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiers.core.errors import ContractError
from tiers.datasets.cameras import observation_from_sample
from tiers.datasets.check import check_dataset
from tiers.datasets.show import summarize

SIZE = 64  # px: SVT-AV1, lerobot's RGB encoder, refuses frames much smaller
IMAGE, DEPTH = "observation.images.cam", "observation.depth.cam"


@pytest.fixture(scope="module")
def lerobot_rgbd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 episodes of 8 frames at 10 fps: state, action, an RGB video and a depth video (``is_depth_map``)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path_factory.mktemp("lerobot") / "rgbd"
    axes = ["height", "width", "channels"]
    features = {
        "observation.state": {"dtype": "float32", "shape": (4,), "names": None},
        "action": {"dtype": "float32", "shape": (3,), "names": None},
        IMAGE: {"dtype": "video", "shape": (SIZE, SIZE, 3), "names": axes},
        DEPTH: {"dtype": "video", "shape": (SIZE, SIZE, 1), "names": axes, "info": {"is_depth_map": True}},
    }
    dataset = LeRobotDataset.create("local/rgbd", fps=10, root=root, features=features, use_videos=True)
    for _ in range(2):
        for frame in range(8):
            dataset.add_frame(
                {
                    "observation.state": np.full(4, frame, np.float32),
                    "action": np.zeros(3, np.float32),
                    IMAGE: np.full((SIZE, SIZE, 3), 10 * frame, np.uint8),
                    DEPTH: np.full((SIZE, SIZE, 1), 0.5 + 0.1 * frame, np.float32),  # m
                    "task": "stack the cups",
                }
            )
        dataset.save_episode()
    dataset.finalize()
    return root


def test_check_passes_it_and_warns_that_its_depth_has_no_camera_model(lerobot_rgbd: Path) -> None:
    report = check_dataset(lerobot_rgbd)
    assert report.ok, report.errors
    assert (report.episodes, report.frames) == (2, 16)
    assert [(f.severity, f.check, f.feature) for f in report.findings] == [("warning", "cameras", DEPTH)]


def test_show_summarises_it_without_camera_models(lerobot_rgbd: Path) -> None:
    summary = summarize(lerobot_rgbd)
    assert (summary.episodes, summary.frames, summary.fps) == (2, 16, 10)
    assert {feature.key for feature in summary.features} >= {IMAGE, DEPTH}
    assert summary.tasks == [("stack the cups", 2)] and summary.cameras == []


def test_a_frame_without_camera_models_is_refused_naming_the_camera(lerobot_rgbd: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/rgbd", root=lerobot_rgbd, video_backend="pyav", depth_output_unit="m")
    with pytest.raises(ContractError, match="no camera model of 'cam'"):
        observation_from_sample(dataset[3], dataset.meta.features)
