"""The multi-rate hierarchy runtime: planner on events, mid tier per command, low tier at control rate.

One :meth:`HierarchyRuntime.step` is one control tick::

    tick:      0    1    2   ...   k   k+1  ...            (control rate, e.g. 20 Hz)
    planner:   ●                   ●                       on events: episode start, command finished,
                                                           a subtask correction, or every planner period
    mid tier:  ●                   ●                       once per command (a path and/or guidance)
    low tier:  ●    ●    ●   ...   ●    ●   ...            every tick (pops its queue of action chunks)
    corrections ────────────^ "move left"                  applied at the start of the next tick:
                                                           queued actions dropped, the nudge runs, then
                                                           the mid tier re-plans from the new pose

Corrections (:mod:`tiers.policies.hierarchy.corrections`) may arrive from any thread at any time through
:meth:`HierarchyRuntime.correct`; they take effect on the next tick. ``stop`` holds the robot until
``resume`` (or a new subtask); ``resume`` continues the interrupted command where it stopped (the arm held
still, so its plan still holds; only a nudge in between makes it re-plan); a motion correction nudges the end
effector (:mod:`.nudge`), unless the planner takes it as its own command (``handle_motion_correction(command,
said=...) -> True``, the RT-H motion planner: the low tier then executes the phrase); a subtask correction
replaces the current subtask and tells the planner, unless the planner cannot read it or the mid tier finds no
path for it: then the current command goes on and the correction's event says why. Every command and
correction is kept in :attr:`HierarchyRuntime.events` with its provenance, for the corrections log.

Outcomes and recovery: when a subtask command ends (its path ran out, it timed out, or the mid tier found no
path), the runtime checks from the observation whether it achieved its effect
(:class:`~tiers.policies.mid.outcomes.OutcomeChecker`, built on the mid tier's own perception; no check
without an RGB-D mid tier) and logs an ``outcome`` event. With ``RuntimeSettings.recovery`` on, a command that
failed (its effect is sensed not to hold, or it had no path and its effect is not sensed) is retried up to
``max_retries`` times, re-planned by the mid tier from a fresh observation (a ``retry`` event), unless its
reason names a missing precondition ("... first"); then the planner is told (``handle_failure(command,
reason)``, e.g. the grammar planner puts "pick up the can" before the place again; a ``replan`` event), at most
``max_replans`` times per instruction. When that is spent, or the planner cannot re-plan, the instruction ends
as failed (a ``failed`` event with the reason, :attr:`HierarchyRuntime.failure`): it is never reported done
with a failed subtask skipped.

Looking again: an outcome the cameras cannot tell (``unknown``: the object or handle hidden, no depth) is
checked again from the viewing pose (a ``look`` event) and is not a failure if it still cannot be told. A
retry whose reason is that the target is not in view (the arm hides it, or the hand is shut at it after a
nudge) also starts there. The viewing pose is where the instruction started and the planner first saw the
scene; the tool goes back to it in a straight move (:class:`~tiers.policies.hierarchy.nudge.Nudge`), the
gripper opened after an open or close (the hand may be shut on the handle it hides) and kept otherwise.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.commands.subtasks import Action, Subtask, SubtaskError
from tiers.core.embodiment import ActionSpace, EmbodimentSpec
from tiers.core.errors import ContractError, TiersError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import HighLevelPlanner, LowTierDriver, MidLevelPlan, MidLevelPlanner
from tiers.policies.hierarchy.corrections import Correction, CorrectionKind, interpret_correction
from tiers.policies.hierarchy.nudge import Nudge
from tiers.policies.hierarchy.timing import TierTimer
from tiers.policies.mid.outcomes import OutcomeChecker, OutcomeStatus, SubtaskOutcome

# (action (A,), observation) -> the action allowed to reach the robot (a safety filter)
ActionFilter = Callable[[NDArray[np.float32], Observation], NDArray[np.float32]]


@dataclass(frozen=True)
class RuntimeSettings:
    """How the runtime schedules its tiers.

    Attributes:
        planner_period_s: ask the planner again after this long even if the command has not finished
            (steering planners, e.g. SteerVLA at ~1 Hz); None: only on events.
        command_timeout_s: a command that runs longer is abandoned and the planner asked for the next.
        budgets_s: latency budget per tier ("planner", "mid", "low") in s; a tier over budget is degraded
            when its driver offers ``degrade()``.
        recovery: retry or re-plan a subtask that failed (see the module docstring); False: log its outcome and
            go on with the next command, as before outcomes were checked.
        max_retries: re-plans of a failed command by the mid tier before the planner is told.
        max_replans: times per instruction the planner is told of a failure before the instruction fails.
        viewing_move: before retrying a command whose target is not in view, move the tool back to the pose
            the instruction started from (joint-position robots; see the module docstring).
        viewing_speed: m/s of the tool on that move.
    """

    planner_period_s: float | None = None
    command_timeout_s: float = 30.0
    budgets_s: dict[str, float] = field(default_factory=dict)
    recovery: bool = True
    max_retries: int = 1
    max_replans: int = 2
    viewing_move: bool = True
    viewing_speed: float = 0.2


@dataclass(frozen=True)
class RuntimeEvent:
    """Something the runtime did: a new command, a correction, a degradation, the end of the instruction."""

    timestamp: float  # s, observation clock
    tick: int  # control tick at which it took effect
    # "command" | "correction" | "degraded" | "done" | "timeout" | "outcome" | "look" | "retry" | "replan" | "failed"
    kind: str
    command: LanguageCommand | None = None
    detail: str = ""


@dataclass(frozen=True)
class RuntimeStep:
    """What one tick produced.

    Attributes:
        action: (A,) float32 in the embodiment's action space, to apply now.
        hold: True when the action only holds the robot still (stopped, finished, or nothing to do).
        command: the command in force (subtask or motion), or None.
    """

    action: NDArray[np.float32]
    hold: bool
    command: LanguageCommand | None


class HierarchyRuntime:
    """A high × (mid) × low controller stepping at control rate, taking corrections at any time."""

    def __init__(
        self,
        planner: HighLevelPlanner,
        low: LowTierDriver,
        *,
        embodiment: EmbodimentSpec,
        mid: MidLevelPlanner | None = None,
        settings: RuntimeSettings | None = None,
        action_filter: ActionFilter | None = None,
        outcomes: OutcomeChecker | None = None,
    ) -> None:
        """
        Args:
            outcomes: checks each subtask's effect when it ends; None: one on the mid tier's perception
                (:meth:`OutcomeChecker.for_mid`), or no checks when the mid tier has none.
        """
        self.planner = planner
        self.mid = mid
        self.low = low
        self.embodiment = embodiment
        self.settings = settings or RuntimeSettings()
        self.action_filter = action_filter
        self.outcomes = outcomes if outcomes is not None else OutcomeChecker.for_mid(mid)
        budgets = self.settings.budgets_s
        self.timers = {
            name: TierTimer(name, budgets.get(name)) for name in ("planner", "mid", "low", "outcome", "step")
        }
        self.events: list[RuntimeEvent] = []
        self._corrections: queue.SimpleQueue[Correction] = queue.SimpleQueue()
        self._nudge: Nudge | None = None
        self.instruction = ""
        self.command: LanguageCommand | None = None
        self.language_motion: str | None = None
        self.stopped = False
        self.done = False
        self._tick = 0
        self._command_started = 0.0
        self._planner_asked = 0.0
        self._gripper_target = 0.0
        self._stopped_at: float | None = None  # s, observation clock, when a stop correction took effect
        self._off_plan = False  # a nudge moved the arm off the command's plan: a resume re-plans
        self._no_path: str | None = None  # why the command in force has no path (the mid tier's reason)
        self._retries = 0  # of the command in force
        self.retries = 0  # retries in this instruction
        self.replans = 0  # failures handed back to the planner in this instruction
        self.failure: str | None = None  # why the instruction ended as failed (recovery spent), None otherwise
        self._viewing_position: NDArray[np.float64] | None = None  # (3,) m, base frame: the tool at reset
        self._look_again = False  # the move to the viewing pose in progress is to check an outcome again

    # -- episode --------------------------------------------------------------------------------------

    def reset(self, instruction: str, observation: Observation) -> None:
        """Start ``instruction`` from ``observation``: reset every tier and forget pending corrections."""
        self.instruction = instruction
        self.planner.reset(instruction)
        if self.mid is not None:
            self.mid.reset()
        self.low.reset()
        self.events = []
        while not self._corrections.empty():
            self._corrections.get_nowait()
        self.command = None
        self.language_motion = None
        self.stopped = self.done = False
        self._stopped_at, self._off_plan = None, False
        self._no_path, self._retries, self.retries, self.replans, self.failure = None, 0, 0, 0, None
        self._look_again = False
        if self.outcomes is not None:
            self.outcomes.reset()
        self._tick = 0
        self._gripper_target = float(observation.gripper_opening)
        self._viewing_position = np.asarray(observation.ee_pose, dtype=np.float64)[:3].copy()
        for timer in self.timers.values():
            timer.durations.clear()
            timer.forget_recent()
        self._next_command(observation)

    def correct(
        self, text: str, *, source: CommandSource | str = CommandSource.HUMAN_LIVE, timestamp: float | None = None
    ) -> Correction:
        """Interpret ``text`` now and apply it on the next tick (thread-safe).

        Raises:
            ContractError: the text says nothing the runtime can act on (empty, only filler words).
        """
        stamp = timestamp if timestamp is not None else self._last_time
        correction = interpret_correction(text, timestamp=stamp, source=source, current=self.command)
        self._corrections.put(correction)
        return correction

    def step(self, observation: Observation) -> RuntimeStep:
        """One control tick: apply pending corrections, schedule the tiers, return the action to apply."""
        with self.timers["step"].measure():
            self._last_time = float(observation.timestamp)
            while not self._corrections.empty():
                self._apply(self._corrections.get_nowait(), observation)
            action, hold = self._act(observation)
            if self.action_filter is not None and not hold:
                action = self.action_filter(action, observation)
            self._tick += 1
            if not hold:
                self._gripper_target = float(action[-1])
        return RuntimeStep(action=action, hold=hold, command=self.command)

    def needs_images(self, observation: Observation) -> bool:
        """Whether the coming :meth:`step` reads camera images, so a simulator can skip rendering otherwise.

        True when the low tier reads images every tick (a driver's ``needs_images`` attribute) or when the
        coming tick may plan a command (a correction is pending, the command finished, timed out, or the
        planner period elapsed), since planners and the mid tier look at the scene.
        """
        if getattr(self.low, "needs_images", False):
            return True
        if self.stopped or self.done:
            return not self._corrections.empty()
        if not self._corrections.empty() or self.command is None:
            return True
        if self._nudge is not None:
            return not self._nudge.active
        now = float(observation.timestamp)
        period = self.settings.planner_period_s
        return (
            now - self._command_started > self.settings.command_timeout_s
            or (period is not None and now - self._planner_asked >= period)
            or self.low.finished(observation)
        )

    def status(self) -> dict[str, Any]:
        """JSON-able state for consoles and the ROS ``~/status`` topic."""
        return {
            "instruction": self.instruction,
            "command": None if self.command is None else self.command.text,
            "command_style": None if self.command is None else self.command.style.value,
            "language_motion": self.language_motion,
            "stopped": self.stopped,
            "done": self.done,
            "failure": self.failure,
            "retries": self.retries,
            "replans": self.replans,
            "tick": self._tick,
            "timings": {name: timer.summary() for name, timer in self.timers.items()},
        }

    # -- scheduling -----------------------------------------------------------------------------------

    _last_time = 0.0

    def _act(self, observation: Observation) -> tuple[NDArray[np.float32], bool]:
        if self.stopped or self.done:
            return self._hold(observation), True
        if self._nudge is not None:
            if self._nudge.active:
                return self._nudge.act(), False
            self._nudge = None
            self.language_motion = None
            if self._look_again:  # back at the viewing pose: check the ended command's effect again
                self._look_again = False
                self._command_ended(observation, looked_again=True)
                if self.command is None or self._nudge is not None:
                    return self._hold(observation), True
            elif self.command is not None:  # hand back to the low tier, re-planned from the new pose
                self._start(self.command, observation)
        now = float(observation.timestamp)
        if self.command is None:
            return self._hold(observation), True
        timed_out = now - self._command_started > self.settings.command_timeout_s
        period = self.settings.planner_period_s
        if timed_out:
            self._event(now, "timeout", self.command, f"after {self.settings.command_timeout_s:.1f} s")
        if timed_out or self.low.finished(observation):
            self._command_ended(observation)
            if self.command is None or self.low.finished(observation):
                # done, or the new command has nothing to execute (its mid tier found no path): hold this tick
                return self._hold(observation), True
        elif period is not None and now - self._planner_asked >= period:
            self._replan(observation)
        with self.timers["low"].measure():
            action = np.asarray(self.low.act(observation), dtype=np.float32)
        self._degrade_if_slow("low", self.low, now)
        return action, False

    def _command_ended(self, observation: Observation, *, looked_again: bool = False) -> None:
        """The command in force ended: check its effect, then go on, retry it, or re-plan (module docstring).

        ``looked_again``: the check is repeated from the viewing pose, where the first one could not see.
        """
        command = self.command
        assert command is not None
        outcome = self._outcome(command, observation)
        if (
            outcome is not None
            and outcome.status is OutcomeStatus.UNKNOWN
            and self.settings.recovery
            and not looked_again
            and _is_subtask(command)
            and self._move_to_viewing_pose(command, observation)
        ):
            self._look_again = True
            self._event(
                float(observation.timestamp), "look", command, f"{outcome.reason}: to the viewing pose to check"
            )
            return
        failed = outcome is not None and outcome.failed
        if not failed or not self.settings.recovery:
            handle_done = getattr(self.planner, "handle_done", None)  # steering planners query on it
            if callable(handle_done) and not failed:
                handle_done(command)
            self._next_command(observation)
            return
        assert outcome is not None
        now = float(observation.timestamp)
        reason = outcome.reason
        precondition = reason.endswith(" first")  # "pick it up first": the planner must add a step
        if self._retries < self.settings.max_retries and not precondition:
            self._retries += 1
            self.retries += 1
            viewing = "not in view" in reason and self._move_to_viewing_pose(command, observation)
            detail = f"{self._retries}/{self.settings.max_retries}: {reason}"
            self._event(now, "retry", command, detail + ("; first back to the viewing pose" if viewing else ""))
            if not viewing:  # else the move's end hands back to the command, re-planned from there (``_act``)
                self._start(command, observation)  # the mid tier re-plans from this (fresh) observation
            return
        handle_failure = getattr(self.planner, "handle_failure", None)
        if callable(handle_failure) and self.replans < self.settings.max_replans:
            self.replans += 1
            handle_failure(command, reason)
            self._event(now, "replan", command, f"{self.replans}/{self.settings.max_replans}: {reason}")
            self._next_command(observation)
            return
        spent = "the planner cannot re-plan" if not callable(handle_failure) else "re-plans spent"
        self.failure = f"{command.text!r} failed ({reason}); {spent}"
        self.command = None
        self.done = True
        self._event(now, "failed", command, self.failure)

    def _move_to_viewing_pose(self, command: LanguageCommand, observation: Observation) -> bool:
        """Start the move back to the viewing pose; whether it started.

        Not when the tool is already there (within 3 cm), nor on robots the runtime cannot move by itself.
        """
        if (
            not self.settings.viewing_move
            or self._viewing_position is None
            or self.embodiment.action_space is not ActionSpace.JOINT_POSITION
        ):
            return False
        displacement = self._viewing_position - np.asarray(observation.ee_pose, dtype=np.float64)[:3]
        if float(np.linalg.norm(displacement)) < 0.03:
            return False
        try:
            articulating = Subtask.parse(command.text).action in (Action.OPEN, Action.CLOSE)
        except SubtaskError:
            articulating = False
        # the hand lets go of a handle it may be shut on (it hides the handle); whatever else it holds, it keeps
        gripper = self.embodiment.gripper.max_opening if articulating else self._gripper_target
        self.low.drop_queued_actions()
        self._nudge = Nudge(self.embodiment)
        self._nudge.move(displacement, observation, gripper, speed=self.settings.viewing_speed)
        return True

    def _outcome(self, command: LanguageCommand, observation: Observation) -> SubtaskOutcome | None:
        """The effect check of a subtask that ended (logged as an ``outcome`` event), None when unchecked.

        A command the mid tier gave no path failed unless its effect is sensed anyway ("already open").
        """
        if command.style is not CommandStyle.SUBTASK:
            return None
        outcome: SubtaskOutcome | None = None
        if self.outcomes is not None:
            with self.timers["outcome"].measure():
                outcome = self.outcomes.check(command.text, observation)
        if self._no_path is not None and (outcome is None or not outcome.achieved):
            reason = f"no path: {self._no_path}"
            outcome = SubtaskOutcome(OutcomeStatus.FAILED, reason)
        if outcome is not None:
            self._event(float(observation.timestamp), "outcome", command, str(outcome))
        return outcome

    def _next_command(self, observation: Observation) -> None:
        now = float(observation.timestamp)
        self._retries = 0
        with self.timers["planner"].measure():
            command = self.planner.next_command(observation)
        self._planner_asked = now
        if command is None:
            self.command = None
            self.done = True
            self._event(now, "done", None, "the planner has nothing more to do")
            return
        self._start(command, observation)

    def _replan(self, observation: Observation) -> None:
        """A periodic planner call: switch only when the planner now wants something else."""
        now = float(observation.timestamp)
        with self.timers["planner"].measure():
            command = self.planner.next_command(observation)
        self._planner_asked = now
        if command is not None and (self.command is None or command.text != self.command.text):
            self.low.drop_queued_actions()
            self._start(command, observation)

    def _start(self, command: LanguageCommand, observation: Observation) -> None:
        self._begin(command, self._plan(command, observation), observation)

    def _plan(self, command: LanguageCommand, observation: Observation) -> MidLevelPlan:
        """The mid tier's plan of ``command`` (a bare plan without a mid tier or for a motion)."""
        plan = MidLevelPlan(command=command)
        if self.mid is not None and command.style is not CommandStyle.MOTION:
            with self.timers["mid"].measure():
                plan = self.mid.plan(observation, command)
            self._degrade_if_slow("mid", self.mid, float(observation.timestamp))
        return plan

    def _no_path_reason(self, plan: MidLevelPlan) -> str | None:
        """Why a mid tier gave ``plan`` no path, or None when it has one (or there is no mid tier)."""
        if self.mid is None or plan.path is not None or plan.command.style is CommandStyle.MOTION:
            return None
        # a mid tier that found no path says why in its last outcome (KeypointPathPlanner.last.reason)
        return str(getattr(getattr(self.mid, "last", None), "reason", "") or "the mid tier gave none")

    def _begin(self, command: LanguageCommand, plan: MidLevelPlan, observation: Observation) -> None:
        now = float(observation.timestamp)
        self.command = command
        if command.style is CommandStyle.MOTION:
            self.language_motion = command.text
        self._command_started = now
        self._off_plan = False
        self._no_path = None
        self.low.start(plan, observation)
        if plan.path is not None:
            detail = f"path of {len(plan.path.waypoints)} waypoints, {plan.path.duration:.1f} s"
        elif (reason := self._no_path_reason(plan)) is not None:
            detail = f"no path: {reason}"
            self._no_path = reason
        else:
            detail = ""
        if self.outcomes is not None and command.style is CommandStyle.SUBTASK:
            # what the effect check compares with (where a pushed object started), from the mid tier's cloud
            self.outcomes.begin(command.text, observation, getattr(getattr(self.mid, "last", None), "cloud", None))
        self._event(now, "command", command, detail)

    def _apply(self, correction: Correction, observation: Observation) -> None:
        """Take a correction into account at the start of this tick."""
        now = float(observation.timestamp)
        said = f"said {correction.said!r} -> {correction.kind.value}"
        if correction.kind is CorrectionKind.SUBTASK:
            refusal, plan = self._subtask_refusal(correction.command, observation)
            if refusal is not None:  # the current command goes on; the event says why
                running = repr(self.command.text) if self.command is not None else "nothing"
                self._event(
                    now, "correction", correction.command, f"{said}, not followed: {refusal}; {running} goes on"
                )
                return
            self._event(now, "correction", correction.command, said)
            self.low.drop_queued_actions()
            self._look_again = False  # a correction ends a move to the viewing pose; what follows is the person's
            # a new subtask replaces the current one; the planner is told so its plan can follow
            self.stopped = self.done = False
            self._stopped_at, self._nudge = None, None
            self._retries = 0
            self.planner.handle_correction(correction.command)
            assert plan is not None
            self._begin(correction.command, plan, observation)
            return
        self._event(now, "correction", correction.command, said)
        self.low.drop_queued_actions()
        self._look_again = False  # a correction ends a move to the viewing pose; what follows is the person's
        if correction.kind is CorrectionKind.STOP:
            if not self.stopped:
                self._stopped_at = now
            self.stopped = True
            if self._nudge is not None:  # the nudge is cut short: the arm is off the command's plan
                self._off_plan = True
            self._nudge = None
        elif correction.kind is CorrectionKind.RESUME:
            self.stopped = False
            if self._stopped_at is not None:  # the pause does not count against the command's timeout
                self._command_started += now - self._stopped_at
                resume = getattr(self.low, "resume", None)  # nor against a time-indexed path (PolicyDriver)
                if callable(resume):
                    resume(now - self._stopped_at)
                self._stopped_at = None
            if self.command is not None and self._off_plan:
                self._start(self.command, observation)
            # otherwise the arm held still where the command stopped: its plan still holds, the low tier goes on
        elif correction.kind is CorrectionKind.MOTION:
            self.stopped = False
            self._stopped_at = None
            take = getattr(self.planner, "handle_motion_correction", None)  # RT-H: the motion planner's command
            if callable(take) and take(correction.command, said=correction.said):
                self._nudge = None  # the low tier executes the phrase, conditioned on it, for the planner's span
                self._start(correction.command, observation)
                return
            if self._nudge is None:
                self._nudge = Nudge(self.embodiment)
            self._nudge.start(correction, observation, self._gripper_target)
            self._off_plan = True
            self.language_motion = correction.command.text

    def _subtask_refusal(
        self, command: LanguageCommand, observation: Observation
    ) -> tuple[str | None, MidLevelPlan | None]:
        """(why a subtask correction cannot be followed, None) or (None, its plan).

        A planner that parses instructions (``parse``, e.g. the grammar planner) must read the subtask, and a
        mid tier must find a path for it: otherwise replacing the current command would abandon the task.
        """
        parse = getattr(self.planner, "parse", None)
        if callable(parse):
            try:
                parse(command.text)
            except (TiersError, ValueError) as error:
                return f"the planner cannot read it ({error})", None
        plan = self._plan(command, observation)
        reason = self._no_path_reason(plan)
        if reason is not None:
            return f"no path ({reason})", None
        return None, plan

    def _hold(self, observation: Observation) -> NDArray[np.float32]:
        """An action that keeps the robot where it is (measured joints, the last gripper target)."""
        if self.embodiment.action_space is ActionSpace.JOINT_POSITION:
            return np.append(observation.joint_positions, self._gripper_target).astype(np.float32)
        if self.embodiment.action_space is ActionSpace.EE_DELTA:
            return np.append(np.zeros(6), self._gripper_target).astype(np.float32)
        raise ContractError(f"cannot hold a robot with action space {self.embodiment.action_space}")

    def _degrade_if_slow(self, name: str, tier: object, now: float) -> None:
        timer = self.timers[name]
        degrade = getattr(tier, "degrade", None)
        if timer.over_budget and callable(degrade):
            detail = degrade()
            timer.forget_recent()
            if detail:
                self._event(now, "degraded", None, f"{name}: {detail}")

    def _event(self, now: float, kind: str, command: LanguageCommand | None, detail: str) -> None:
        self.events.append(RuntimeEvent(timestamp=now, tick=self._tick, kind=kind, command=command, detail=detail))


def _is_subtask(command: LanguageCommand) -> bool:
    """Whether ``command`` is a kitchen subtask (one whose effect the outcome checker knows)."""
    try:
        Subtask.parse(command.text)
    except SubtaskError:
        return False
    return True
