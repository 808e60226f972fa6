"""SIGKILL in the middle of a recording loses at most the episode in progress; the rest loads without repair."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tiers.datasets import staging
from tiers.datasets.check import check_dataset
from tiers.datasets.recorder import read_episode_log

COMMITTED_BEFORE_KILL = 2
DEADLINE = 120.0  # s, generous for a loaded 2-core machine


def _committed(root: Path) -> int:
    info = root / "meta/info.json"
    return int(json.loads(info.read_text())["total_episodes"]) if info.is_file() else 0


def test_sigkill_mid_episode_keeps_every_finished_episode(
    tmp_path: Path, tiers_command: Callable[..., list[str]]
) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "killed"
    argv = ["record", "--out", str(root), "--num-episodes", "8", "--tasks", "open/drawer/0", "--no-cameras"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(tiers_command(*argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.monotonic()
    try:
        # kill while lerobot is writing the next episode into the staging folder (its files are open then)
        while not (_committed(root) >= COMMITTED_BEFORE_KILL and staging.staging_dir(root).exists()):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() - start < DEADLINE, "the recording did not reach the kill point in time"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    committed = _committed(root)
    assert COMMITTED_BEFORE_KILL <= committed < 8

    # lerobot opens the dataset as left by the kill, with no repair step
    dataset = LeRobotDataset("local/killed", root=root, video_backend="pyav")
    assert dataset.num_episodes == committed
    lengths = [int(n) for n in dataset.meta.episodes["length"]][:committed]
    assert len(dataset) == sum(lengths) == dataset.meta.total_frames
    assert dataset[len(dataset) - 1]["episode_index"].item() == committed - 1
    kept = [r.episode_index for r in read_episode_log(root)]
    assert kept[:committed] == list(range(committed))
    report = check_dataset(root)
    if (staging.work_dir(root) / staging.JOURNAL).exists():
        # killed inside the commit's renames (milliseconds of each episode): the checker names the pending
        # commit and the rows beyond info.json's counts, and the resume below rolls it forward
        assert {f.check for f in report.errors} <= {"commit", "episodes"}, report.errors
        committed += 1
    else:
        # killed while lerobot was writing the staged episode: only tiers' staging folder is left over
        assert report.ok, report.errors
        assert any(f.check == "commit" and "staged" in f.message for f in report.findings)

    # resuming drops the unfinished episode and appends after the committed ones
    resume = tiers_command(*argv[:4], "1", *argv[5:], "--resume")
    subprocess.run(resume, env=env, check=True, capture_output=True, timeout=DEADLINE)
    assert LeRobotDataset("local/killed", root=root, video_backend="pyav").num_episodes == committed + 1
    assert check_dataset(root).findings == []
