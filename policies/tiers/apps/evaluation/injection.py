"""Corrections injected at seeded random times into a hierarchy episode (``tiers eval --inject-corrections K``).

Unlike the simulated corrector (:mod:`tiers.apps.evaluation.corrector`), which speaks when the robot goes
wrong, the injector interrupts a working hierarchy blindly, to measure that a correction never lowers success
(issue 21): K corrections per episode, each either

- a nudge, "move a bit <direction>" (one of left/right/forward/backward/up/down, :data:`NUDGES`: 2 cm), or
- a stop followed by "resume" ``resume_after_s`` seconds later (a pair counts as one correction),

said at times drawn uniformly in ``[start_s, start_s + window]`` of the simulated clock (corrections never
overlap: a later one waits until the one before is over), where the window scales with the gold plan's length
(``seconds_per_subtask`` per subtask) so that the draws fall while the hierarchy is working. Every draw comes
from the episode seed's ``injection`` stream (:func:`tiers.apps.evaluation.seeding.stream_seed`) and the task
id: the same seed gives the same schedule, and the schedule does not depend on what the hierarchy does. A
correction scheduled after the episode ended is recorded as not said.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from tiers.apps.evaluation.seeding import stream_seed
from tiers.core.config import Config

GAP_S = 1.0  # s between the end of one correction (a nudge said, a resume said) and the next
NUDGES = ("left", "right", "forward", "backward", "up", "down")  # "move a bit <word>": 2 cm along that axis


@dataclass
class InjectionSettings(Config):
    """How many corrections an episode gets, and when."""

    count: int = 2  # corrections per episode (a stop + resume pair counts as one)
    start_s: float = 1.0  # s of simulated time before the first possible correction
    seconds_per_subtask: float = 6.0  # s of the window per gold-plan subtask
    stop_share: float = 0.5  # probability that a correction is a stop + resume pair rather than a nudge
    resume_after_s: tuple[float, float] = (2.0, 4.0)  # s between a stop and its resume, drawn uniformly

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"InjectionSettings.count must be >= 0, got {self.count}")
        if self.start_s < 0 or self.seconds_per_subtask <= 0:
            raise ValueError("InjectionSettings.start_s must be >= 0 and seconds_per_subtask positive")
        if not 0.0 <= self.stop_share <= 1.0:
            raise ValueError(f"InjectionSettings.stop_share must be in [0, 1], got {self.stop_share}")
        low, high = self.resume_after_s
        if not 0 < low <= high:
            raise ValueError(f"InjectionSettings.resume_after_s must be 0 < low <= high, got {self.resume_after_s}")


@dataclass(frozen=True)
class InjectedCorrection:
    """One scheduled correction: when (s, simulated clock) and what is said."""

    time_s: float
    text: str
    kind: str  # "nudge", "stop" or "resume"


def draw_schedule(seed: int, task_id: str, plan_length: int, settings: InjectionSettings) -> list[InjectedCorrection]:
    """The corrections of the episode of ``task_id`` seeded ``seed`` (gold plan of ``plan_length`` subtasks), by time.

    The task id is mixed into the draw so that tasks run from the same seed are not all interrupted alike.
    Corrections do not overlap: one drawn before the previous one is over (its resume said) waits
    :data:`GAP_S` after it.
    """
    rng = np.random.default_rng([stream_seed(seed, "injection"), zlib.crc32(task_id.encode())])
    window = settings.seconds_per_subtask * max(plan_length, 1)
    times = sorted(settings.start_s + float(time) for time in rng.uniform(0.0, window, size=settings.count))
    schedule: list[InjectedCorrection] = []
    free_at = 0.0  # s, when the previous correction is over
    for drawn in times:
        at = round(max(drawn, free_at), 3)
        # every correction makes the same two draws, so the k-th one does not depend on the kinds before it
        is_stop = bool(rng.random() < settings.stop_share)
        pick = float(rng.random())
        if is_stop:
            low, high = settings.resume_after_s
            resume_at = round(at + low + pick * (high - low), 3)
            schedule += [InjectedCorrection(at, "stop", "stop"), InjectedCorrection(resume_at, "resume", "resume")]
            free_at = resume_at + GAP_S
        else:
            direction = NUDGES[min(int(pick * len(NUDGES)), len(NUDGES) - 1)]
            schedule.append(InjectedCorrection(at, f"move a bit {direction}", "nudge"))
            free_at = at + GAP_S
    return schedule


@dataclass
class CorrectionInjector:
    """Hands out the scheduled corrections as the episode's clock passes them, and records what happened."""

    schedule: list[InjectedCorrection]
    record: list[dict[str, object]] = field(default_factory=list)  # one per scheduled correction, by time
    _next: int = 0

    @classmethod
    def for_episode(cls, seed: int, task_id: str, plan_length: int, settings: InjectionSettings) -> CorrectionInjector:
        return cls(draw_schedule(seed, task_id, plan_length, settings))

    def due(self, now: float) -> list[InjectedCorrection]:
        """The corrections whose time has come by ``now`` (s) and were not handed out yet."""
        due = []
        while self._next < len(self.schedule) and self.schedule[self._next].time_s <= now:
            due.append(self.schedule[self._next])
            self._next += 1
        return due

    def said(self, correction: InjectedCorrection, now: float, command: str | None, *, applied: bool) -> None:
        """Record that ``correction`` was said at ``now`` while ``command`` was in force (applied: understood)."""
        self.record.append(
            {
                "t": correction.time_s,
                "said_at": round(now, 3),
                "text": correction.text,
                "kind": correction.kind,
                "during": command,
                "applied": applied,
            }
        )

    def results(self) -> list[dict[str, object]]:
        """Every scheduled correction (said or not, since the episode ended first), for ``extra.injected``."""
        unsaid: list[dict[str, object]] = [
            {"t": c.time_s, "text": c.text, "kind": c.kind, "said_at": None, "during": None, "applied": False}
            for c in self.schedule[self._next :]
        ]
        return [*self.record, *unsaid]
