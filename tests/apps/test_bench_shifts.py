"""The frozen-policy test-time-shift suite on one scene, three arms, a short step limit (tiny)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tiers.apps.bench.shifts import Arm, arm_overrides, run_shift_benchmark, shift_figures, shift_scenes
from tiers.sim.kitchen.shifts import Shift

MAX_STEPS = 40  # two action chunks per subtask start are enough to see sampling and guidance


def test_arms_differ_only_in_the_guidance_weights() -> None:
    assert arm_overrides(Arm.UNSTEERED, vls_weight=10.0) == [
        "mid.settings.tracking_weight=0.0",
        "mid.settings.vls_weight=0.0",
    ]
    assert arm_overrides(Arm.PATH_TRACKING, vls_weight=10.0) == ["mid.settings.vls_weight=0.0"]
    assert arm_overrides(Arm.VLS, vls_weight=10.0) == ["mid.settings.vls_weight=10.0"]


def test_shift_scenes_skip_seeds_that_cannot_host_the_obstacle() -> None:
    seeds = list(range(6))
    scenes, skipped = shift_scenes(seeds, pairs=(("apple", "bowl"),), shifts=(Shift.OBSTACLE, Shift.CLUTTER))
    obstacle = [scene for scene in scenes if scene.shift is Shift.OBSTACLE]
    assert len(obstacle) + skipped["obstacle"] == len(seeds) and skipped["clutter"] == 0
    assert all(scene.task.id.startswith("pick_place/apple-") and not scene.task.held_out for scene in scenes)
    for scene in scenes:  # painted as the instruction says ("the green bowl")
        for name, colour in scene.task.requirements.colors.items():
            assert scene.layout.objects[name].color == colour


def test_three_paired_arms_on_one_shifted_scene() -> None:
    from tiers.cli.bench import _shift_table

    scenes, skipped = shift_scenes([0], pairs=(("apple", "bowl"),), shifts=(Shift.CLUTTER,))
    progress: list[tuple[int, int]] = []
    episodes = run_shift_benchmark(
        scenes, max_steps=MAX_STEPS, on_episode=lambda done, total, _: progress.append((done, total))
    )
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert [e.arm for e in episodes] == ["unsteered", "path_tracking", "vls"]
    assert {(e.shift, e.task_id, e.seed) for e in episodes} == {("clutter", scenes[0].task.id, 0)}  # paired
    by_arm = {e.arm: e for e in episodes}
    for episode in episodes:
        assert 0 < episode.steps <= MAX_STEPS and episode.chunk_ms and min(episode.chunk_ms) > 0
        assert episode.commands[0].startswith("pick up the apple: path of")  # the mid tier planned on the scene
    # the guidance the sampler evaluated: none unsteered, the path reward, then the path + the staged VLS rewards
    assert by_arm["unsteered"].reward_calls == {}
    assert set(by_arm["path_tracking"].reward_calls) == {"track"}
    vls_calls = by_arm["vls"].reward_calls
    assert set(vls_calls) == {"track", "staged"} and vls_calls["staged"] == vls_calls["track"] > 0

    figures = shift_figures(episodes, skipped)
    assert figures["frozen_episodes"] == 3 and figures["frozen_scenes/clutter"] == 1
    assert figures["frozen_skipped/clutter"] == 0
    for arm in ("unsteered", "path_tracking", "vls"):
        assert figures[f"frozen_success/clutter/{arm}"] in (0.0, 1.0)
        assert figures[f"frozen_chunk_ms_p95/{arm}"] >= figures[f"frozen_chunk_ms_mean/{arm}"] * 0.5 > 0
    assert figures["frozen_latency_ratio/unsteered"] == 1.0
    # one reward evaluation per term and sampler step: the VLS arm evaluates twice the path-tracking arm's
    per_chunk = figures["frozen_reward_calls_per_chunk/path_tracking"]
    assert per_chunk >= 1 and figures["frozen_reward_calls_per_chunk/vls"] == pytest.approx(2 * per_chunk)
    assert figures["frozen_chunk_ms_mean/vls"] > figures["frozen_chunk_ms_mean/unsteered"]  # gradients cost time
    assert isinstance(figures["frozen_goal_met/vls"], bool) and len(figures["frozen_episode_log"]) == 3

    buffer = io.StringIO()
    Console(file=buffer, width=160).print(_shift_table(figures))
    text = buffer.getvalue()
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") == 5}
    assert "all/vls" not in text  # columns are the arms
    ratio = [cell.strip() for cell in rows["latency ratio to unsteered"].split("│")[2:5]]
    assert ratio[0] == "1.00" and all(ratio)
    assert rows["reward evaluations per chunk"].split("│")[2].strip() == "0.0"
    assert "success clutter (1 scenes)" in rows
