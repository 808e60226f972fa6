"""`tiers eval` end to end: real episodes in MuJoCo, the real CLI, workers and Ray giving the same results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tiers.apps.evaluation.evaluate import select_tasks
from tiers.apps.evaluation.parallel import ParallelBackend, run_jobs
from tiers.apps.evaluation.planning import ShuffledGoldPlan
from tiers.apps.evaluation.report import EvalMode
from tiers.apps.evaluation.runner import make_runner
from tiers.apps.evaluation.settings import EpisodeJob, EvalSettings
from tiers.commands.subtasks import Action
from tiers.core import ConfigError
from tiers.sim.kitchen.tasks import UnknownTaskError, all_tasks, get_task

# one single-step and one two-step task the expert solves quickly
QUICK_TASKS = ["open/drawer/0", "pick_place/apple-in-bowl/0"]


def _tiers(*args: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "tiers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(executable), *args], capture_output=True, text=True, env=env, timeout=900)


def test_planner_mode_scores_echo_perfect_and_shuffled_lower(tmp_path: Path) -> None:
    echo = _tiers("eval", "--mode", "planner", "--planner", "gold_echo", "--limit", "30", "--out", str(tmp_path / "e"))
    assert echo.returncode == 0, echo.stderr
    echo_summary = json.loads((tmp_path / "e" / "results.json").read_text())["summary"]["overall"]
    assert echo_summary["episodes"] == 30 and echo_summary["success_rate"] == 1.0
    shuffled = _tiers(
        "eval", "--mode", "planner", "--planner", "shuffled", "--limit", "30", "--out", str(tmp_path / "s")
    )
    assert shuffled.returncode == 0, shuffled.stderr
    data = json.loads((tmp_path / "s" / "results.json").read_text())
    assert data["summary"]["overall"]["success_rate"] < 1.0
    assert data["summary"]["overall"]["mean_extra"]["step_accuracy"] < 1.0
    assert "| **overall** | 30 |" in (tmp_path / "s" / "summary.md").read_text()


def test_bad_selection_lists_the_valid_choices() -> None:
    with pytest.raises(ConfigError, match="unknown task family 'juggle'; families: pick_place"):
        select_tasks([], ["juggle"], "all", None)
    with pytest.raises(UnknownTaskError):
        select_tasks(["open/fridge/0"], [], "all", None)
    with pytest.raises(ConfigError, match="unknown controller 'telepathy'; available: expert"):
        EvalSettings(EvalMode.CONTROL, controller="telepathy")
    result = _tiers("eval", "--family", "juggle")
    assert result.returncode == 2
    assert "unknown task family 'juggle'" in result.stderr and "Traceback" not in result.stderr


def test_limit_spreads_tasks_evenly_over_the_families() -> None:
    """``--limit 12`` over two families took 1 open_close task and 11 pick_place ones (issue 16)."""
    families = ["open_close", "pick_place"]
    chosen = select_tasks([], families, "train", 12)
    counts = Counter(get_task(task_id).family.value for task_id in chosen)
    assert counts == {"open_close": 6, "pick_place": 6}
    assert len(set(chosen)) == 12
    # an odd limit: the extra task goes to the first family in TaskFamily order, whatever the flags' order
    odd = select_tasks([], families, "train", 5)
    assert odd == select_tasks([], families[::-1], "train", 5)
    assert Counter(get_task(task_id).family.value for task_id in odd) == {"pick_place": 3, "open_close": 2}
    # a family with fewer tasks than its share gives its turns to the others
    every = select_tasks([], [], "all", None)
    open_close = sum(get_task(t).family.value == "open_close" for t in every)  # the smallest family
    mixed = select_tasks([], families, "all", 2 * open_close + 4)
    assert Counter(get_task(t).family.value for t in mixed) == {"open_close": open_close, "pick_place": open_close + 4}
    # each family's share is evenly spaced over its tasks, not its first ones
    pick_place = [t for t in every if get_task(t).family.value == "pick_place"]
    chosen_pick_place = [t for t in chosen if t in pick_place]
    positions = [pick_place.index(t) for t in chosen_pick_place]
    assert positions[-1] - positions[0] > len(pick_place) // 2


def test_control_mode_with_the_expert_writes_a_report_and_a_video(tmp_path: Path) -> None:
    result = _tiers(
        "eval", "--mode", "control", "--policy", "expert", *[f"--task={t}" for t in QUICK_TASKS],
        "--videos", "1", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert [episode["success"] for episode in data["episodes"]] == [True, True], data["episodes"]
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 10_000
    assert (tmp_path / "success_by_family.png").exists()


def test_integrated_mode_fails_a_wrong_plan() -> None:
    """A shuffled 'open, put inside, close' plan that does not end with closing leaves the drawer open."""
    task = next(t for t in all_tasks() if t.id.startswith("open_place_close/") and "drawer" in t.id)
    seed = next(s for s in range(20) if ShuffledGoldPlan(task.plan, seed=s).plan[-1].action is not Action.CLOSE)
    settings = EvalSettings(EvalMode.INTEGRATED, controller="expert", planner="shuffled")
    (result,) = run_jobs(make_runner, settings, [EpisodeJob(0, task.id, seed=seed)])
    assert not result.success, result
    assert result.extra["plan_exact"] == 0.0


@pytest.mark.parametrize("backend", [ParallelBackend.PROCESS, ParallelBackend.RAY])
def test_same_results_whatever_the_workers(backend: ParallelBackend) -> None:
    settings = EvalSettings(EvalMode.CONTROL, controller="expert")
    jobs = [EpisodeJob(i, task, seed) for i, (task, seed) in enumerate((t, s) for t in QUICK_TASKS for s in (0, 1))]
    serial = run_jobs(make_runner, settings, jobs, workers=1)
    parallel = run_jobs(make_runner, settings, jobs, workers=2, backend=backend)
    key = [(r.task_id, r.seed, r.success, r.steps, round(r.sim_time, 6)) for r in serial]
    assert key == [(r.task_id, r.seed, r.success, r.steps, round(r.sim_time, 6)) for r in parallel]
