"""The corrections mode: a simulated person corrects a hierarchy through the runtime's language interface."""

from __future__ import annotations

import pytest

from tiers.core.features import CommandSource, CommandStyle
from tiers.policies.hierarchy.runtime import HierarchyRuntime
from tiers.sim.evaluation.corrector import CorrectorSettings, SimulatedCorrector
from tiers.sim.evaluation.hierarchy_episode import run_hierarchy_episode
from tiers.sim.evaluation.planning import ShuffledGoldPlan
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.expert_driver import ExpertDriver
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


def test_a_wrong_plan_fails_alone_and_succeeds_with_the_simulated_corrector(env: KitchenEnv) -> None:
    task = get_task(TASK)
    alone = run_hierarchy_episode(env, _wrong_order_runtime(env), task, seed=0, max_steps=1200)
    assert not alone.result.success

    runtime = _wrong_order_runtime(env)
    ticks: list[str | None] = []
    corrector = SimulatedCorrector(task, CorrectorSettings(grace_s=0.5))
    helped = run_hierarchy_episode(
        env, runtime, task, seed=0, corrector=corrector, max_steps=1500, on_tick=lambda obs, step, said: ticks.append(said)
    )
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
