"""Corrections injected at seeded random times (``tiers eval --inject-corrections K``): the schedule is a
function of the episode seed, and a hierarchy interrupted by a stop and a resume still completes its task."""

from __future__ import annotations

import itertools

import pytest

from tiers.apps.evaluation.hierarchy_runner import HierarchyEpisodeRunner
from tiers.apps.evaluation.injection import GAP_S, InjectionSettings, draw_schedule
from tiers.apps.evaluation.report import EvalMode
from tiers.apps.evaluation.settings import EpisodeJob, EvalSettings
from tiers.core.errors import ConfigError
from tiers.policies.hierarchy.corrections import CorrectionKind, interpret_correction

TASK = "open/drawer/0"  # one subtask, done in about 8 s by offline_paths from seed 1000
SEED = 1000  # draws two stop + resume pairs for TASK, both while the drawer is being opened


def test_the_schedule_is_a_function_of_the_seed_and_task() -> None:
    settings = InjectionSettings(count=3)
    first = draw_schedule(SEED, TASK, 2, settings)
    assert first == draw_schedule(SEED, TASK, 2, settings)
    others = [draw_schedule(seed, TASK, 2, settings) for seed in range(SEED + 1, SEED + 6)]
    assert any(other != first for other in others)
    assert draw_schedule(SEED, "close/drawer/0", 2, settings) != first  # tasks on one seed are not interrupted alike
    for schedule in [first, *others]:
        times = [correction.time_s for correction in schedule]
        assert times == sorted(times)
        assert sum(correction.kind != "resume" for correction in schedule) == settings.count
        for before, after in itertools.pairwise(schedule):
            if before.kind == "stop":  # a stop is followed by its resume, a few seconds later
                low, high = settings.resume_after_s
                assert after.kind == "resume" and low <= after.time_s - before.time_s <= high + 1e-3
            else:  # corrections never overlap
                assert after.time_s - before.time_s >= GAP_S - 1e-3
        for correction in schedule:  # the runtime reads every phrase as what it is meant to be
            kind = interpret_correction(correction.text, timestamp=correction.time_s).kind
            expected = {"nudge": CorrectionKind.MOTION, "stop": CorrectionKind.STOP, "resume": CorrectionKind.RESUME}
            assert kind is expected[correction.kind]


def test_injection_needs_a_running_hierarchy() -> None:
    with pytest.raises(ConfigError, match="inject"):
        EvalSettings(mode=EvalMode.INTEGRATED, planner="gold_echo", inject_corrections=2)
    with pytest.raises(ConfigError, match="inject"):
        EvalSettings(mode=EvalMode.PLANNER, hierarchy="offline_paths", inject_corrections=2)


def test_a_stopped_and_resumed_hierarchy_still_completes_the_task_and_replays() -> None:
    settings = EvalSettings(mode=EvalMode.INTEGRATED, hierarchy="offline_paths", inject_corrections=2)
    runner = HierarchyEpisodeRunner(settings)
    result = runner(EpisodeJob(0, TASK, SEED))
    injected = result.extra["injected"]
    expected = draw_schedule(SEED, TASK, 1, InjectionSettings(count=2))
    assert [(entry["t"], entry["text"]) for entry in injected] == [(c.time_s, c.text) for c in expected]
    said = [entry for entry in injected if entry["said_at"] is not None]
    assert [entry["kind"] for entry in said][:2] == ["stop", "resume"]  # at least one stop + resume while working
    assert all(entry["applied"] and entry["during"] == "open the drawer" for entry in said)
    assert result.success, result.reason
    # every said correction reached the runtime, with its provenance
    corrections = [e for e in runner.hierarchy.runtime.events if e.kind == "correction"]
    assert [event.detail.split("'")[1] for event in corrections] == [entry["text"] for entry in said]
    again = runner(EpisodeJob(1, TASK, SEED))  # same seed: the same corrections and the same episode
    assert again.extra["injected"] == injected
    assert again.extra["state_digest"] == result.extra["state_digest"] and again.steps == result.steps
