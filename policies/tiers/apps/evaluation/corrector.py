"""A simulated person who watches the robot and corrects it in plain language (the ``corrections`` mode).

It sees privileged state (the gold plan, which plan steps are done, where things are) and says what a
person would, when a person would:

- the hierarchy works on a subtask other than the next gold step (or the step it has just achieved), or
  stopped before the task is done, for ``grace_s``:
  "no, <the next gold subtask> first" — a subtask-level correction;
- the right subtask has made no progress for ``stall_s``: a nudge toward the subtask's object
  ("move a bit left and down") — a motion-level correction; at most one per ``cooldown_s``.

Progress through the gold plan is the first step whose own effect (:func:`tiers.sim.kitchen.tasks.success_of`
of that step alone) has not yet been seen; a pick counts as done once the object is held, so the following
place becomes the next step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tiers.commands.subtasks import Subtask
from tiers.core.config import Config
from tiers.core.errors import ContractError
from tiers.core.language import LanguageCommand
from tiers.sim.kitchen.tasks import Task, success_of
from tiers.sim.scene_state import SceneState

AXES = (("backward", "forward"), ("right", "left"), ("down", "up"))  # base frame x, y, z words (neg, pos)


@dataclass
class CorrectorSettings(Config):
    """When the simulated person speaks up."""

    grace_s: float = 1.0  # s a wrong subtask may run before the person objects
    stall_s: float = 12.0  # s without plan progress before the person nudges the arm
    cooldown_s: float = 4.0  # s between two corrections
    max_corrections: int = 6  # per episode; afterwards the person only watches
    nudge_threshold: float = 0.03  # m, an axis is named when the tool is this far off along it

    def __post_init__(self) -> None:
        for name in ("grace_s", "stall_s", "cooldown_s", "nudge_threshold"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CorrectorSettings.{name} must be positive, got {getattr(self, name)}")
        if self.max_corrections < 0:
            raise ValueError(f"CorrectorSettings.max_corrections must be >= 0, got {self.max_corrections}")


class SimulatedCorrector:
    """Says a correction (a string) when the robot deviates from the task's gold plan; see the module docstring."""

    def __init__(self, task: Task, settings: CorrectorSettings | None = None) -> None:
        self.task = task
        self.settings = settings or CorrectorSettings()
        self._initial: SceneState | None = None
        self.next_index = 0  # the first gold step not yet achieved
        self.said: list[tuple[float, str]] = []
        self._wrong_since: float | None = None
        self._progress_at = 0.0
        self._last_said = -np.inf
        self._finishing: str | None = None  # id of the command in force when the last step was achieved

    def reset(self, initial: SceneState) -> None:
        self._initial = initial
        self.next_index = 0
        self.said = []
        self._wrong_since = None
        self._progress_at = initial.time
        self._last_said = -np.inf
        self._finishing = None

    @property
    def next_step(self) -> Subtask | None:
        plan = self.task.plan
        return plan[self.next_index] if self.next_index < len(plan) else None

    def observe(self, state: SceneState, command: LanguageCommand | None, *, finished: bool) -> str | None:
        """What the person says now, or None.

        Args:
            state: privileged scene state now (``state.time`` is the clock).
            command: the command the hierarchy is executing, or None.
            finished: the hierarchy believes the instruction is done.
        """
        if self._initial is None:
            raise ContractError("SimulatedCorrector.observe() before reset()")
        now = state.time
        while self.next_step is not None and success_of([self.next_step])(self._initial, state):
            self.next_index += 1
            self._progress_at = now
            self._finishing = None if command is None else command.id
        step = self.next_step
        if step is None or len(self.said) >= self.settings.max_corrections:
            return None
        if now - self._last_said < self.settings.cooldown_s and not finished:
            return None  # a robot that stopped short is told at once, whatever was said recently
        # the command that achieved the last step may run on a little (lifting after a grasp); any other
        # command must be the next gold step
        finishing = command is not None and command.id == self._finishing
        on_track = not finished and command is not None and (finishing or _parses_to(command.text, step))
        if not on_track:
            self._wrong_since = now if self._wrong_since is None else self._wrong_since
            if now - self._wrong_since >= self.settings.grace_s:
                return self._say(now, f"no, {step.text} first")
            return None
        self._wrong_since = None
        if now - self._progress_at >= self.settings.stall_s:
            direction = self._nudge_words(state, step)
            if direction is not None:
                self._progress_at = now  # give the nudge time to help before the next one
                return self._say(now, f"move a bit {direction}")
        return None

    def _say(self, now: float, text: str) -> str:
        self.said.append((now, text))
        self._last_said = now
        self._wrong_since = None
        return text

    def _nudge_words(self, state: SceneState, step: Subtask) -> str | None:
        """Direction words from the tool toward where ``step`` needs it, or None when it is close enough."""
        goal = _goal_position(state, step)
        if goal is None:
            return None
        offset: NDArray[np.float64] = goal - state.ee_position
        named = [
            AXES[axis][int(offset[axis] > 0)] for axis in range(3) if abs(offset[axis]) >= self.settings.nudge_threshold
        ]
        return " and ".join(named) if named else None


def _parses_to(text: str, step: Subtask) -> bool:
    try:
        return Subtask.parse(text) == step
    except ContractError:
        return False


def _centre(low: NDArray[np.float64], high: NDArray[np.float64]) -> NDArray[np.float64]:
    centre: NDArray[np.float64] = (np.asarray(low, dtype=np.float64) + np.asarray(high, dtype=np.float64)) / 2
    return centre


def _goal_position(state: SceneState, step: Subtask) -> NDArray[np.float64] | None:
    """Where the tool should head for ``step``: the object to grasp/push, or the place to put the held one."""
    if step.object in state.objects and state.grasped != step.object:
        bounds = state.objects[step.object].bounds
        return _centre(bounds.low, bounds.high)
    if step.target is not None:
        if step.target in state.objects:
            bounds = state.objects[step.target].bounds
            above: NDArray[np.float64] = _centre(bounds.low, bounds.high) + np.array([0.0, 0.0, 0.1])
            return above
        if step.target in state.regions:
            region = state.regions[step.target]
            return _centre(region.low, region.high)
    if step.object in state.regions:  # a fixture to open or close: its interior is behind the handle
        region = state.regions[step.object]
        return _centre(region.low, region.high)
    return None
