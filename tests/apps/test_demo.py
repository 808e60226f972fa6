"""``tiers demo`` end to end at toy sizes: every step runs for real and the report shows every mode."""

from __future__ import annotations

import json
import re
from html import escape
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
    config = DemoConfig(
        tasks=["open/drawer/0"], eval_tasks=1, planner_tasks=2, videos=0, seed=5, hierarchies=["learned_all"]
    )
    out = tmp_path / "quick"
    summary = run_demo(out, config, quick=True, echo=lambda text: None)
    assert summary["quick"] and summary["checkpoint"].endswith("kitchen_paths_beso") and "training" not in summary
    modes = ["planner", "control", "integrated", "corrections", "offline_paths", "hierarchy_learned_all"]
    steps = summary["steps"]
    assert [step["name"] for step in steps][:4] == [
        "planner mode",
        "control mode",
        "integrated mode",
        "corrections mode",
    ]
    for step, mode in zip(steps, modes, strict=True):  # each step ran, and its command writes that mode's results
        assert step["code"] == 0 and step["seconds"] > 0
        assert step["command"].startswith("tiers eval --mode ") and step["command"].endswith(f"eval/{mode}")

    rows = {row["mode"]: row for row in summary["modes"]}
    assert list(rows) == modes
    expected_episodes = {"planner": 2, "control": 1, "integrated": 1, "corrections": 1, "offline_paths": 1}
    expected_episodes["hierarchy_learned_all"] = 1  # a --hierarchy of the user's, beside the reference
    for mode, row in rows.items():
        results = json.loads((out / "eval" / mode / "results.json").read_text())
        episodes = results["episodes"]
        assert len(episodes) == row["episodes"] == expected_episodes[mode], mode
        for episode in episodes:  # every episode ran for real: a task, a verdict, the steps it took
            assert isinstance(episode["success"], bool) and episode["seed"] >= 5, (mode, episode)
            if mode != "planner":
                assert episode["task_id"] == "open/drawer/0" and episode["steps"] > 0, (mode, episode)
                assert episode["success"] or episode["reason"], (mode, episode)  # a failure says why
        # the rates are those of the episode list, in the summary, the mode's results and its own summary
        successes = sum(episode["success"] for episode in episodes)
        overall = results["summary"]["overall"]
        assert overall["episodes"] == len(episodes) and overall["successes"] == successes, mode
        assert row["success"] == pytest.approx(successes / len(episodes)) == overall["success_rate"], mode
        assert row["success_train"] == row["success"] and row["success_held_out"] is None, mode
        if mode != "planner":
            assert 0 < row["control_step_p50_ms"] <= row["control_step_p99_ms"], mode
    # every exactly matched plan has all its steps right, and the grammar planner reads the benchmark's own grammar
    assert rows["planner"]["step_accuracy"] >= rows["planner"]["success"] >= 0.9
    assert rows["offline_paths"]["success"] == 1.0  # the IK reference opens the drawer

    # the report files exist, show every mode, and every figure they name exists
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary, default=str))
    markdown = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for row in rows.values():
        assert f"| {row['label']} | {row['episodes']} |" in markdown and escape(row["label"]) in page
    named = set(re.findall(r"figures/[\w.]+\.png", markdown)) | set(re.findall(r'src="(figures/[^"]+)"', page))
    assert "figures/success_by_mode.png" in named
    assert all((out / figure).is_file() for figure in named), named
    assert "learning_curve" not in markdown + page  # the quick run trains nothing
