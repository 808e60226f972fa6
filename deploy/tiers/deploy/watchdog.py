"""Watchdog: stop acting on a stale picture of the world, and a latched software stop.

States of the control loop and what the robot is sent in each::

    WAITING ──every source seen──▶ RUNNING ──a source silent > timeout_s──▶ HOLDING ──hold > stop_after_s──▶ STOPPED
     (nothing)                    (policy's                                (the last safe        (nothing at all;
                                  commands)                                command, repeated)     latched)
       ▲                                                                        │                      │
       └──────────────── resume(): only on an explicit command, with every source fresh ◀──────────────┘

    stop(reason) from any state ──▶ STOPPED (the software stop; latched until resume())

A source is anything that must keep arriving for the picture to be current: ``joint_states`` and each
camera. "Fresh" is measured on the receiving computer's monotonic clock (arrival time), not on message
stamps, so a sender whose clock is wrong cannot keep the loop alive.

HOLDING is latched too by default (``resume_on_fresh_data=False``): data that comes back after a gap does
not restart motion by itself; a person or a supervisor resumes. A hold lasts ``stop_after_s`` at most,
whether the data stays stale or comes back: then nothing is sent any more (STOPPED). With
``resume_on_fresh_data=True`` fresh data within ``stop_after_s`` returns to RUNNING instead.

The watchdog is thread-safe: one thread may feed it (the joint-state callback) while others update it (the
control tick, a faster watch timer), so staleness is judged on arrival times that no slow tick delays.

A software stop is **not** a hardware emergency stop. It only works while this process, its computer and
the network to the robot are alive, and it stops *commanding*; the arm's controller decides what that means
(hold or brake). Keep the robot's hardware e-stop within reach whenever it moves.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tiers.core.config import Config
from tiers.core.errors import ContractError


class ControlState(StrEnum):
    """What the control loop may do."""

    WAITING = "waiting"  # a required source has not arrived yet: send nothing
    RUNNING = "running"  # act: the policy's (filtered) commands go out
    HOLDING = "holding"  # a source went stale: repeat the last safe command
    STOPPED = "stopped"  # latched: send nothing until resume()


@dataclass
class WatchdogConfig(Config):
    """Timeouts of the stale-observation watchdog."""

    timeout_s: float = 0.1  # s without a message from a required source before the loop holds
    stop_after_s: float = 1.0  # s of holding after which the stop latches (nothing is sent any more)
    resume_on_fresh_data: bool = False  # leave HOLDING by itself once every source is fresh; STOPPED never does
    source_timeouts: dict[str, float] = field(default_factory=dict)  # s per source, overriding timeout_s

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive seconds, got {self.timeout_s}")
        if not self.stop_after_s >= 0:
            raise ValueError(f"stop_after_s must be >= 0 seconds, got {self.stop_after_s}")
        for source, timeout in self.source_timeouts.items():
            if not timeout > 0:
                raise ValueError(f"source_timeouts[{source!r}] must be positive seconds, got {timeout}")

    def timeout(self, source: str) -> float:
        """s without a message from ``source`` before the loop holds."""
        return self.source_timeouts.get(source, self.timeout_s)


@dataclass(frozen=True)
class Transition:
    """A change of state, for logs and the status topic. ``time``: s on the watchdog's clock."""

    time: float
    before: ControlState
    after: ControlState
    reason: str


class Watchdog:
    """Tracks the freshness of required sources and the latched software stop.

    Example::

        watchdog = Watchdog(["joint_states", "front"], WatchdogConfig(timeout_s=0.1))
        on each message:     watchdog.feed("joint_states")
        on each control tick:
            state = watchdog.update()
            if state is ControlState.RUNNING:   send(filter(policy(...)))
            elif state is ControlState.HOLDING: send(safety.hold())
            # WAITING / STOPPED: send nothing
    """

    def __init__(
        self,
        sources: Sequence[str],
        config: WatchdogConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        """
        Args:
            sources: names of the inputs that must keep arriving (e.g. ``"joint_states"``, camera names).
            config: timeouts; defaults to :class:`WatchdogConfig`'s.
            clock: monotonic seconds; injectable so simulated time can drive it.
        """
        if not sources:
            raise ContractError("Watchdog needs at least one source to watch")
        self.config = config or WatchdogConfig()
        unknown = sorted(set(self.config.source_timeouts) - set(sources))
        if unknown:
            raise ContractError(f"watchdog: source_timeouts name {unknown}, which are not watched ({list(sources)})")
        self._clock = clock
        self._last: dict[str, float | None] = dict.fromkeys(sources)  # source -> arrival time (s) or None
        self._state = ControlState.WAITING
        self._since = clock()  # s, when the current state began
        self.reason = "waiting for " + ", ".join(sources)  # why the loop is in its current state
        self.transitions: deque[Transition] = deque(maxlen=1000)  # the latest changes of state, oldest first
        self._lock = threading.RLock()  # feed, update, stop and resume may come from different threads

    @property
    def sources(self) -> list[str]:
        return list(self._last)

    @property
    def state(self) -> ControlState:
        return self._state

    def feed(self, source: str, now: float | None = None) -> None:
        """Record that a message from ``source`` arrived (at ``now``, default: the clock)."""
        if source not in self._last:
            raise ContractError(f"watchdog: unknown source {source!r}; watching {self.sources}")
        self._last[source] = self._clock() if now is None else now

    def age(self, source: str, now: float | None = None) -> float:
        """s since ``source`` last arrived (inf if never)."""
        last = self._last[source]
        return float("inf") if last is None else (self._clock() if now is None else now) - last

    def stale_sources(self, now: float | None = None) -> list[str]:
        now = self._clock() if now is None else now
        return [name for name in self._last if self.age(name, now) > self.config.timeout(name)]

    def update(self, now: float | None = None) -> ControlState:
        """Advance the state machine to ``now`` (default: the clock) and return the state to act in."""
        with self._lock:
            return self._update(self._clock() if now is None else now)

    def _update(self, now: float) -> ControlState:
        stale = self.stale_sources(now)
        state = self._state
        if state is ControlState.WAITING and not stale:
            self._enter(ControlState.RUNNING, now, "every source is fresh")
        elif state is ControlState.RUNNING and stale:
            ages = ", ".join(
                f"{name} {self.age(name, now) * 1e3:.0f} ms (timeout {self.config.timeout(name) * 1e3:.0f} ms)"
                for name in stale
            )
            self._enter(ControlState.HOLDING, now, f"stale: {ages}")
        elif state is ControlState.HOLDING:
            if not stale and self.config.resume_on_fresh_data:
                self._enter(ControlState.RUNNING, now, "every source is fresh again")
            elif now - self._since > self.config.stop_after_s:
                # whether the data is still stale or came back: a hold lasts stop_after_s at most (fresh data
                # does not end a latched hold, so without this the node could repeat the held command forever)
                self._enter(ControlState.STOPPED, now, f"held {self.config.stop_after_s:.2f} s: {self.reason}")
        return self._state

    def stop(self, reason: str, now: float | None = None) -> None:
        """The software stop: latch STOPPED until :meth:`resume`. Not a hardware e-stop (see module doc)."""
        with self._lock:
            self._enter(ControlState.STOPPED, self._clock() if now is None else now, f"software stop: {reason}")

    def resume(self, now: float | None = None) -> ControlState:
        """Explicit resume: back to RUNNING if every source is fresh, else to WAITING (which starts by itself
        once they are). Returns the new state."""
        with self._lock:
            now = self._clock() if now is None else now
            if self._state is ControlState.RUNNING:
                return self._state
            stale = self.stale_sources(now)
            if stale:
                self._enter(ControlState.WAITING, now, "resumed; waiting for " + ", ".join(stale))
            else:
                self._enter(ControlState.RUNNING, now, "resumed")
            return self._state

    def _enter(self, state: ControlState, now: float, reason: str) -> None:
        if state is not self._state:
            self.transitions.append(Transition(now, self._state, state, reason))
            self._state = state
            self._since = now
        self.reason = reason
