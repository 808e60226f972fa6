"""Recording the kitchen expert into a LeRobotDataset v3 that lerobot's own loader reads."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tiers.commands.motion_words import VOCABULARY
from tiers.core.errors import ContractError
from tiers.core.features import FeatureKey
from tiers.datasets import staging
from tiers.datasets.features import EXPERT_MOTION, DatasetSpec
from tiers.datasets.language_motion import dataset_agreement
from tiers.datasets.recorder import DatasetRecorder, read_episode_log


def _load(root: Path):  # type: ignore[no-untyped-def]
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset("local/test", root=root, video_backend="pyav", depth_output_unit="m")


def test_lerobot_loads_the_recording_with_every_feature(camera_dataset: Path) -> None:
    dataset = _load(camera_dataset)
    assert dataset.num_episodes == 2
    lengths = [int(n) for n in dataset.meta.episodes["length"]]
    assert len(dataset) == sum(lengths) > 100
    features = dataset.meta.features
    assert features[FeatureKey.STATE]["shape"] == (8,) and features[FeatureKey.ACTION]["shape"] == (8,)
    assert features[FeatureKey.EE_POSE]["shape"] == (7,)
    for camera in ("front", "wrist", "top"):
        assert features[FeatureKey.IMAGES.camera(camera)]["dtype"] == "video"
    assert features[FeatureKey.DEPTH.camera("front")]["info"]["is_depth_map"]
    for key in (FeatureKey.SUBTASK, FeatureKey.LANGUAGE_MOTION, EXPERT_MOTION):
        assert features[key]["dtype"] == "string"

    last = dataset[lengths[0] + lengths[1] - 1]  # the last frame of episode 1: decodes every video
    assert last["episode_index"].item() == 1 and last["frame_index"].item() == lengths[1] - 1
    assert last[FeatureKey.IMAGES.camera("front")].shape == (3, 128, 128)
    depth = last[FeatureKey.DEPTH.camera("front")]
    assert depth.shape == (1, 128, 128) and 0.2 < float(depth.median()) < 3.0  # metres to the kitchen
    assert last["task"] == "open the kitchen drawer"
    assert last[FeatureKey.SUBTASK] == "open the drawer"
    assert last[FeatureKey.LANGUAGE_MOTION] in VOCABULARY
    state = last[FeatureKey.STATE].numpy()
    assert np.all(np.isfinite(state)) and 0.0 <= state[-1] <= 0.08  # gripper opening in m

    log = read_episode_log(camera_dataset)
    assert [(r.episode_index, r.task_id, r.seed, r.success) for r in log] == [
        (0, "open/drawer/0", 0, True),
        (1, "open/drawer/0", 1, True),
    ]
    assert [r.frames for r in log] == lengths
    assert not (camera_dataset / staging.WORK_DIR).exists()


def test_language_motions_agree_with_the_expert(camera_dataset: Path) -> None:
    agreement = dataset_agreement(str(camera_dataset))
    assert agreement.frames == _load(camera_dataset).num_frames
    assert agreement.rate > 0.7, agreement.per_primitive


def test_resume_appends_and_refuses_another_schema(
    state_dataset: Path, tmp_path: Path, parse_cli: Callable[..., argparse.Namespace]
) -> None:
    from tiers.cli import record

    root = tmp_path / "resumed"
    shutil.copytree(state_dataset, root)
    args = parse_cli("record", "--out", str(root), "--num-episodes", "1", "--tasks", "open/drawer/0", "--no-cameras")
    with pytest.raises(ContractError, match="already exists and is not empty; resume"):
        record.run(args)
    args.resume = True
    assert record.run(args) == 0
    dataset = _load(root)
    assert dataset.num_episodes == 4
    log = read_episode_log(root)
    assert [r.attempt for r in log] == [0, 1, 2, 3] and log[-1].seed == 3  # seeds continue after a resume

    spec = DatasetSpec.from_embodiment(_panda(), cameras=True)
    with pytest.raises(ContractError, match=r"missing feature 'observation.images.front'"):
        DatasetRecorder(root, spec, resume=True)


def _panda():  # type: ignore[no-untyped-def]
    from tiers.core.embodiment import EmbodimentSpec

    return EmbodimentSpec.load("panda")


def test_an_interrupted_commit_is_rolled_forward(
    state_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit stopped after its first renames: lerobot still opens the old episodes; recovery finishes it."""
    import tiers.sim
    from tiers.apps.record import roll_out_expert
    from tiers.datasets.recorder import EpisodeRecord

    root = tmp_path / "interrupted"
    shutil.copytree(state_dataset, root)
    env = tiers.sim.make("open/drawer/0", render=False)
    spec = DatasetSpec.from_embodiment(env.embodiment, cameras=False)
    episode = roll_out_expert(env, "open/drawer/0", 7, spec)
    recorder = DatasetRecorder(root, spec, resume=True)
    for frame in episode.frames:
        recorder.add_frame(frame)

    original = staging._apply

    def interrupted(moves: list[tuple[str, str]]) -> int:
        original(moves[:2])  # the data file and the episode metadata file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(staging, "_apply", interrupted)
    record = EpisodeRecord("open/drawer/0", "open the kitchen drawer", 7, episode.success, len(episode.frames))
    with pytest.raises(KeyboardInterrupt):
        recorder.save_episode(record)
    monkeypatch.setattr(staging, "_apply", original)
    assert (root / staging.WORK_DIR / staging.JOURNAL).is_file()
    assert _load(root).num_episodes == 3  # info.json (the commit point) still says 3

    recovery = DatasetRecorder(root, spec, resume=True).recovery
    assert recovery.rolled_forward > 0
    dataset = _load(root)
    assert dataset.num_episodes == 4 and len(dataset) == dataset.meta.total_frames
    assert json.loads((root / "meta/info.json").read_text())["total_episodes"] == 4
    assert read_episode_log(root)[-1].episode_index == 3
