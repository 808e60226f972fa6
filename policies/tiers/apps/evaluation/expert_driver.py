"""The scripted expert as a hierarchy low tier, for the kitchen only (it reads privileged scene state).

It executes whatever subtask the hierarchy hands it, so the planner and the correction loop can be
evaluated with a controller that is not the bottleneck (Kitchen-R's "planner with a perfect controller").
It is named for what it is: a privileged reference, never a policy that runs on a robot.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from tiers.commands.subtasks import Subtask
from tiers.core.errors import ContractError
from tiers.core.observation import Observation
from tiers.core.protocols import MidLevelPlan
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.expert import ExpertStep, ScriptedExpert


class ExpertDriver:
    """A :class:`tiers.core.protocols.LowTierDriver` running the scripted expert in a kitchen env."""

    def __init__(self, env: KitchenEnv) -> None:
        self.env = env
        self._expert: ScriptedExpert | None = None
        self._last: ExpertStep | None = None
        self.failure: str | None = None  # why the expert gave up the current subtask, if it did

    def reset(self) -> None:
        """A new episode: the next ``start`` builds the expert's motion from the new scene."""
        self._last = None
        self.failure = None

    def start(self, plan: MidLevelPlan, observation: Observation) -> None:
        """Execute the subtask ``plan.command.text`` (kitchen grammar) from the current scene."""
        if self._expert is None:
            self._expert = ScriptedExpert.from_kitchen(self.env.backend)  # type: ignore[arg-type]
        try:
            subtask = Subtask.parse(plan.command.text)
        except ContractError as error:
            raise ContractError(f"the scripted expert executes kitchen subtasks only: {error}") from error
        self._expert.reset([subtask], self.env.scene_state(), observation)
        self._last = None
        self.failure = None

    def act(self, observation: Observation) -> NDArray[np.float32]:
        if self._expert is None:
            raise ContractError("ExpertDriver.act() before start()")
        self._last = self._expert.act(observation, self.env.scene_state())
        if self._expert.failure is not None:
            self.failure = self._expert.failure.reason
        return self._last.action

    def finished(self, observation: Observation) -> bool:
        return self._last is not None and self._last.done

    def drop_queued_actions(self) -> None:
        """The expert re-plans its motion from the measured pose at every ``start``; nothing is queued."""
