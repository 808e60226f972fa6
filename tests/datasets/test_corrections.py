"""Live corrections logged as data: per-frame columns, events and spans, crash safety, mixing for retraining."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from tiers.core.errors import ContractError
from tiers.core.features import CommandSource, CommandStyle, FeatureKey
from tiers.core.language import LanguageCommand
from tiers.datasets import staging
from tiers.datasets.check import check_dataset
from tiers.datasets.corrections import (
    ACTIVE_CORRECTION,
    CORRECTIONS_LOG,
    ENDED_BY_CORRECTION,
    ENDED_BY_EPISODE,
    ENDED_BY_RUNTIME,
    INTERJECTION,
    CorrectionsMixConfig,
    CorrectionsSpec,
    CorrectionsWriter,
    load_mixed_training_dataset,
    read_corrections,
)
from tiers.datasets.features import DatasetSpec
from tiers.datasets.loading import DatasetLoadingConfig
from tiers.datasets.recorder import EpisodeRecord, read_episode_log
from tiers.datasets.show import summarize

TASK = "open/drawer/0"


@pytest.fixture(scope="module")
def expert_frames() -> tuple[CorrectionsSpec, list[dict[str, Any]]]:
    """One real proprioception-only expert episode in MuJoCo, as frames of a corrections recording."""
    import tiers.sim
    from tiers.apps.record import roll_out_expert

    env = tiers.sim.make([TASK], render=False)
    try:
        spec = CorrectionsSpec.extend(DatasetSpec.from_embodiment(env.embodiment, cameras=False))
        episode = roll_out_expert(env, TASK, 0, spec)
    finally:
        env.close()
    assert episode.success and len(episode.frames) > 60
    return spec, episode.frames


def _command(text: str, style: CommandStyle, t: float, replaces: LanguageCommand | None = None) -> LanguageCommand:
    return LanguageCommand(text, style, CommandSource.HUMAN_LIVE, timestamp=t, replaces=replaces)


@pytest.fixture(scope="module")
def corrections_dataset(
    tmp_path_factory: pytest.TempPathFactory, expert_frames: tuple[CorrectionsSpec, list[dict[str, Any]]]
) -> tuple[Path, list[LanguageCommand]]:
    """Two episodes: the first with three corrections (stop, a motion, a subtask), the second with none."""
    spec, frames = expert_frames
    root = tmp_path_factory.mktemp("corrections") / "yay"
    planner = LanguageCommand("open the drawer", CommandStyle.SUBTASK, CommandSource.PLANNER, timestamp=0.0)
    stop = _command("stop", CommandStyle.STOP, 0.5, replaces=planner)
    left = _command("move arm left", CommandStyle.MOTION, 1.0, replaces=stop)
    grasp = _command("grasp the drawer handle", CommandStyle.CORRECTION, 2.0, replaces=left)
    with CorrectionsWriter(root, spec) as writer:
        for index, frame in enumerate(frames):
            if index == 10:
                writer.interject(stop, motion="stop")
            if index == 20:
                writer.interject(left, motion="move arm left")
            if index == 30:
                writer.end_intervention()
            if index == 40:
                writer.interject(grasp, subtask="grasp the drawer handle")
            writer.add_frame(frame)
        assert writer.save_episode(EpisodeRecord(TASK, "open the kitchen drawer", 0, True, len(frames))) == 0
        for frame in frames:
            writer.add_frame(frame)
        assert writer.save_episode(EpisodeRecord(TASK, "open the kitchen drawer", 0, True, len(frames))) == 1
    return root, [stop, left, grasp]


def test_corrections_round_trip_through_lerobot_and_the_sidecar(
    corrections_dataset: tuple[Path, list[LanguageCommand]], expert_frames: tuple[CorrectionsSpec, list[Any]]
) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, (stop, left, grasp) = corrections_dataset
    length = len(expert_frames[1])
    dataset = LeRobotDataset("local/yay", root=root, video_backend="pyav")
    assert dataset.num_episodes == 2 and len(dataset) == 2 * length
    assert dataset.meta.features[INTERJECTION]["dtype"] == "string"
    rows = dataset.hf_dataset.select_columns([INTERJECTION, ACTIVE_CORRECTION, "episode_index"])
    first = [(r[INTERJECTION], r[ACTIVE_CORRECTION]) for r in rows if int(r["episode_index"]) == 0]
    arrived = {index: text for index, (text, _) in enumerate(first) if text}
    assert arrived == {10: "stop", 20: "move arm left", 40: "grasp the drawer handle"}
    active = [text for _, text in first]
    assert active[:10] == [""] * 10 and active[10:20] == ["stop"] * 10 and active[20:30] == ["move arm left"] * 10
    assert active[30:40] == [""] * 10 and active[40:] == ["grasp the drawer handle"] * (length - 40)
    second = [(r[INTERJECTION], r[ACTIVE_CORRECTION]) for r in rows if int(r["episode_index"]) == 1]
    assert set(second) == {("", "")}

    log = read_corrections(root)
    assert [(e.episode_index, e.frame_index, e.command.text) for e in log.events] == [
        (0, 10, "stop"),
        (0, 20, "move arm left"),
        (0, 40, "grasp the drawer handle"),
    ]
    event = log.events[2]
    assert event.command.to_dict() == grasp.to_dict()  # id, style, source and timestamp survive
    assert [c.text for c in event.command.history()] == [
        "grasp the drawer handle",
        "move arm left",
        "stop",
        "open the drawer",
    ]
    assert event.command.history().__next__().source is CommandSource.HUMAN_LIVE
    assert list(event.command.history())[-1].source is CommandSource.PLANNER
    recorded = expert_frames[1][39]
    assert (
        event.subtask_before == recorded[FeatureKey.SUBTASK]
        and event.motion_before == recorded[FeatureKey.LANGUAGE_MOTION]
    )
    assert [(s.start_frame, s.end_frame, s.correction_id, s.motion, s.subtask, s.ended_by) for s in log.spans] == [
        (10, 20, stop.id, "stop", "", ENDED_BY_CORRECTION),
        (20, 30, left.id, "move arm left", "", ENDED_BY_RUNTIME),
        (40, length, grasp.id, "", "grasp the drawer handle", ENDED_BY_EPISODE),
    ]
    assert log.episode(1) == ([], [])
    records = read_episode_log(root)
    assert [r.extra for r in records] == [
        {"interjections": 3, "intervention_frames": 20 + length - 40},
        {"interjections": 0, "intervention_frames": 0},
    ]
    assert check_dataset(root, video_frames=False).ok
    summary = summarize(root)  # what `tiers dataset show` prints
    assert [e.interjections for e in summary.episode_list] == [3, 0]
    assert (summary.correction_events, summary.intervention_spans) == (3, 3)
    interjections = next(entry for entry in summary.language if entry.column == INTERJECTION)
    assert (interjections.distinct, interjections.frames) == (3, 3)


def test_bad_corrections_are_refused_with_the_reason(
    tmp_path: Path, expert_frames: tuple[CorrectionsSpec, list[Any]]
) -> None:
    spec, _ = expert_frames
    with CorrectionsWriter(tmp_path / "bad", spec) as writer:
        planned = LanguageCommand("move arm up", CommandStyle.MOTION, CommandSource.PLANNER, timestamp=1.0)
        with pytest.raises(ContractError, match="source 'planner'"):
            writer.interject(planned)
        writer.interject(_command("stop", CommandStyle.STOP, 2.0))
        with pytest.raises(ContractError, match=r"t=1.0 s arrives before the previous one \(t=2.0 s\)"):
            writer.interject(_command("go on", CommandStyle.CORRECTION, 1.0))
    (tmp_path / "log").mkdir()
    (tmp_path / "log/meta").mkdir()
    (tmp_path / "log/meta/info.json").write_text(json.dumps({"total_episodes": 1}))
    (tmp_path / "log" / CORRECTIONS_LOG).write_text('{"kind": "mystery", "episode_index": 0}\n')
    with pytest.raises(ContractError, match=r"tiers_corrections.jsonl:1: .*unknown kind 'mystery'"):
        read_corrections(tmp_path / "log")


def test_mixing_draws_the_requested_share_from_intervention_frames(
    corrections_dataset: tuple[Path, list[LanguageCommand]], state_dataset: Path
) -> None:
    root, _ = corrections_dataset
    windows_config = {"n_obs_steps": 1, "horizon": 4}
    original = DatasetLoadingConfig(root=state_dataset, **windows_config)  # type: ignore[arg-type]
    corrections = DatasetLoadingConfig(root=root, **windows_config)  # type: ignore[arg-type]
    mix = CorrectionsMixConfig(corrections_fraction=0.25, num_samples=2000, seed=3)
    windows, sampler, stats = load_mixed_training_dataset(original, corrections, mix)
    first = len(windows.parts[0])
    drawn = list(sampler)
    from_corrections = [index - first for index in drawn if index >= first]
    assert 0.2 < len(from_corrections) / len(drawn) < 0.3
    log = read_corrections(root)
    inside = {span.start_frame + offset for span in log.spans for offset in range(span.frames)}  # episode 0 only
    assert set(from_corrections) <= inside

    batch = next(iter(torch.utils.data.DataLoader(windows, batch_size=4, sampler=[0, first + 10, first + 45, 1])))
    assert batch["source_dataset"].tolist() == [0, 1, 1, 0]
    assert batch[ACTIVE_CORRECTION] == ["", "stop", "grasp the drawer handle", ""]
    assert batch[FeatureKey.ACTION].shape == (4, 4, 8)
    assert set(stats[FeatureKey.STATE]) == {"mean", "std", "min", "max"}
    assert torch.all(stats[FeatureKey.STATE]["std"] >= 0)

    with pytest.raises(ContractError, match="horizon is 4 and 8"):
        load_mixed_training_dataset(original, DatasetLoadingConfig(root=root, n_obs_steps=1, horizon=8), mix)
    with pytest.raises(ContractError, match="no intervention span"):
        load_mixed_training_dataset(corrections, original, mix)  # the expert recording has no corrections


WRITER_SCRIPT = """
import sys, time
import tiers.sim
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.datasets.corrections import CorrectionsWriter
from tiers.datasets.features import DatasetSpec
from tiers.datasets.recorder import EpisodeRecord
from tiers.apps.record import roll_out_expert

env = tiers.sim.make(["open/drawer/0"], render=False)
writer = CorrectionsWriter(sys.argv[1], DatasetSpec.from_embodiment(env.embodiment, cameras=False))
spec = writer.spec
frames = roll_out_expert(env, "open/drawer/0", 0, spec).frames  # one real episode, replayed
for episode in range(100):
    for index, frame in enumerate(frames):
        if index == 5:
            writer.interject(LanguageCommand("stop", CommandStyle.STOP, CommandSource.HUMAN_LIVE, index * 0.05))
        writer.add_frame(frame)
        time.sleep(0.002)  # a control tick: leaves time to be killed mid-episode
    writer.save_episode(EpisodeRecord("open/drawer/0", "open the kitchen drawer", episode, True, len(frames)))
"""


def test_a_killed_writer_keeps_every_finished_episode_and_its_corrections(
    tmp_path: Path, expert_frames: tuple[CorrectionsSpec, list[Any]]
) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "killed"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER_SCRIPT))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, str(script), str(root)], env=env, stderr=subprocess.PIPE)
    start = time.monotonic()

    def committed() -> int:
        info = root / "meta/info.json"
        return int(json.loads(info.read_text())["total_episodes"]) if info.is_file() else 0

    try:
        while not (committed() >= 2 and staging.staging_dir(root).exists()):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() - start < 120, "the writer did not reach the kill point in time"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL

    # resuming rolls an interrupted commit forward (if the kill hit the renames) and drops the unfinished episode
    spec = expert_frames[0]
    CorrectionsWriter(root, spec, resume=True).close()
    episodes = committed()
    assert episodes >= 2
    dataset = LeRobotDataset("local/killed", root=root, video_backend="pyav")
    assert dataset.num_episodes == episodes and len(dataset) == episodes * len(expert_frames[1])
    log = read_corrections(root)
    assert [(e.episode_index, e.frame_index) for e in log.events] == [(i, 5) for i in range(episodes)]
    assert Counter(s.episode_index for s in log.spans) == Counter(range(episodes))
    assert check_dataset(root, video_frames=False).findings == []
