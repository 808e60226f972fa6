"""``tiers improve``: a learned hierarchy, corrections logged by ``tiers run``, fine-tuning, the curve."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tiers.core.errors import ConfigError


def test_improve_fine_tunes_on_logged_corrections_and_writes_the_curve(
    tmp_path: Path, state_dataset: Path, parse_cli: Callable[..., object]
) -> None:
    from tiers.cli import improve, run

    replay = tmp_path / "said.yaml"
    replay.write_text("- {t: 0.5, text: stop}\n- {t: 1.0, text: move up a bit}\n")
    log = tmp_path / "yay"
    args = parse_cli(
        "run", "learned_paths", "--task", "open/drawer/0", "--corrections", str(replay), "--log", str(log),
        "--max-steps", "60",
    )  # fmt: skip
    run.run(args)  # success or not, the episode and its two corrections are logged
    out = tmp_path / "improve"
    code = improve.run(
        parse_cli(
            "improve",
            "--hierarchy",
            "learned_paths",
            "--dataset",
            str(state_dataset),
            "--corrections",
            str(log),
            "--steps",
            "2",
            "--curve",
            "0",
            "-1",
            "--out",
            str(out),
        )
    )
    assert code == 0
    result = json.loads((out / "improve.json").read_text())
    assert result["tasks"] == ["open/drawer/0"]
    points = result["points"]
    assert [p["corrections"] for p in points] == [0, 2] and all(0.0 <= p["success"] <= 1.0 for p in points)
    assert points[0]["checkpoint"].endswith("kitchen_paths_beso")  # k = 0 is the base hierarchy
    assert (Path(points[1]["checkpoint"]) / "model.safetensors").is_file()
    assert (out / "improve_curve.png").is_file()


def test_improve_needs_a_learned_low_tier(tmp_path: Path, parse_cli: Callable[..., object]) -> None:
    from tiers.cli import improve

    with pytest.raises(ConfigError, match="retrains a learned low tier"):
        improve.run(
            parse_cli(
                "improve",
                "--hierarchy",
                "offline_paths",
                "--dataset",
                str(tmp_path),
                "--corrections",
                str(tmp_path),
                "--out",
                str(tmp_path / "out"),
            )
        )
