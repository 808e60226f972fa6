"""LLMPlanner: a chat model (any :class:`~tiers.services.chat.ChatBackend`) writes the subtask plan.

The prompt states the kitchen's canonical subtask grammar (the forms of :mod:`tiers.commands.subtasks`,
the object, fixture, relation and direction words), then a few worked examples (:data:`PLAN_EXAMPLES`, taken
from the **train** split), then the instruction (and, for a VLM, the current camera images). The reply is read one
subtask per line; numbering, bullets and code fences are stripped. Lines that are not canonical subtasks are sent
back once for repair; what is still not canonical is handed out as given (so planner-only scoring counts it wrong,
and the integrated mode reports it as not executable).

The conversation is kept for the episode (session history): a live correction is appended as a user turn with
the steps already handed out, and the reply replaces the remaining plan. A subtask that failed (the runtime's
outcome check or the mid tier said why, :meth:`LLMPlanner.handle_failure`) is told the same way, with its reason,
so the model re-plans from the current state ("the can is not in the hand" -> pick it up, then put it again).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from tiers.commands.subtasks import CANONICAL_FORMS, Subtask, SubtaskError
from tiers.commands.vocabulary import ARTICULATED, FIXTURES, PUSH_TEXT, RELATION_TEXT, ObjectName
from tiers.core.config import Config
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.services.chat import ChatBackend, ChatMessage, assistant_message, make_backend, system_message, user_message

INSTRUCTION_PREFIX = "Instruction: "

# The prompt library: worked examples (instruction, gold plan), every 52nd task of the kitchen's train split (626
# tasks, ordered by family). Kept here as data so that the planner does not read the benchmark (the tier knows the
# command language only); a test checks each is a train task with this plan, so held-out figures stay honest.
PLAN_EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("place the cup inside the kitchen drawer", ("pick up the cup", "put the cup in the drawer")),
    ("place the apple inside the white basket", ("pick up the apple", "put the apple in the basket")),
    ("pick up the blue soda can and put it inside the sink", ("pick up the can", "put the can in the sink")),
    ("push the cabinet closed", ("close the cabinet",)),
    ("move the bowl to the right of the mug", ("pick up the bowl", "put the bowl to the right of the cup")),
    ("move the banana to the right of the plate", ("pick up the banana", "put the banana to the right of the plate")),
    ("move the carton to the right of the green banana", ("pick up the box", "put the box to the right of the banana")),
    ("push the carton away from you", ("push the box forward",)),
    (
        "open the kitchen drawer and put the blue cup in it",
        ("open the drawer", "pick up the cup", "put the cup in the drawer"),
    ),
    (
        "open the drawer, put the carton in it, then close it",
        ("open the drawer", "pick up the box", "put the box in the drawer", "close the drawer"),
    ),
    (
        "open the kitchen drawer, place the pink dish sponge and the orange box inside, then close it",
        (
            "open the drawer",
            "pick up the sponge",
            "put the sponge in the drawer",
            "pick up the box",
            "put the box in the drawer",
            "close the drawer",
        ),
    ),
    (
        "put the apple inside the sink, then push the bowl right",
        ("pick up the apple", "put the apple in the sink", "push the bowl to the right"),
    ),
)


@dataclass
class LLMPlannerConfig(Config):
    """How the LLM planner prompts and reads its model."""

    few_shot: int = 6  # worked examples (of PLAN_EXAMPLES, spread evenly) in the prompt (0: none)
    images: bool = False  # attach the current camera images (needs a VLM behind the backend)
    cameras: tuple[str, ...] = ("front",)  # which cameras to attach when images is true
    repair_rounds: int = 1  # times a reply with non-canonical lines is sent back for repair
    max_tokens: int = 256  # completion length per request
    temperature: float = 0.0  # 0: greedy, reproducible plans

    def __post_init__(self) -> None:
        if self.few_shot < 0 or self.repair_rounds < 0:
            raise ValueError(f"few_shot and repair_rounds must be >= 0, got {self.few_shot}, {self.repair_rounds}")
        if self.few_shot > len(PLAN_EXAMPLES):
            raise ValueError(
                f"few_shot must be <= {len(PLAN_EXAMPLES)} (the worked examples kept), got {self.few_shot}"
            )


def grammar_prompt() -> str:
    """The system prompt: the robot's job and the canonical subtask grammar."""
    objects = ", ".join(o.value for o in ObjectName)
    fixtures = ", ".join(f.value for f in FIXTURES)
    return (
        "You plan for a robot arm in a kitchen. Turn the instruction into the sequence of subtasks the robot "
        "must execute, one subtask per line, nothing else.\n"
        f"Subtask forms: {'; '.join(CANONICAL_FORMS)}.\n"
        f"Objects: {objects}. Fixtures: {fixtures}; only the {' and the '.join(ARTICULATED)} open and close.\n"
        f"Relations: {', '.join(RELATION_TEXT.values())}. Push directions: {', '.join(PUSH_TEXT.values())}.\n"
        "Use the canonical object names (a mug is the cup), no colours. Moving an object is two subtasks: "
        "'pick up the <object>' then 'put the <object> <relation> the <target>'."
    )


def few_shot_examples(count: int) -> list[tuple[str, list[str]]]:
    """``count`` (instruction, plan) pairs of :data:`PLAN_EXAMPLES`, evenly spread (deterministic)."""
    if count <= 0:
        return []
    step = max(1, len(PLAN_EXAMPLES) // count)
    return [(instruction, list(plan)) for instruction, plan in PLAN_EXAMPLES[::step][:count]]


def instruction_from_prompt(text: str) -> str:
    """The instruction inside a planning request's user message (what :class:`LLMPlanner` writes)."""
    for line in text.splitlines():
        if line.startswith(INSTRUCTION_PREFIX):
            return line.removeprefix(INSTRUCTION_PREFIX).strip()
    return text.strip()


_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|step\s*\d+\s*[:.)])\s*", re.IGNORECASE)


def plan_lines(reply: str) -> list[str]:
    """Subtask lines of a reply: code fences, comments, empty lines, bullets and numbering removed."""
    lines = []
    for raw in reply.splitlines():
        line = _BULLET.sub("", raw).strip().strip("`").strip().rstrip(".").strip()
        if line and not line.startswith("#") and not line.lower().startswith(("python", "text", "plan:")):
            lines.append(line.lower() if line[:1].isupper() else line)
    return lines


class LLMPlanner:
    """A language model writes the plan (implements ``HighLevelPlanner``); see the module docstring.

    Attributes:
        messages: the episode's conversation so far (system, examples, instruction, replies, corrections).
        model_seconds: s spent waiting for the model since construction (for overhead figures).
        requests: model requests since construction.
        error: why the last reply still had non-canonical lines, None if it had none.
    """

    name = "llm"

    def __init__(self, backend: ChatBackend, config: LLMPlannerConfig | None = None):
        self.backend = backend
        self.config = config or LLMPlannerConfig()
        self._examples: list[ChatMessage] = []
        for instruction, plan in few_shot_examples(self.config.few_shot):
            self._examples += [user_message(INSTRUCTION_PREFIX + instruction), assistant_message("\n".join(plan))]
        self.messages: list[ChatMessage] = []
        self.model_seconds = 0.0
        self.requests = 0
        self.error: str | None = None
        self._instruction = ""
        self._queue: list[str] = []
        self._given: list[str] = []
        self._pending_correction: LanguageCommand | None = None  # what the next command replaces (provenance)
        self._prompt: str | None = None  # what to ask at the next call (instruction, correction or failure)

    def reset(self, instruction: str) -> None:
        self._instruction = instruction
        self.messages = [system_message(grammar_prompt()), *self._examples]
        self.error = None
        self._queue, self._given = [], []
        self._pending_correction = None
        self._prompt = INSTRUCTION_PREFIX + instruction

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        if self._prompt is not None:  # asked here, not earlier: the current observation's images go with it
            prompt, self._prompt = self._prompt, None
            self._queue = self._ask(prompt, observation)
        if not self._queue:
            return None
        text = self._queue.pop(0)
        self._given.append(text)
        command = LanguageCommand(
            text, CommandStyle.SUBTASK, CommandSource.PLANNER, observation.timestamp, replaces=self._pending_correction
        )
        self._pending_correction = None
        return command

    def handle_correction(self, correction: LanguageCommand) -> None:
        """A stop clears the plan; anything else is sent to the model at the next call (with that call's images),
        and its reply replaces the remaining plan (the first new command names the correction in ``replaces``)."""
        if correction.style is CommandStyle.STOP:
            self._queue = []
            return
        done = "; ".join(self._given) or "nothing yet"
        self._pending_correction = correction
        self._queue = []
        self._prompt = (
            f"Correction from the person watching: {correction.text}\nSteps already handed out: {done}.\n"
            "Reply with the remaining subtasks only, one per line."
        )

    def handle_failure(self, failed: LanguageCommand, reason: str) -> None:
        """Re-plan from the current state after ``failed`` did not achieve its effect: the failure and its
        ``reason`` go to the model at the next call (with that call's images), and its reply replaces the
        remaining plan (the first new command names ``failed`` in ``replaces``). The runtime bounds how often
        this is called; unlike a correction, the failed step is not counted as handed out.
        """
        if self._given and self._given[-1] == failed.text:
            self._given.pop()  # it did not happen: the model must not think it is done
        done = "; ".join(self._given) or "nothing yet"
        self._pending_correction = failed
        self._queue = []
        self._prompt = (
            f"The subtask '{failed.text}' failed: {reason}.\nSteps done so far: {done}.\n"
            "Reply with the remaining subtasks from the current state, one per line: what the failed subtask "
            "needs first (if its reason names a missing step), then the failed subtask again, then the rest."
        )

    def _ask(self, prompt: str, observation: Observation | None) -> list[str]:
        images = []
        if self.config.images and observation is not None:
            missing = [camera for camera in self.config.cameras if camera not in observation.images]
            if missing:
                raise ValueError(f"LLMPlannerConfig.cameras {missing} are not in the observation's images")
            images = [observation.images[camera] for camera in self.config.cameras]
        self.messages.append(user_message(prompt, images))
        lines = self._complete()
        for _ in range(self.config.repair_rounds):
            bad = _non_canonical(lines)
            if not bad:
                break
            self.messages.append(
                user_message(
                    f"These lines are not canonical subtasks: {bad}. Answer again with the whole plan, one canonical "
                    f"subtask per line ({'; '.join(CANONICAL_FORMS)})."
                )
            )
            lines = self._complete()
        bad = _non_canonical(lines)
        self.error = f"non-canonical subtasks in the reply: {bad}" if bad else None
        return lines

    def _complete(self) -> list[str]:
        start = time.perf_counter()
        reply = self.backend.complete(
            self.messages, temperature=self.config.temperature, max_tokens=self.config.max_tokens
        )
        self.model_seconds += time.perf_counter() - start  # the model's time as the planner sees it (HTTP included)
        self.requests += 1
        self.messages.append(assistant_message(reply.text))
        return plan_lines(reply.text)


def _non_canonical(lines: list[str]) -> list[str]:
    bad = []
    for line in lines:
        try:
            Subtask.parse(line)
        except SubtaskError:
            bad.append(line)
    return bad


def llm_planner_from_env(**overrides: Any) -> LLMPlanner:
    """An :class:`LLMPlanner` over the backend the environment names (TIERS_LLM_BASE_URL / _MODEL / _API_KEY,
    or TIERS_LLM_MODEL_PATH for a local transformers model); ``overrides`` go to :class:`LLMPlannerConfig`."""
    return LLMPlanner(make_backend(), LLMPlannerConfig.from_dict(overrides))
