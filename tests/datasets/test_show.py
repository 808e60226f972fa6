"""``tiers dataset show`` on real recordings: the counts it prints, its JSON, one episode's video, sheet and plot."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tiers.cli import dataset as dataset_cli
from tiers.core.errors import ConfigError, ContractError
from tiers.datasets.language_motion import runs
from tiers.datasets.recorder import read_episode_log

ParseCli = Callable[..., argparse.Namespace]


def _recorded(root: Path) -> dict[int, list[str]]:
    """Episode index -> per-frame language motions, read straight from the data files."""
    episodes: dict[int, list[str]] = {}
    for path in sorted(root.glob("data/*/*.parquet")):
        table = pq.read_table(path, columns=["episode_index", "language_motion"]).to_pydict()
        for episode, motion in zip(table["episode_index"], table["language_motion"], strict=True):
            episodes.setdefault(int(episode), []).append(motion)
    return episodes


def test_show_prints_the_counts_of_a_recorded_dataset(
    state_dataset: Path, parse_cli: ParseCli, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dataset_cli.run(parse_cli("dataset", "show", str(state_dataset), "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    info = json.loads((state_dataset / "meta/info.json").read_text())
    recorded = _recorded(state_dataset)
    assert (summary["episodes"], summary["frames"], summary["fps"]) == (3, info["total_frames"], 20)
    assert [e["frames"] for e in summary["episode_list"]] == [len(recorded[i]) for i in range(3)]
    assert [e["success"] for e in summary["episode_list"]] == [r.success for r in read_episode_log(state_dataset)]
    assert [e["motions"] for e in summary["episode_list"]] == [len(runs(recorded[i])) for i in range(3)]
    assert [e["subtasks"] for e in summary["episode_list"]] == [1, 1, 1]  # "open the drawer"
    assert summary["tasks"] == [["open the kitchen drawer", 3]]
    features = {f["key"]: (f["dtype"], f["shape"]) for f in summary["features"]}
    assert features["observation.state"] == ("float32", [8]) and features["action"] == ("float32", [8])
    motions = next(entry for entry in summary["language"] if entry["column"] == "language_motion")
    assert motions["frames"] == summary["frames"] and motions["distinct"] == len(
        {m for e in recorded.values() for m in e}
    )

    assert dataset_cli.run(parse_cli("dataset", "show", str(state_dataset))) == 0
    printed = capsys.readouterr().out
    assert f"3 episodes, {info['total_frames']} frames, 20 fps" in printed
    assert "success 100.0%" in printed and "open the kitchen drawer" in printed and "language_motion" in printed


def test_show_one_episode_writes_a_video_a_contact_sheet_and_a_plot(
    camera_dataset: Path, parse_cli: ParseCli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import av
    from PIL import Image

    outputs = {name: tmp_path / name for name in ("episode.mp4", "sheet.png", "plot.png")}
    files = ["--video", str(outputs["episode.mp4"]), "--sheet", str(outputs["sheet.png"])]
    args = parse_cli(
        "dataset", "show", str(camera_dataset), "--episode", "1", *files, "--plot", str(outputs["plot.png"])
    )
    assert dataset_cli.run(args) == 0
    printed = capsys.readouterr().out
    assert "episode 1: open the kitchen drawer" in printed and "open the drawer" in printed
    length = len(_recorded(camera_dataset)[1])
    with av.open(str(outputs["episode.mp4"])) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        assert stream.width == 3 * 128 and stream.height > 3 * 128  # upscaled frame + caption band
    assert decoded == length
    sheet = Image.open(outputs["sheet.png"])
    assert sheet.size[0] == 4 * 2 * 128 and sheet.size[1] > 2 * 2 * 128  # 8 tiles, 4 columns, scale 2
    assert Image.open(outputs["plot.png"]).size[0] > 600


def test_show_names_what_is_wrong(state_dataset: Path, parse_cli: ParseCli, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--video needs --episode"):
        dataset_cli.run(parse_cli("dataset", "show", str(state_dataset), "--video", str(tmp_path / "x.mp4")))
    with pytest.raises(ContractError, match=r"no episode 7; it has episodes 0..2"):
        dataset_cli.run(parse_cli("dataset", "show", str(state_dataset), "--episode", "7"))
    with pytest.raises(ContractError, match="has no camera to show"):
        dataset_cli.run(
            parse_cli("dataset", "show", str(state_dataset), "--episode", "0", "--sheet", str(tmp_path / "s.png"))
        )
    with pytest.raises(ContractError, match=r"meta/info\.json: not found"):
        dataset_cli.run(parse_cli("dataset", "show", str(tmp_path)))
