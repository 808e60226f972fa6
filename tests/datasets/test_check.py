"""`tiers dataset check`: passes on recorded datasets, names the episode, frame and feature of each problem."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiers.datasets.check import check_dataset


def test_a_recorded_camera_dataset_passes(
    camera_dataset: Path, parse_cli: Callable[..., argparse.Namespace], capsys: pytest.CaptureFixture[str]
) -> None:
    from tiers.cli import dataset

    report = check_dataset(camera_dataset)
    assert report.findings == [] and report.episodes == 2
    assert {"finite", "timestamps", "videos", "stats"} <= set(report.checks_run)
    assert dataset.run(parse_cli("dataset", "check", str(camera_dataset))) == 0
    assert "OK" in capsys.readouterr().out


def _corrupt_copy(source: Path, tmp_path: Path) -> Path:
    root = tmp_path / "corrupt"
    shutil.copytree(source, root)
    return root


def test_a_nan_is_named_by_episode_frame_and_feature(
    state_dataset: Path,
    tmp_path: Path,
    parse_cli: Callable[..., argparse.Namespace],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tiers.cli import dataset

    root = _corrupt_copy(state_dataset, tmp_path)
    path = root / "data/chunk-000/file-001.parquet"  # episode 1
    table = pq.read_table(path)
    actions = np.stack(table.column("action").to_numpy(zero_copy_only=False)).astype(np.float32)
    actions[5, 3] = np.nan
    column = pa.FixedSizeListArray.from_arrays(pa.array(actions.ravel()), actions.shape[1])
    pq.write_table(table.set_column(table.schema.get_field_index("action"), "action", column), path)

    report = check_dataset(root)
    assert not report.ok
    (finding,) = report.errors
    assert (finding.check, finding.episode, finding.frame, finding.feature) == ("finite", 1, 5, "action")
    assert finding.file == "data/chunk-000/file-001.parquet" and "component(s) [3]" in finding.message

    assert dataset.run(parse_cli("dataset", "check", str(root), "--json")) == 1
    output = json.loads(capsys.readouterr().out)
    assert output["ok"] is False and output["findings"][0]["feature"] == "action"


def test_broken_timestamps_indices_and_stats_are_named(state_dataset: Path, tmp_path: Path) -> None:
    root = _corrupt_copy(state_dataset, tmp_path)
    path = root / "data/chunk-000/file-002.parquet"  # episode 2
    table = pq.read_table(path)
    stamps = table.column("timestamp").to_numpy().copy()
    stamps[10] = stamps[9]  # a repeated timestamp
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", pa.array(stamps))
    pq.write_table(table, path)
    stats = json.loads((root / "meta/stats.json").read_text())
    del stats["observation.ee_pose"]
    (root / "meta/stats.json").write_text(json.dumps(stats))
    info = json.loads((root / "meta/info.json").read_text())
    info["total_episodes"] = 4
    (root / "meta/info.json").write_text(json.dumps(info))

    errors = {(f.check, f.episode, f.frame, f.feature) for f in check_dataset(root).errors}
    assert ("timestamps", 2, 10, "timestamp") in errors
    assert ("stats", None, None, "observation.ee_pose") in errors
    assert any(check == "episodes" for check, *_ in errors)  # 3 episodes in the metadata, info.json says 4


def test_an_unreadable_parquet_file_and_a_missing_folder(state_dataset: Path, tmp_path: Path) -> None:
    root = _corrupt_copy(state_dataset, tmp_path)
    path = root / "data/chunk-000/file-000.parquet"
    path.write_bytes(path.read_bytes()[:-100])  # a footerless file, as a killed lerobot writer leaves
    report = check_dataset(root)
    assert any(f.check == "data" and f.file == "data/chunk-000/file-000.parquet" for f in report.errors)
    empty = check_dataset(tmp_path / "nothing")
    assert [f.file for f in empty.errors] == ["meta/info.json"]
