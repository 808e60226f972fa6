"""The three tier interfaces, as structural ``typing.Protocol`` s.

A hierarchy is a high-tier planner, an optional mid-tier planner and a low-tier policy::

    instruction ──> HighLevelPlanner ──LanguageCommand──> MidLevelPlanner ──MidLevelPlan──> LowLevelPolicy ──> actions
        (events / ~1 Hz)                (per subtask: EEPath, Guidance)          (control rate, action chunks)

A hierarchy runs its low tier through a :class:`LowTierDriver` (a learned policy, a path follower, a scripted
controller): one command at a time, one action per control tick.

The low tier follows lerobot's policy interface, so lerobot policies are low tiers through a thin adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from tiers.core.ee_path import EEPath
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation

if TYPE_CHECKING:
    # types only: a hierarchy whose tiers need no torch (an ONNX Runtime low tier on a robot computer) runs
    # without torch installed
    import torch

    from tiers.core.guidance import Guidance


@runtime_checkable
class HighLevelPlanner(Protocol):
    """Turns an instruction and what the robot sees into the next thing to do."""

    def reset(self, instruction: str) -> None:
        """Start a new episode for ``instruction``; forget previous plans."""
        ...

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        """The next command to execute (a subtask or a language motion); ``None`` when the instruction is done.

        Called at the start of an episode and each time the previous command has finished (the runtime
        decides when: the low tier's chunk budget, a success detector, or a correction). Planners that
        re-plan from what they see use ``observation``; planners that plan up front hand out their plan.
        """
        ...

    def handle_correction(self, correction: LanguageCommand) -> None:
        """Take a live human correction addressed to this tier into account from the next call on."""
        ...


@dataclass(frozen=True)
class MidLevelPlan:
    """What the mid tier hands down for one command.

    Attributes:
        command: the command this plan serves (passed through as the low tier's language condition).
        path: end-effector path to follow, in the base frame, or None.
        guidance: reward terms for the low tier's sampler (VLS steering, path tracking), possibly empty.
    """

    command: LanguageCommand
    path: EEPath | None = None
    guidance: tuple[Guidance, ...] = ()


@runtime_checkable
class MidLevelPlanner(Protocol):
    """Turns a subtask into where the end effector should go."""

    def reset(self) -> None:
        """Forget cached scene state (point clouds, affordances)."""
        ...

    def plan(self, observation: Observation, command: LanguageCommand) -> MidLevelPlan:
        """A path and/or guidance terms for ``command`` from the current observation."""
        ...


@runtime_checkable
class LowLevelPolicy(Protocol):
    """Turns observation + conditioning into actions at control rate (lerobot's policy interface).

    ``batch`` maps :class:`~tiers.core.features.FeatureKey` names to tensors with a leading batch axis B:
    ``observation.state`` (B, S), ``observation.images.<cam>`` (B, 3, H, W) float in [0, 1], and the
    conditioning the policy was trained with (``task`` / ``subtask`` / ``language_motion`` text, paths).

    Timeline of ``select_action`` with n_obs_steps To=2, horizon H=8, n_action_steps Ta=4::

        step:        t-1  t   t+1  t+2  t+3  t+4  t+5  t+6
        observed:     o    o
        predicted:    a    a   a    a    a    a    a    a      <- predict_action_chunk (H steps from t-1)
        executed:          a   a    a    a                     <- queued, popped one per call
        next predict:                         ^ when the queue is empty (receding horizon)
    """

    def reset(self) -> None:
        """Clear observation history and queued actions; call at the start of every episode."""
        ...

    def select_action(self, batch: dict[str, Any]) -> torch.Tensor:
        """The action to apply now, (B, A), from the queue (refilled by a new chunk when empty)."""
        ...

    def predict_action_chunk(self, batch: dict[str, Any]) -> torch.Tensor:
        """A fresh chunk of actions, (B, Ta, A), without touching the queue."""
        ...

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any] | None]:
        """Training loss (scalar tensor) and a dict of logged values."""
        ...

    def drop_queued_actions(self) -> None:
        """Forget queued actions so a new command or correction takes effect on the next tick."""
        ...


@runtime_checkable
class LowTierDriver(Protocol):
    """Executes one command at control rate: a learned policy, a path follower, or a scripted controller."""

    def reset(self) -> None:
        """A new episode: forget history and queued actions."""
        ...

    def start(self, plan: MidLevelPlan, observation: Observation) -> None:
        """Begin executing ``plan`` (its command, path and guidance) from ``observation``."""
        ...

    def act(self, observation: Observation) -> NDArray[np.float32]:
        """The action for this tick, (A,) in the embodiment's action space."""
        ...

    def finished(self, observation: Observation) -> bool:
        """The current command is done (path completed, step budget spent, the policy says so)."""
        ...

    def drop_queued_actions(self) -> None:
        """Forget queued actions so that what comes next takes effect on the next tick."""
        ...
