"""SteerVLA-style steering: a VLM watches the cameras and keeps telling the low tier what to do next, finely.

At most once per ``period_s`` (on the observation clock), :class:`SteeringPlanner` sends the VLM the episode's
instruction, its own recent steering history and the current camera images (base64 PNG data URLs through any
:class:`~tiers.services.chat.ChatBackend`), and asks for two levels of instruction:

    subtask: pick up the apple            <- a canonical kitchen subtask (tiers.commands.subtasks)
    motion: move arm forward and down     <- an RT-H language motion (tiers.commands.motion_words.VOCABULARY)

or ``done`` when the instruction is complete. The reply's lines become :class:`LanguageCommand` s (style
``subtask`` and ``motion``, source ``planner``); each replaces the previous one of its level (``replaces``), so
the steering history is a provenance chain. A line that is not in its grammar is dropped and counted in
``rejected`` (the low tier is never conditioned on text outside its training vocabulary).

Timeline with ``period_s`` = 1.0 and the runtime calling ``next_command`` every control tick (20 Hz)::

    t (s):       0.0   0.05 ... 0.95   1.0   1.05 ...
    VLM query:    Q                     Q
    returns:      c1    c1  ...  c1     c2    c2          (same command object until the next query)

A live correction is put in the next prompt ("the person said: ...") and forces a query on the next call. In a
hierarchy the runtime also says when the command in force ended (:meth:`SteeringPlanner.handle_done`: "The
robot finished: ...") or failed (:meth:`SteeringPlanner.handle_failure`, with the reason): either forces a query
on the next call, so a finished subtask is not restarted while the VLM has not yet said what comes next.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from tiers.commands.motion_words import VOCABULARY
from tiers.commands.subtasks import CANONICAL_FORMS, Subtask, SubtaskError
from tiers.core.config import Config
from tiers.core.errors import ConfigError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.services.chat import ChatBackend, system_message, user_message

HISTORY_PREFIX = "Your previous steering, oldest first: "  # prompt line: the recent replies, " | "-separated
FINISHED_PREFIX = "The robot finished: "  # prompt line: the command in force ended without a sensed failure
FAILED_PREFIX = "The robot failed: "  # prompt line: the command in force failed, with the reason


def motion_vocabulary() -> tuple[str, ...]:
    """The RT-H language motions the low tier knows (the datasets' auto-labeller vocabulary)."""
    return tuple(VOCABULARY)


@dataclass
class SteeringConfig(Config):
    """How often and how the VLM steers."""

    period_s: float = 1.0  # s on the observation clock between two VLM queries (SteerVLA runs at ~1 Hz)
    cameras: tuple[str, ...] = ("front", "wrist")  # cameras whose current images go into every query
    levels: tuple[str, ...] = ("subtask", "motion")  # which steering levels to ask for
    history: int = 4  # previous steering replies kept in the prompt
    max_tokens: int = 64  # completion length per query
    temperature: float = 0.0  # 0: greedy

    def __post_init__(self) -> None:
        if self.period_s < 0:
            raise ValueError(f"period_s must be >= 0, got {self.period_s}")
        unknown = set(self.levels) - {"subtask", "motion"}
        if unknown or not self.levels:
            raise ValueError(f"levels must be a non-empty subset of ['subtask', 'motion'], got {list(self.levels)}")


_LINE = re.compile(r"^\s*(subtask|motion)\s*:\s*(.+?)\s*\.?\s*$", re.IGNORECASE)


class SteeringPlanner:
    """Fine-grained steering instructions from a VLM at a configurable rate (implements ``HighLevelPlanner``).

    Attributes:
        subtask: the current subtask-level steering command (None before the first query).
        motion: the current motion-level steering command (None before the first query).
        queries: VLM queries this episode; model_seconds: s spent waiting for them.
        rejected: reply lines dropped because they were outside their level's grammar.
        done: the VLM said the instruction is complete.
    """

    name = "steer_vla"

    def __init__(self, backend: ChatBackend, config: SteeringConfig | None = None):
        self.backend = backend
        self.config = config or SteeringConfig()
        self._motions = frozenset(motion_vocabulary())
        self.reset("")

    def reset(self, instruction: str) -> None:
        self.instruction = instruction
        self.subtask: LanguageCommand | None = None
        self.motion: LanguageCommand | None = None
        self.queries = 0
        self.model_seconds = 0.0
        self.rejected: list[str] = []
        self.done = False
        self._last_query: float | None = None
        self._replies: list[str] = []
        self._correction: LanguageCommand | None = None
        self._event: str | None = None  # the runtime said the command in force ended: query at the next call

    @property
    def period_s(self) -> float:
        """s between two queries: the hierarchy asks this planner that often unless its YAML says otherwise."""
        return self.config.period_s

    def system_prompt(self) -> str:
        motions = "; ".join(sorted(self._motions))
        wanted = " and ".join(f"'{level}: ...'" for level in self.config.levels)
        return (
            "You steer a robot arm in a kitchen through the camera images you are shown. Reply with "
            f"{wanted} lines, or with 'done' when the instruction is complete.\n"
            f"Subtasks use these forms only: {'; '.join(CANONICAL_FORMS)}.\n"
            f"Motions are one of: {motions}."
        )

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        due = (
            self._last_query is None
            or self._correction is not None
            or self._event is not None
            or observation.timestamp - self._last_query >= self.config.period_s
        )
        if due and not self.done:
            self._query(observation)
        if self.done:
            return None
        return self.motion if "motion" in self.config.levels and self.motion is not None else self.subtask

    def handle_correction(self, correction: LanguageCommand) -> None:
        """Mention the correction in the next query, and query on the next call whatever the period."""
        self._correction = correction
        self.done = False

    def handle_done(self, command: LanguageCommand) -> None:
        """The command in force ended (its effect sensed, or not checkable): say so in a query at the next call."""
        self._event = f"{FINISHED_PREFIX}{command.text}"

    def handle_failure(self, failed: LanguageCommand, reason: str) -> None:
        """The command in force failed: say so, with ``reason``, in a query at the next call."""
        self._event = f"{FAILED_PREFIX}{failed.text} ({reason})"

    def _query(self, observation: Observation) -> None:
        missing = [camera for camera in self.config.cameras if camera not in observation.images]
        if missing:
            raise ConfigError(
                f"SteeringConfig.cameras {missing} are not in the observation (images: {sorted(observation.images)})"
            )
        lines = [f"Instruction: {self.instruction}", f"Time: {observation.timestamp:.2f} s"]
        if self._replies:
            lines.append(HISTORY_PREFIX + " | ".join(self._replies[-self.config.history :]))
        if self._event is not None:
            lines.append(self._event)
        if self._correction is not None:
            lines.append(f"The person watching said: {self._correction.text}")
        lines.append(f"Images: {', '.join(self.config.cameras)} cameras, now.")
        images = [observation.images[camera] for camera in self.config.cameras]
        messages = [system_message(self.system_prompt()), user_message("\n".join(lines), images)]
        start = time.perf_counter()
        reply = self.backend.complete(messages, max_tokens=self.config.max_tokens, temperature=self.config.temperature)
        self.model_seconds += time.perf_counter() - start
        self.queries += 1
        self._last_query = observation.timestamp
        self._replies.append(" / ".join(line.strip() for line in reply.text.splitlines() if line.strip()))
        self._apply(reply.text, observation.timestamp)
        self._correction = self._event = None

    def _apply(self, text: str, timestamp: float) -> None:
        if text.strip().lower().rstrip(".") == "done":
            self.done = True
            return
        for raw in text.splitlines():
            match = _LINE.match(raw)
            if match is None:
                if raw.strip():
                    self.rejected.append(raw.strip())
                continue
            level, content = match.group(1).lower(), " ".join(match.group(2).lower().split())
            if level not in self.config.levels:
                self.rejected.append(raw.strip())
            elif level == "subtask":
                try:
                    canonical = Subtask.parse(content).text
                except SubtaskError:
                    self.rejected.append(raw.strip())
                    continue
                if self.subtask is None or self.subtask.text != canonical:
                    self.subtask = self._command(canonical, CommandStyle.SUBTASK, timestamp, self.subtask)
            elif content in self._motions:
                if self.motion is None or self.motion.text != content:
                    self.motion = self._command(content, CommandStyle.MOTION, timestamp, self.motion)
            else:
                self.rejected.append(raw.strip())

    def _command(
        self, text: str, style: CommandStyle, timestamp: float, previous: LanguageCommand | None
    ) -> LanguageCommand:
        # a correction-driven command names the correction; otherwise it supersedes the previous steering
        replaces = self._correction if self._correction is not None else previous
        return LanguageCommand(text, style, CommandSource.PLANNER, timestamp, replaces=replaces)
