"""ControlLoop: one control tick of a deployed robot, transport-independent (the ROS node wraps it).

Per tick::

    watchdog.update(now) ─┬─ WAITING / STOPPED ──▶ send nothing
                          ├─ HOLDING ───────────▶ send safety.hold()   (the last safe command, repeated)
                          └─ RUNNING ───────────▶ observation ─▶ controller.step ─▶ safety.filter ─▶ send

- Entering RUNNING (start, resume) re-seeds the safety filter from the *measured* state, so the first
  command after a pause starts where the arm is, not where the last command pointed.
- An exception from the controller latches the software stop (reason = the error) instead of crashing the
  node with the arm holding a stale target; a person reads the reason in the status and resumes.
- The controller is told about the instruction on the first RUNNING tick after :meth:`set_instruction`.
- Before any instruction nothing is commanded, so a data gap then only waits for fresh data (no latch).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.observation import Observation
from tiers.deploy.controllers import Controller
from tiers.deploy.safety import Intervention, SafetyFilter
from tiers.deploy.watchdog import ControlState, Watchdog


@dataclass(frozen=True)
class TickResult:
    """What one tick decided.

    Attributes:
        state: the watchdog state the tick ran in.
        command: (J+1,) safe command to send (rad, m), or None to send nothing.
        motion: the command comes from the controller (False: a hold, or nothing).
        interventions: what the safety filter changed this tick.
    """

    state: ControlState
    command: NDArray[np.float64] | None
    motion: bool
    interventions: tuple[Intervention, ...] = ()


@dataclass
class ControlLoop:
    """Controller + safety filter + watchdog, stepped by a timer.

    Attributes:
        controller: the hierarchy runtime (or a replay wrapped in one).
        safety: the robot's safety filter.
        watchdog: freshness of joint states and cameras; the latched software stop.
        recent_interventions: the last interventions, newest last, for the status.
    """

    controller: Controller
    safety: SafetyFilter
    watchdog: Watchdog
    recent_interventions: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    _instruction: str | None = None
    _pending_instruction: bool = False
    _was_running: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    ticks: int = 0  # ticks run since construction
    controller_ticks: int = 0  # ticks in which the controller was stepped

    def set_instruction(self, instruction: str) -> None:
        """Start ``instruction`` on the next running tick (from any thread)."""
        with self._lock:
            self._instruction = instruction
            self._pending_instruction = True

    @property
    def instruction(self) -> str | None:
        return self._instruction

    def tick(self, observation: Observation | None, now: float | None = None) -> TickResult:
        """Run one tick at ``now`` (s, the watchdog's clock) on the latest ``observation`` (None: none yet)."""
        self.ticks += 1
        state = self.watchdog.update(now)
        if state is ControlState.HOLDING and self._instruction is None:
            # nothing has been commanded yet: a gap in the data endangers nothing, so it does not latch
            state = self.watchdog.resume(now)
        if state is ControlState.HOLDING and self.safety.is_reset:
            return TickResult(state, self.safety.hold().action, motion=False)
        if state is not ControlState.RUNNING or observation is None:
            self._was_running = False
            return TickResult(state, None, motion=False)
        if not self._was_running:
            self.safety.reset(observation.joint_positions, observation.gripper_opening)
            self._was_running = True
        with self._lock:
            start = self._pending_instruction
            instruction = self._instruction
            self._pending_instruction = False
        try:
            if start and instruction is not None:
                self.controller.reset(instruction, observation)
            if instruction is None:  # nothing to do yet: send nothing (the controller keeps its targets)
                return TickResult(state, None, motion=False)
            step = self.controller.step(observation)
            self.controller_ticks += 1
            result = self.safety.filter(np.asarray(step.action), measured=observation.joint_positions)
        except Exception as error:  # any controller failure latches the stop; the arm is not left moving
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            self.watchdog.stop(f"controller failed: {detail}", now)
            self._was_running = False
            return TickResult(ControlState.STOPPED, None, motion=False)
        for event in result.interventions:
            self.recent_interventions.append(f"t={observation.timestamp:.3f} {event.describe()}")
        return TickResult(
            state, result.action, motion=not (bool(step.hold) or result.held), interventions=result.interventions
        )

    def watch(self, now: float | None = None) -> TickResult | None:
        """Between ticks (a faster timer): advance the watchdog and, on entering HOLDING, return the hold command
        to send at once, so the hold follows the timeout by the watch period rather than a control period."""
        before = self.watchdog.state
        state = self.watchdog.update(now)
        if state is ControlState.HOLDING and self._instruction is None:
            self.watchdog.resume(now)  # nothing commanded yet: nothing to hold (see tick)
            return None
        if state is ControlState.HOLDING and before is not ControlState.HOLDING and self.safety.is_reset:
            return TickResult(state, self.safety.hold().action, motion=False)
        return None

    def status(self) -> dict[str, Any]:
        """JSON-able: the watchdog state and reason, safety counts, and the controller's own status."""
        controller: dict[str, Any] = {}
        if self._instruction is not None:
            try:
                controller = self.controller.status()
            except Exception as error:  # a status must never take the node down
                controller = {"error": str(error)}
        return {
            "state": self.watchdog.state.value,
            "reason": self.watchdog.reason,
            "instruction": self._instruction,
            "safety_interventions": {kind.value: count for kind, count in self.safety.counts.items()},
            "recent_interventions": list(self.recent_interventions),
            "ticks": self.ticks,
            "controller_ticks": self.controller_ticks,
            "wall_time": time.time(),
            "controller": controller,
        }
