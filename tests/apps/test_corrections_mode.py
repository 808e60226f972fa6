"""The corrections mode: a simulated person corrects a hierarchy through the runtime's language interface."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiers.apps.evaluation.corrections_log import EpisodeCorrectionsLog
from tiers.apps.evaluation.corrector import CorrectorSettings, SimulatedCorrector
from tiers.apps.evaluation.expert_driver import ExpertDriver
from tiers.apps.evaluation.hierarchy_episode import run_hierarchy_episode
from tiers.apps.evaluation.planning import ShuffledGoldPlan
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.observation import Observation
from tiers.datasets.corrections import read_corrections
from tiers.policies.hierarchy.runtime import HierarchyRuntime, RuntimeStep
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.tasks import get_task

TASK = "place_close/cup-in-drawer/0"  # gold: pick up the cup, put the cup in the drawer, close the drawer


@pytest.fixture(scope="module")
def env() -> KitchenEnv:
    kitchen = KitchenEnv(TASK, render=False)
    yield kitchen
    kitchen.close()


def _wrong_order_runtime(env: KitchenEnv) -> HierarchyRuntime:
    task = get_task(TASK)
    planner = ShuffledGoldPlan(task.plan, seed=0)  # closes the drawer before putting the cup in
    assert [step.text for step in planner.plan] != [step.text for step in task.plan]
    return HierarchyRuntime(planner, ExpertDriver(env), embodiment=env.embodiment)


def test_a_wrong_plan_fails_alone_and_succeeds_with_the_simulated_corrector(env: KitchenEnv, tmp_path: Path) -> None:
    task = get_task(TASK)
    alone = run_hierarchy_episode(env, _wrong_order_runtime(env), task, seed=0, max_steps=1200)
    assert not alone.result.success

    runtime = _wrong_order_runtime(env)
    ticks: list[str | None] = []
    log = EpisodeCorrectionsLog(tmp_path / "corrections", runtime, source="shuffled+expert")

    def on_tick(observation: Observation, step: RuntimeStep, said: str | None) -> None:
        ticks.append(said)
        log(observation, step, said)

    corrector = SimulatedCorrector(task, CorrectorSettings(grace_s=0.5))
    helped = run_hierarchy_episode(env, runtime, task, seed=0, corrector=corrector, max_steps=1500, on_tick=on_tick)
    assert log.end_episode(helped.result) == 0
    log.close()
    assert helped.result.success, helped.result.reason
    assert helped.corrections and helped.corrections[0][1] == "no, put the cup in the drawer first"
    assert helped.result.extra["corrections"] == len(helped.corrections)
    # the runtime logged each correction with its provenance, replacing the command in force
    logged = [event.command for event in runtime.events if event.kind == "correction" and event.command]
    assert logged and all(command.source is CommandSource.SIMULATED_CORRECTOR for command in logged)
    assert logged[0].style is CommandStyle.SUBTASK and logged[0].text == "put the cup in the drawer"
    assert logged[0].replaces is not None and logged[0].replaces.text == "close the drawer"
    # the tick observer saw each correction once, on the tick after it was said
    assert [said for said in ticks if said] == [text for _, text in helped.corrections]
    # and the episode is a corrections dataset: every frame, each interjection at the frame it arrived
    stored = read_corrections(tmp_path / "corrections")
    events, spans = stored.episode(0)
    assert [event.command.text for event in events] == [command.text for command in logged]
    assert all(event.command.source is CommandSource.SIMULATED_CORRECTOR for event in events)
    assert [span.text for span in spans] == [command.text for command in logged]
    assert spans[-1].ended_by == "episode_end" and spans[-1].end_frame == helped.result.steps
    first_said = ticks.index(helped.corrections[0][1])
    assert events[0].frame_index == first_said
