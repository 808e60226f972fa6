"""The scripted expert executing a whole plan in a kitchen env: the one episode loop that ``tiers eval``
(controller ``expert``) and ``tiers record`` share.

One episode from the env's current state, timeline (dt = 1 / control rate)::

    t:        0        1        ...  T-1        T
    obs:      o_0      o_1           o_{T-1}    o_T (returned with the env's last info)
    expert:   a_0      a_1           a_{T-1}
    on_step(o_t, step_t) runs once per t < T, after the expert chose a_t and before the env applies it

The episode ends when the task succeeds (the env terminates), when it is truncated, or ``settle_steps``
after the expert reports its plan done or given up, so the scene settles before it is judged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tiers.commands.subtasks import Subtask
from tiers.core.observation import Observation
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.expert import ExpertStep, ScriptedExpert

SETTLE_STEPS = 10  # control steps (0.5 s) the expert holds still after finishing, before judging

# called once per control step with (the observation the expert acted on, the expert's step)
StepObserver = Callable[[Observation, ExpertStep], None]


@dataclass
class ExpertRollout:
    """How an expert episode ended.

    Attributes:
        observation: o_T, the observation after the last action.
        info: the env's ``info`` after the last step (``success``, ``reason``, ...).
        steps: T, the control steps taken.
    """

    observation: Observation
    info: dict[str, Any]
    steps: int


def run_expert_plan(
    env: KitchenEnv,
    expert: ScriptedExpert,
    plan: Sequence[Subtask],
    observation: Observation,
    *,
    settle_steps: int = SETTLE_STEPS,
    on_step: StepObserver | None = None,
) -> ExpertRollout:
    """Run ``expert`` through ``plan`` from the env's current (just reset) state; see the module docstring.

    Args:
        env: the kitchen env, reset to the episode's start.
        expert: the scripted expert of ``env``'s backend; it is reset here.
        plan: the subtasks to execute (the gold plan, or a planner's).
        observation: o_0, the observation of the reset state.
        settle_steps: control steps run after the expert is done, before the episode is judged.
        on_step: called every control step (to record frames or film the episode).
    """
    expert.reset(plan, env.scene_state(), observation)
    info: dict[str, Any] = {"success": False, "reason": "no step taken"}
    finished_at: int | None = None
    steps = 0
    while True:
        step = expert.act(observation, env.scene_state())
        if on_step is not None:
            on_step(observation, step)
        observation, _, terminated, truncated, info = env.step(step.action)
        steps += 1
        if step.done and finished_at is None:
            finished_at = steps
        if terminated or truncated or (finished_at is not None and steps - finished_at >= settle_steps):
            break
    return ExpertRollout(observation=observation, info=info, steps=steps)
