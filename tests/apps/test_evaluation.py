"""Evaluation plumbing: plan scoring, reference planners, reports and videos, on real files."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from tiers.apps.evaluation.planning import GoldPlanEcho, ShuffledGoldPlan, collect_plan, score_plan
from tiers.apps.evaluation.report import EpisodeError, EpisodeResult, EvalMode, EvalReport, wilson_interval
from tiers.commands.subtasks import Subtask
from tiers.core import Observation
from tiers.core.protocols import HighLevelPlanner
from tiers.services.video import write_video

GOLD = [
    Subtask.parse("open the drawer"),
    Subtask.parse("pick up the apple"),
    Subtask.parse("put the apple in the drawer"),
    Subtask.parse("close the drawer"),
]


def _observation() -> Observation:
    return Observation(
        joint_positions=np.zeros(7),
        joint_velocities=np.zeros(7),
        ee_pose=np.array([0.3, 0, 0.5, 1, 0, 0, 0]),
        gripper_opening=0.08,
        timestamp=0.0,
    )


def test_gold_echo_scores_exactly_and_shuffled_does_not() -> None:
    echo = GoldPlanEcho(GOLD)
    assert isinstance(echo, HighLevelPlanner)
    score = score_plan(collect_plan(echo, "put the apple in the drawer and close it", _observation()), GOLD)
    assert score.exact and score.step_accuracy == 1.0 and score.reason == ""

    shuffled = score_plan(collect_plan(ShuffledGoldPlan(GOLD, seed=3), "…", _observation()), GOLD)
    assert not shuffled.exact
    assert shuffled.step_accuracy < 1.0
    assert shuffled.reason.startswith("step ")


def test_the_gold_plan_replans_a_failure_from_its_sensed_reason() -> None:
    """Control mode recovers as the grammar planner does: a place whose object fell is preceded by a pick."""
    echo = GoldPlanEcho(GOLD)
    echo.reset("put the apple in the drawer and close it")
    observation = _observation()
    handed = [echo.next_command(observation) for _ in range(3)]
    place = handed[2]
    assert place is not None and place.text == "put the apple in the drawer"
    echo.handle_failure(place, "no path: the apple is not in the hand: pick it up first")
    rest = [echo.next_command(observation) for _ in range(4)]
    assert [command.text for command in rest if command is not None] == [
        "pick up the apple", "put the apple in the drawer", "close the drawer",
    ]  # fmt: skip
    assert rest[-1] is None


def test_scoring_normalises_spacing_and_counts_bad_steps() -> None:
    predicted = ["open  the drawer", "grab the apple", "put the apple in the drawer"]
    score = score_plan(predicted, GOLD)
    assert not score.exact
    assert score.step_accuracy == pytest.approx(2 / 4)  # steps 1 and 3 match; 4 is missing
    assert score.reason == "step 2: expected 'pick up the apple', got 'grab the apple' (not a subtask)"
    too_long = score_plan([s.text for s in GOLD] + ["open the cabinet"], GOLD)
    assert not too_long.exact and too_long.step_accuracy == pytest.approx(4 / 5)
    assert "expected '(end of plan)'" in too_long.reason


def test_a_single_step_plan_cannot_be_shuffled_wrong() -> None:
    one = [Subtask.parse("open the cabinet")]
    assert score_plan(collect_plan(ShuffledGoldPlan(one), "open it", _observation()), one).exact


def _report() -> EvalReport:
    episodes = [
        EpisodeResult("t1", "open", "train", "open the drawer", 0, True, steps=40, extra={"step_accuracy": 1.0}),
        EpisodeResult("t2", "open", "held_out", "pull the drawer open", 1, False, "drawer opening 0.3 < 0.8", 80),
        EpisodeResult("t3", "pick_place", "train", "apple in bowl", 2, True, steps=90, extra={"step_accuracy": 0.5}),
    ]
    return EvalReport(EvalMode.CONTROL, "expert", episodes, settings={"seed": 0})


def test_report_summaries() -> None:
    report = _report()
    assert report.overall().success_rate == pytest.approx(2 / 3)
    by_family = report.by("family")
    assert list(by_family) == ["open", "pick_place"]
    assert by_family["open"].success_rate == 0.5
    assert report.by("split")["held_out"].successes == 0
    assert report.overall().mean_extra == {"step_accuracy": 0.75}


def test_report_files(tmp_path: Path) -> None:
    folder = _report().write(tmp_path / "eval")
    data = json.loads((folder / "results.json").read_text())
    assert data["summary"]["overall"]["success_rate"] == pytest.approx(2 / 3)
    assert len(data["episodes"]) == 3 and data["mode"] == "control"
    table = (folder / "summary.md").read_text()
    assert "| open | 2 | 50.0% [9.5, 90.5] | 0 |" in table
    assert data["summary"]["by_family"]["open"]["success_ci95"] == pytest.approx([0.0945, 0.9055], abs=1e-4)
    assert "`t2` (seed 1) 'pull the drawer open': drawer opening 0.3 < 0.8" in table
    assert (folder / "success_by_family.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wilson_intervals_match_known_values_and_stay_in_range() -> None:
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(3, 6) == pytest.approx((0.1876, 0.8124), abs=1e-4)  # a six-task sample pins down little
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _raised() -> EpisodeError:
    try:
        {}["missing"]
    except KeyError as error:
        return EpisodeError.from_exception(error)
    raise AssertionError("unreachable")


def test_an_errored_episode_is_a_failure_counted_apart(tmp_path: Path) -> None:
    error = _raised()
    assert error.type == "KeyError" and error.message == "'missing'"
    assert error.where.endswith(f"test_evaluation.py:{_raised.__code__.co_firstlineno + 2} in _raised")
    assert "Traceback" in error.traceback
    report = _report()
    report.episodes.append(
        EpisodeResult(
            "t4", "open", "train", "open it", 3, False, f"error: KeyError: 'missing' ({error.where})", error=error
        )
    )
    overall = report.overall()
    assert (overall.episodes, overall.successes, overall.errored) == (4, 2, 1)
    folder = report.write(tmp_path)
    data = json.loads((folder / "results.json").read_text())
    assert data["summary"]["overall"]["errored"] == 1 and data["summary"]["by_family"]["open"]["errored"] == 1
    assert data["summary"]["by_family"]["pick_place"]["errored"] == 0
    assert data["episodes"][3]["error"]["type"] == "KeyError"
    assert EpisodeResult.from_dict(data["episodes"][3]) == report.episodes[3]  # results.json round-trips
    table = (folder / "summary.md").read_text()
    assert "| **overall** | 4 | 50.0% [15.0, 85.0] | 1 |" in table
    assert f"## errored (1)\n\n- `t4` (seed 3): KeyError: 'missing' at {error.where}" in table
    assert "## failures (1)" in table  # the errored episode is listed once, under errored


def test_video_round_trip(tmp_path: Path) -> None:
    frames = [np.full((33, 47, 3), 10 * i, dtype=np.uint8) for i in range(12)]
    path = write_video(tmp_path / "rollout.mp4", frames, fps=20)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 12
    assert decoded[0].shape == (34, 48, 3)  # padded to even sizes for yuv420p
    assert abs(int(decoded[5][10, 10, 0]) - 50) <= 3  # lossy, but the content survives
    with pytest.raises(ValueError, match=r"frame 1 is \(8, 8, 3\)"):
        write_video(tmp_path / "bad.mp4", [frames[0], np.zeros((8, 8, 3), np.uint8)], fps=20)
