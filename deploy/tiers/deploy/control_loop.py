"""ControlLoop: one control tick of a deployed robot, transport-independent (the ROS node wraps it).

Per tick::

    watchdog.update(now) ─┬─ WAITING / STOPPED ──▶ send nothing
                          ├─ HOLDING ───────────▶ send safety.hold()   (the last safe command, repeated)
                          └─ RUNNING ───────────▶ observation ─▶ controller.step ─▶ safety.filter ─▶ send

- Entering RUNNING (start, resume) re-seeds the safety filter from the *measured* state, so the first
  command after a pause starts where the arm is, not where the last command pointed.
- An exception from the controller latches the software stop (reason = the error) instead of crashing the
  node with the arm holding a stale target; a person reads the reason in the status and resumes.
- Threads: the controller steps with no lock held; :meth:`ControlLoop.watch` (another thread, faster) may
  enter HOLDING meanwhile and send the hold; the tick then drops its action. The safety filter and the
  sending (``sink``) share one lock.
- The controller is told about the instruction on the first RUNNING tick after :meth:`set_instruction`.
- Before any instruction nothing is commanded, so a data gap then only waits for fresh data (no latch).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
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
        sink: sends a command to the robot (J+1,) rad, m; called under the loop's command lock, so a hold
            sent by :meth:`watch` from another thread is never followed by a stale tick's motion. None: the
            caller sends what the returned :class:`TickResult` holds.
        watched: :meth:`watch` runs often, in the thread that receives the data: the ticks leave the judgement
            of staleness to it (a tick's thread can be behind the data it has not yet been handed).
        recent_interventions: the last interventions, newest last, for the status.
    """

    controller: Controller
    safety: SafetyFilter
    watchdog: Watchdog
    sink: Callable[[NDArray[np.float64]], None] | None = None
    watched: bool = False
    recent_interventions: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    _instruction: str | None = None
    _pending_instruction: bool = False
    _was_running: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _command_lock: threading.RLock = field(default_factory=threading.RLock)  # safety filter + sending
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
        """Run one tick at ``now`` (s, the watchdog's clock) on the latest ``observation`` (None: none yet).

        The controller steps without any lock held (a mid tier may plan for a while): the watchdog goes on
        being fed and checked by other threads meanwhile (:meth:`watch`), and the step's action is filtered
        and sent only if the watchdog still says RUNNING when it is ready.
        """
        self.ticks += 1
        state = self._state(now)
        if state is ControlState.HOLDING and self._instruction is None:
            # nothing has been commanded yet: a gap in the data endangers nothing, so it does not latch
            state = self.watchdog.resume(now)
        if state is not ControlState.RUNNING or observation is None:
            self._was_running = False
            return self._hold_or_nothing(state)
        if not self._was_running:
            with self._command_lock:
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
        except Exception as error:  # any controller failure latches the stop; the arm is not left moving
            return self._controller_failed(error, now)
        with self._command_lock:
            # the data may have gone stale, or a stop come, while the controller stepped: then its action is void
            state = self._state(now)
            if state is not ControlState.RUNNING:
                self._was_running = False
                return self._hold_or_nothing(state)
            try:
                result = self.safety.filter(np.asarray(step.action), measured=observation.joint_positions)
            except Exception as error:  # e.g. an action of the wrong shape: the controller's fault
                return self._controller_failed(error, now)
            self._emit(result.action)
        for event in result.interventions:
            self.recent_interventions.append(f"t={observation.timestamp:.3f} {event.describe()}")
        return TickResult(
            state, result.action, motion=not (bool(step.hold) or result.held), interventions=result.interventions
        )

    def watch(self, now: float | None = None) -> TickResult | None:
        """Between ticks (a faster timer, possibly another thread than the ticks'): advance the watchdog and, on
        entering HOLDING, send the hold at once (through ``sink``) and return it, so the hold follows the
        timeout by the watch period rather than a control period (or a controller step that takes long)."""
        with self._command_lock:
            before = self.watchdog.state
            state = self.watchdog.update(now)
            if state is ControlState.HOLDING and self._instruction is None:
                self.watchdog.resume(now)  # nothing commanded yet: nothing to hold (see tick)
                return None
            if state is ControlState.HOLDING and before is not ControlState.HOLDING and self.safety.is_reset:
                action = self.safety.hold().action
                self._emit(action)
                return TickResult(state, action, motion=False)
        return None

    def hold(self) -> TickResult | None:
        """Send the last safe command again (e.g. after a failed tick), if there is one; None otherwise."""
        with self._command_lock:
            if not self.safety.is_reset or self.watchdog.state in (ControlState.WAITING, ControlState.STOPPED):
                return None
            action = self.safety.hold().action
            self._emit(action)
            return TickResult(self.watchdog.state, action, motion=False)

    def _hold_or_nothing(self, state: ControlState) -> TickResult:
        """HOLDING: the last safe command (sent); WAITING / STOPPED: nothing."""
        if state is not ControlState.HOLDING:
            return TickResult(state, None, motion=False)
        with self._command_lock:  # re-entrant: the tick may hold it already
            if not self.safety.is_reset:
                return TickResult(state, None, motion=False)
            action = self.safety.hold().action
            self._emit(action)
        return TickResult(state, action, motion=False)

    def _controller_failed(self, error: Exception, now: float | None) -> TickResult:
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        self.watchdog.stop(f"controller failed: {detail[:500]}", now)
        self._was_running = False
        return TickResult(ControlState.STOPPED, None, motion=False)

    def _state(self, now: float | None) -> ControlState:
        """The state to act in: judged here, or (``watched``) as :meth:`watch` last judged it."""
        return self.watchdog.state if self.watched else self.watchdog.update(now)

    def _emit(self, command: NDArray[np.float64]) -> None:
        if self.sink is not None:
            self.sink(command)

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
