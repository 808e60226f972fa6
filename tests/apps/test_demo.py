"""``tiers demo`` end to end at toy sizes: every step runs for real and the report shows every mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiers.apps.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_the_demo_records_trains_evaluates_every_mode_and_reports(tmp_path: Path) -> None:
    config = DemoConfig(
        tasks=["open/drawer/0"], episodes=2, train_steps=4, eval_tasks=1, planner_tasks=2, videos=1, seed=5
    )
    out = tmp_path / "demo"
    summary = run_demo(out, config, echo=lambda text: None)
    assert [step["name"] for step in summary["steps"]] == [
        "record",
        "train",
        "planner mode",
        "control mode",
        "integrated mode",
        "corrections mode",
        "reference: offline IK hierarchy",
    ]
    modes = {row["mode"]: row for row in summary["modes"]}
    assert set(modes) == {"planner", "control", "integrated", "corrections", "offline_paths"}
    assert modes["planner"]["episodes"] == 2 and modes["control"]["episodes"] == 1
    assert modes["offline_paths"]["success"] == 1.0  # the IK reference opens the drawer
    assert modes["control"]["control_step_p50_ms"] is not None and modes["control"]["videos"]
    assert (out / "figures" / "success_by_mode.png").is_file() and (out / "figures" / "learning_curve.png").is_file()
    report = (out / "report.html").read_text()
    assert "<video" in report and "tiers record" in report
    assert json.loads((out / "summary.json").read_text())["modes"] == summary["modes"]
    assert "| controller alone" in (out / "report.md").read_text()


def test_the_quick_demo_evaluates_the_shipped_checkpoint_in_every_mode(tmp_path: Path) -> None:
    config = DemoConfig(tasks=["open/drawer/0"], eval_tasks=1, planner_tasks=2, videos=0, seed=5)
    summary = run_demo(tmp_path / "quick", config, quick=True, echo=lambda text: None)
    assert [step["name"] for step in summary["steps"]][:2] == ["planner mode", "control mode"]
    assert {row["mode"] for row in summary["modes"]} == {
        "planner",
        "control",
        "integrated",
        "corrections",
        "offline_paths",
    }
    assert summary["checkpoint"].endswith("kitchen_paths_beso")
    assert (tmp_path / "quick" / "report.html").is_file()
