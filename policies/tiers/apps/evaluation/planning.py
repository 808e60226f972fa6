"""Planner-alone evaluation: a planner's plan against the task's gold plan (Kitchen-R's planner mode).

The planner is driven through the high-tier protocol (``reset`` then ``next_command`` until ``None``),
with nothing executed in between: each command is taken as done. Its commands are parsed into
canonical subtasks, so "pick up the apple" and "Pick up the  apple" are the same step, and an
unparsable command is a wrong step, never a crash.

Scores per episode:
    exact          the parsed plan equals the gold plan, step for step;
    step_accuracy  steps equal at the same index / max(len(plan), len(gold)).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from tiers.commands.recovery import recovery_steps
from tiers.commands.subtasks import Subtask, SubtaskError
from tiers.core.errors import ContractError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import HighLevelPlanner

# a planner that has not finished after this many commands is cut off (gold plans have at most 4 steps)
MAX_PLAN_STEPS = 12


@dataclass(frozen=True)
class PlanScore:
    """How one predicted plan compares with the gold plan."""

    exact: bool
    step_accuracy: float  # in [0, 1]
    predicted: tuple[str, ...]  # the planner's command texts, as given
    reason: str  # "" when exact, else the first difference


def collect_plan(
    planner: HighLevelPlanner, instruction: str, observation: Observation, *, max_steps: int = MAX_PLAN_STEPS
) -> list[str]:
    """Run a planner open-loop on one instruction and return its command texts in order."""
    planner.reset(instruction)
    texts: list[str] = []
    for _ in range(max_steps):
        command = planner.next_command(observation)
        if command is None:
            break
        texts.append(command.text)
    return texts


def score_plan(predicted: Sequence[str], gold: Sequence[Subtask]) -> PlanScore:
    """Compare command texts with the gold subtasks (see module docstring)."""
    parsed: list[Subtask | None] = []
    for text in predicted:
        try:
            parsed.append(Subtask.parse(text))
        except ContractError:
            parsed.append(None)
    matches = sum(p == g for p, g in zip(parsed, gold, strict=False))
    length = max(len(parsed), len(gold))
    reason = ""
    for index in range(length):
        want = gold[index].text if index < len(gold) else "(end of plan)"
        got = predicted[index] if index < len(predicted) else "(end of plan)"
        if index >= len(parsed) or index >= len(gold) or parsed[index] != gold[index]:
            unparsable = index < len(parsed) and parsed[index] is None
            reason = f"step {index + 1}: expected {want!r}, got {got!r}" + (" (not a subtask)" if unparsable else "")
            break
    return PlanScore(
        exact=not reason,
        step_accuracy=matches / length if length else 1.0,
        predicted=tuple(predicted),
        reason=reason,
    )


class GoldPlanEcho:
    """Reference planner that hands out the gold plan it is given: must score 100% (checks the harness).

    Privileged: it reads the task's gold plan, which no real planner sees.
    """

    name = "gold_echo"

    def __init__(self, gold: Sequence[Subtask]) -> None:
        self.plan = tuple(gold)  # what it hands out, in order
        self._queue: list[Subtask] = []

    def reset(self, instruction: str) -> None:
        self._queue = list(self.plan)

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        if not self._queue:
            return None
        subtask = self._queue.pop(0)
        return LanguageCommand(subtask.text, CommandStyle.SUBTASK, CommandSource.PLANNER, observation.timestamp)

    def handle_correction(self, correction: LanguageCommand) -> None:
        """Reference planners do not take corrections."""

    def handle_failure(self, failed: LanguageCommand, reason: str) -> None:
        """Re-plan after ``failed`` did not achieve its effect, as every kitchen-subtask planner does
        (:func:`~tiers.commands.recovery.recovery_steps`: from the sensed reason only, nothing privileged)."""
        try:
            step = Subtask.parse(failed.text)
        except SubtaskError:
            return
        self._queue = [*recovery_steps(step, reason), *self._queue]


class ShuffledGoldPlan(GoldPlanEcho):
    """Reference planner that hands out the gold plan in a seeded random order that differs from it
    whenever the plan has two distinct steps: scores below 100% (checks that the harness can fail)."""

    name = "shuffled"

    def __init__(self, gold: Sequence[Subtask], seed: int = 0) -> None:
        shuffled = list(gold)
        rng = random.Random(seed)
        if len(set(shuffled)) > 1:
            while shuffled == list(gold):
                rng.shuffle(shuffled)
        super().__init__(shuffled)
