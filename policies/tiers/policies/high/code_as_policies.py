"""Code as Policies (Liang et al., 2023): a language model writes Python against the primitive API.

Pieces, as in the paper:

* a **prompt library** (:data:`API_DOC`, :data:`POLICY_EXAMPLES`, :data:`FUNCTION_EXAMPLES`): few-shot examples
  written as ``# instruction`` comments followed by code over the primitive API
  (:class:`tiers.policies.high.primitives.PrimitiveApi`);
* a **language-model program** (:class:`LanguageModelProgram`): prompt + query -> code, optionally keeping the
  session history (earlier queries and the code written for them stay in the prompt);
* **hierarchical code generation** (:class:`FunctionGenerator`): the generated code is parsed, every function it
  calls that is neither defined, nor a builtin, nor an API primitive is written by a second program from its
  call site (``# define function: closest_to(name, names).``), and the new functions are searched again,
  recursively, up to ``max_depth`` levels;
* execution in the **sandbox** (:func:`tiers.services.sandbox.run_sandboxed`): helper definitions, then the
  policy code, in a child process that reaches the real primitives only through the JSON bridge.

:class:`CodeAsPoliciesPlanner` is the open-loop ``HighLevelPlanner`` view (planner-only scoring): it runs the
program once against :func:`~tiers.policies.high.primitives.planning_api` (perception from the first observation,
control calls recorded) and hands out the subtasks the program asked for. :class:`ClosedLoopCodeAsPolicies` is the
hierarchy's ``code_as_policies`` planner: the program runs in the sandbox *while* the hierarchy executes it, paused
at each control call until the hierarchy's own mid and low tiers have carried that subtask out, its perception
answered from the current observation (see its docstring). :class:`CodeAsPoliciesRunner` executes the program
against the :class:`~tiers.policies.high.primitives.PrimitiveApi` it is handed, e.g. the kitchen's
:class:`tiers.apps.evaluation.kitchen_primitives.KitchenPrimitives`: the tier never builds a robot binding itself.
"""

from __future__ import annotations

import ast
import builtins
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tiers.core.config import Config
from tiers.core.errors import TiersError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.policies.high.primitives import (
    ObjectPerception,
    ObservationPerception,
    PrimitiveApi,
    commands_from_program_calls,
    planning_api,
)
from tiers.services.chat import ChatBackend, ChatMessage, assistant_message, extract_code, system_message, user_message
from tiers.services.sandbox import SandboxLimits, SandboxResult, run_sandboxed
from tiers.services.sandbox_child import SAFE_BUILTINS

API_DOC = """\
# The robot's Python API (nothing else is available: no imports; builtins and math.* only).
# Frames: robot base frame, x away from the robot, y to its left, z up; metres.
# get_obj_names() -> names of the objects the camera sees, e.g. ["apple", "bowl"]
# get_obj_pos(name) -> [x, y, z], centroid of the object's visible surface
# get_bbox(name) -> [[xmin, ymin, zmin], [xmax, ymax, zmax]]
# get_points(name, max_points) -> [[x, y, z], ...] visible surface points
# get_ee_pose() -> [x, y, z, qw, qx, qy, qz] of the gripper; get_gripper_opening() -> metres
# grasp(name) -> bool: pick the object up
# place(name, relation, target) -> bool: relation is "in", "on", "to the left of", "to the right of",
#     "in front of", "behind" or "next to"; target is an object or "drawer", "cabinet", "sink", "shelf"
# open_fixture(name) / close_fixture(name) -> bool: name is "drawer" or "cabinet"
# push(name, direction) -> bool: direction is "to the left", "to the right", "forward" or "backward"
# move_to(position, quaternion=None) -> bool: straight-line gripper move
# execute(command) -> bool: hand a subtask such as "pick up the apple" to the learned low-level policy
# say(text): tell the person something
"""

POLICY_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("put the apple in the bowl.", 'grasp("apple")\nplace("apple", "in", "bowl")'),
    (
        "open the drawer, put the can inside and close it.",
        'open_fixture("drawer")\ngrasp("can")\nplace("can", "in", "drawer")\nclose_fixture("drawer")',
    ),
    ("put the mug to the left of the plate.", 'grasp("cup")\nplace("cup", "to the left of", "plate")'),
    ("push the box away from you.", 'push("box", "forward")'),
    (
        "put all the fruit in the basket.",
        'for name in get_obj_names():\n    if name in ["apple", "banana"]:\n        grasp(name)\n'
        '        place(name, "in", "basket")',
    ),
    (
        "put the object closest to the bowl on the plate.",
        'names = [n for n in get_obj_names() if n not in ["bowl", "plate"]]\nname = closest_to("bowl", names)\n'
        'grasp(name)\nplace(name, "on", "plate")',
    ),
    ("tell me what you see.", 'say("I see " + ", ".join(get_obj_names()))'),
    ("let the policy stack the can on the box.", 'execute("pick up the can")\nexecute("put the can on the box")'),
    ("lift the gripper by 10 cm.", "pose = get_ee_pose()\nmove_to([pose[0], pose[1], pose[2] + 0.1])"),
)

FUNCTION_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "closest_to(name, names).",
        "def closest_to(name, names):\n    here = get_obj_pos(name)\n"
        "    return min(names, key=lambda n: distance(get_obj_pos(n), here))",
    ),
    ("distance(a, b).", "def distance(a, b):\n    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))"),
    ("leftmost(names).", "def leftmost(names):\n    return max(names, key=lambda n: get_obj_pos(n)[1])"),
    (
        "height_of(name).",
        "def height_of(name):\n    box = get_bbox(name)\n    return box[1][2] - box[0][2]",
    ),
)


class CodeGenerationError(TiersError):
    """The model's code could not be completed (no code, a helper never defined, recursion too deep)."""


@dataclass
class LMPConfig(Config):
    """One language-model program."""

    maintain_session: bool = False  # keep earlier queries and their code in the prompt (multi-turn use)
    max_tokens: int = 512  # completion length per request
    temperature: float = 0.0  # 0: greedy


class LanguageModelProgram:
    """Prompt (API doc + few-shot examples) + query -> code; see the module docstring.

    Attributes:
        history: (query, code) pairs of this session, kept in the prompt when ``maintain_session``.
        model_seconds: s spent waiting for the model.
        requests: requests sent.
    """

    def __init__(
        self,
        backend: ChatBackend,
        examples: Iterable[tuple[str, str]],
        *,
        query_prefix: str = "# ",
        preamble: str = API_DOC,
        config: LMPConfig | None = None,
    ):
        self.backend = backend
        self.examples = tuple(examples)
        self.query_prefix = query_prefix
        self.preamble = preamble
        self.config = config or LMPConfig()
        self.history: list[tuple[str, str]] = []
        self.model_seconds = 0.0
        self.requests = 0

    def messages(self, query: str, context: str = "") -> list[ChatMessage]:
        """The chat for ``query``: system (API doc), examples as turns, the session so far, the query."""
        messages = [system_message(self.preamble + "Answer with Python code only.")]
        turns = [*self.examples, *(self.history if self.config.maintain_session else [])]
        for example_query, code in turns:
            messages += [user_message(self.query_prefix + example_query), assistant_message(code)]
        prompt = (context + "\n" if context else "") + self.query_prefix + query
        return [*messages, user_message(prompt)]

    def __call__(self, query: str, context: str = "") -> str:
        """The code the model writes for ``query`` (``context``: code or facts placed before the query)."""
        start = time.perf_counter()
        reply = self.backend.complete(
            self.messages(query, context), temperature=self.config.temperature, max_tokens=self.config.max_tokens
        )
        self.model_seconds += time.perf_counter() - start
        self.requests += 1
        code = extract_code(reply.text)
        if not code.strip():
            raise CodeGenerationError(f"the model wrote no code for {query!r}")
        self.history.append((query, code))
        return code


def undefined_functions(code: str, known: Iterable[str]) -> list[tuple[str, str]]:
    """Functions ``code`` calls by name that it neither defines nor assigns, and that are not in ``known``.

    Returns (name, signature) pairs in first-call order; the signature is written from the call site
    (``closest_to(name, names)``; arguments that are not plain names become ``arg0``, ``arg1``...).

    Raises:
        CodeGenerationError: the code is not valid Python.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        raise CodeGenerationError(f"generated code is not valid Python (line {error.lineno}: {error.msg})") from None
    defined = set(known)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            defined.add(node.name)
            defined.update(arg.arg for arg in node.args.args)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name in defined or name in found:
                continue
            args = [a.id if isinstance(a, ast.Name) else f"arg{i}" for i, a in enumerate(node.args)]
            args += [f"{k.arg}={k.arg}" for k in node.keywords if k.arg]
            found[name] = f"{name}({', '.join(args)})"
    calls = sorted(
        found.items(),
        key=lambda item: min(
            (n.lineno, n.col_offset)
            for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == item[0]
        ),
    )
    return calls


class FunctionGenerator:
    """Writes the definitions of undefined helper functions, recursively (hierarchical code generation)."""

    def __init__(self, program: LanguageModelProgram, *, max_depth: int = 3):
        """
        Args:
            program: the function-writing LMP (its examples are :data:`FUNCTION_EXAMPLES`-style).
            max_depth: helper levels allowed below the policy code (1: the policy's helpers may not call new ones).
        """
        self.program = program
        self.max_depth = max_depth

    def complete(self, code: str, known: Iterable[str]) -> dict[str, str]:
        """Definitions (name -> source) of every helper ``code`` needs, written breadth-first.

        Raises:
            CodeGenerationError: a helper is still undefined at ``max_depth`` or a reply does not define it.
        """
        known = set(known)
        helpers: dict[str, str] = {}
        frontier = [(name, signature, 1) for name, signature in undefined_functions(code, known)]
        while frontier:
            name, signature, depth = frontier.pop(0)
            if name in helpers:
                continue
            if depth > self.max_depth:
                raise CodeGenerationError(
                    f"helper {signature} is {depth} levels deep; the limit is {self.max_depth} "
                    f"(defined so far: {sorted(helpers)})"
                )
            source = self.program(f"define function: {signature}.")
            if not any(isinstance(n, ast.FunctionDef) and n.name == name for n in ast.walk(_parse(source))):
                raise CodeGenerationError(f"asked to define {signature}, the model wrote:\n{source}")
            helpers[name] = source
            taken = known | set(helpers)
            frontier += [(n, s, depth + 1) for n, s in undefined_functions(source, taken) if n not in helpers]
        return helpers


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as error:
        raise CodeGenerationError(f"generated code is not valid Python (line {error.lineno}: {error.msg})") from None


@dataclass
class CodeAsPoliciesConfig(Config):
    """Code as Policies settings."""

    max_depth: int = 3  # levels of helper functions generated below the policy code
    maintain_session: bool = True  # the policy LMP keeps earlier instructions of the episode in its prompt
    limits: SandboxLimits = field(default_factory=SandboxLimits)  # the sandbox's CPU / wall / memory limits
    camera: str = "front"  # the camera perception queries read (planner-only runs)
    max_programs: int = 4  # closed loop: programs written per instruction (the first, then after failures/errors)
    step_timeout_s: float = 120.0  # closed loop: s to wait for a running program to reach its next command

    def __post_init__(self) -> None:
        if self.max_programs < 1:
            raise ValueError(f"max_programs must be >= 1, got {self.max_programs}")
        if self.step_timeout_s <= 0:
            raise ValueError(f"step_timeout_s must be > 0 s, got {self.step_timeout_s}")


@dataclass(frozen=True)
class GeneratedProgram:
    """A policy program and the helpers generated for it (``source`` is what runs: helpers first)."""

    query: str
    code: str
    helpers: dict[str, str]

    @property
    def source(self) -> str:
        return "\n\n".join([*self.helpers.values(), self.code]) + "\n"


class CodeWriter:
    """Policy LMP + function generator: instruction -> complete program (see the module docstring)."""

    def __init__(self, backend: ChatBackend, config: CodeAsPoliciesConfig | None = None):
        self.config = config or CodeAsPoliciesConfig()
        self.policy = LanguageModelProgram(
            backend, POLICY_EXAMPLES, config=LMPConfig(maintain_session=self.config.maintain_session)
        )
        self.functions = FunctionGenerator(
            LanguageModelProgram(backend, FUNCTION_EXAMPLES, config=LMPConfig()), max_depth=self.config.max_depth
        )

    @property
    def model_seconds(self) -> float:
        return self.policy.model_seconds + self.functions.program.model_seconds

    @property
    def requests(self) -> int:
        return self.policy.requests + self.functions.program.requests

    def write(self, instruction: str, api_names: Iterable[str], context: str = "") -> GeneratedProgram:
        """The program for ``instruction``; ``context`` (comment lines: what was done, what failed, what is in
        view) goes into the prompt before the query."""
        query = instruction.strip().rstrip(".") + "."
        code = self.policy(query, context)
        known = set(api_names) | set(SAFE_BUILTINS) | {"print"} | set(dir(builtins)) - {"open", "eval", "exec"}
        helpers = self.functions.complete(code, known)
        return GeneratedProgram(query, code, helpers)


class CodeAsPoliciesPlanner:
    """Code as Policies as a ``HighLevelPlanner``: the program's subtask calls become the plan.

    Attributes:
        program: the last generated program.
        result: its sandbox result (calls, printed output).
        error: why planning failed (generation or sandbox), None if it did not.
        overhead_seconds: s spent outside the model for the last plan (prompting, AST, sandbox).
    """

    name = "code_as_policies"

    def __init__(self, backend: ChatBackend, config: CodeAsPoliciesConfig | None = None):
        self.config = config or CodeAsPoliciesConfig()
        self.writer = CodeWriter(backend, self.config)
        self.program: GeneratedProgram | None = None
        self.result: SandboxResult | None = None
        self.error: str | None = None
        self.overhead_seconds = 0.0
        self._instruction = ""
        self._queue: list[str] = []
        self._planned = False
        self._pending_correction: LanguageCommand | None = None

    def reset(self, instruction: str) -> None:
        """A new episode is a new session: the policy program forgets earlier instructions."""
        self._instruction = instruction
        self.writer.policy.history.clear()
        self._queue, self._planned, self.error = [], False, None
        self._pending_correction = None

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        if not self._planned:
            self._planned = True
            self._queue = self._plan(self._instruction, observation)
        if not self._queue:
            return None
        command = LanguageCommand(
            self._queue.pop(0),
            CommandStyle.SUBTASK,
            CommandSource.PLANNER,
            observation.timestamp,
            replaces=self._pending_correction,
        )
        self._pending_correction = None
        return command

    def handle_correction(self, correction: LanguageCommand) -> None:
        """A stop clears the plan; other corrections are planned as a new instruction of the same session
        (the policy LMP keeps the earlier instruction and code in its prompt) at the next call."""
        self._queue = []
        if correction.style is CommandStyle.STOP:
            return
        self._instruction, self._planned = correction.text, False
        self._pending_correction = correction

    def _plan(self, instruction: str, observation: Observation) -> list[str]:
        start = time.perf_counter()
        model_before = self.writer.model_seconds
        api, _ = planning_api(observation, self.config.camera)
        try:
            self.program = self.writer.write(instruction, api)
            self.result = run_sandboxed(self.program.source, api, limits=self.config.limits)
            steps = commands_from_program_calls(self.result.calls)
        except TiersError as error:
            self.error = f"{type(error).__name__}: {error}"
            steps = []
        self.overhead_seconds = time.perf_counter() - start - (self.writer.model_seconds - model_before)
        return [step.text for step in steps]


CONTROL_PRIMITIVES = ("grasp", "place", "open_fixture", "close_fixture", "push", "execute")  # -> subtask commands


class ProgramStoppedError(TiersError):
    """Raised inside a control primitive when the planner stops a running program (a failure, a correction, a
    reset); the program sees it as ``ApiError`` and its run ends."""


@dataclass(frozen=True)
class ProgramEvent:
    """What a stepped program handed the planner: the subtask it asks for, or how it ended."""

    command: str | None = None  # canonical subtask text the program is paused on
    error: str | None = None  # why it stopped (refused, a limit, its own exception); None with no command: it finished


class SteppedProgram:
    """One program running in the sandbox on a thread, paused at each control call until the caller resumes it.

    ::

        caller (hierarchy tick)             program thread (sandbox child via the JSON bridge)
        next_event() ◀── command ────────── grasp("cup")        blocks on the reply
           ... the mid and low tiers execute "pick up the cup" ...
        resume() ─────── True ────────────▶ place("cup", "in", "drawer")
        next_event() ◀── command ────────── (blocks again)       or ends: ProgramEvent(error=None | why)

    Only one side runs at a time, so perception primitives (run on the program thread) read the caller's
    current observation safely. :meth:`stop` makes the paused call (and every later control call) raise
    :class:`ProgramStoppedError`.
    """

    def __init__(
        self,
        source: str,
        api_for: Callable[[Callable[..., bool]], Mapping[str, Callable[..., Any]]],
        limits: SandboxLimits,
    ) -> None:
        """
        Args:
            source: the program (helpers first).
            api_for: control function -> the API the program runs against; its control primitives must call the
                control function with (primitive name, *args).
            limits: sandbox limits (``api_seconds`` bounds the whole run: executing commands counts as API time).
        """
        self.limits = limits
        self.result: SandboxResult | None = None
        self.paused = False  # the program waits on a command (set and read by the caller's thread only)
        self._events: queue.Queue[ProgramEvent] = queue.Queue()
        self._replies: queue.Queue[str | None] = queue.Queue()  # None: the command succeeded, go on; text: stop
        self._stopped: str | None = None
        api = api_for(self._control)
        self._thread = threading.Thread(target=self._run, args=(source, api), name="cap-program", daemon=True)
        self._thread.start()

    def next_event(self, timeout_s: float) -> ProgramEvent:
        """Wait for the program's next command, or its end (an error after ``timeout_s``)."""
        try:
            event = self._events.get(timeout=timeout_s)
        except queue.Empty:
            self.stop(f"no command within {timeout_s} s")
            return ProgramEvent(error=f"the program reached no command within {timeout_s} s")
        self.paused = event.command is not None
        return event

    def resume(self) -> None:
        """The command the program is paused on was carried out: its call returns True."""
        if self.paused:
            self.paused = False
            self._replies.put(None)

    def stop(self, reason: str) -> None:
        """End the program: the paused call raises :class:`ProgramStoppedError` (``reason``); waits for the thread."""
        self._stopped = reason
        if self.paused:
            self.paused = False
            self._replies.put(reason)
        self._thread.join(self.limits.wall_seconds + 5.0)

    def _control(self, name: str, *args: Any) -> bool:
        if self._stopped is not None:
            raise ProgramStoppedError(self._stopped)
        steps = commands_from_program_calls([(name, list(args), {})])  # validates: a bad subtask is an ApiError
        if not steps:
            raise ValueError(f"{name}{tuple(args)} names no subtask")
        self._events.put(ProgramEvent(command=steps[0].text))
        reply = self._replies.get()
        if reply is not None:
            self._stopped = reply
            raise ProgramStoppedError(reply)
        return True

    def _run(self, source: str, api: Mapping[str, Callable[..., Any]]) -> None:
        event = ProgramEvent()
        try:
            self.result = run_sandboxed(source, api, limits=self.limits)
        except TiersError as error:
            event = ProgramEvent(error=f"{type(error).__name__}: {error}")
        except Exception as error:  # the caller must never wait forever on a program that crashed the bridge
            event = ProgramEvent(error=f"{type(error).__name__}: {error}")
        self._events.put(event)


class ClosedLoopCodeAsPolicies:
    """Code as Policies as a hierarchy's planner: the program drives the hierarchy command by command.

    At the first call the policy LMP writes a program for the instruction (helpers generated as usual), and it
    starts in the sandbox (:class:`SteppedProgram`). Its ``grasp``/``place``/``open_fixture``/``close_fixture``/
    ``push``/``execute`` calls become subtask commands (``grasp("cup")`` -> "pick up the cup") that the
    hierarchy's own mid and low tiers execute; the call returns True once the command ended and the runtime asks
    for the next one, so the code after it runs on what the robot sees *then*: ``get_obj_pos`` & co. answer from
    the current observation through ``perception`` (in a hierarchy, the mid tier's RGB-D point cloud).
    ``move_to`` is refused (a pose is not a subtask: the primitive runner has it).

    Closed loop: when the runtime reports a failed command (:meth:`handle_failure`, after the mid tier's own
    retries), the program is stopped and, at the next call, a new one is written whose prompt says what was done,
    what failed and why, and what is in view now; a program that errors is re-written the same way; a subtask
    correction stops the program, the runtime executes it, and the next program is told "the person said ...".
    At most ``max_programs`` programs per instruction; the instruction is done when a program ends.

    Attributes:
        programs: the programs written for this instruction, in order.
        done: subtasks carried out this instruction (in order).
        said: what programs passed to ``say``.
        error: why the last program stopped, None if it ran to its end.
    """

    name = "code_as_policies"

    def __init__(
        self,
        backend: ChatBackend,
        config: CodeAsPoliciesConfig | None = None,
        *,
        perception: Callable[[Observation], ObjectPerception] | None = None,
    ) -> None:
        """
        Args:
            backend: the chat model that writes the programs.
            config: CaP settings (sandbox limits: ``api_seconds`` must cover the episode, since executing the
                commands counts as API time).
            perception: observation -> object queries; None: :class:`ObservationPerception` on ``config.camera``.
        """
        self.config = config or CodeAsPoliciesConfig()
        self.writer = CodeWriter(backend, self.config)
        self.perceive = perception or (lambda observation: ObservationPerception(observation, self.config.camera))
        self._program: SteppedProgram | None = None
        self.reset("")

    def reset(self, instruction: str) -> None:
        """A new instruction is a new session: the running program is stopped, the policy LMP forgets."""
        self._stop_program("a new instruction")
        self.writer.policy.history.clear()
        self.instruction = instruction
        self.programs: list[GeneratedProgram] = []
        self.done: list[str] = []
        self.said: list[str] = []
        self.error: str | None = None
        self._notes: list[str] = []  # what the next program's prompt must say (failures, corrections, errors)
        self._running: str | None = None  # the command handed out last, until the next call (then it is done)
        self._finished = False
        self._replaces: LanguageCommand | None = None
        self._observation: Observation | None = None
        self._perception: ObjectPerception | None = None

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        self._observation, self._perception = observation, None
        if self._running is not None:  # asked again: the command handed out last has ended without a failure
            self.done.append(self._running)
            self._running = None
            if self._program is not None:
                self._program.resume()
        while True:
            if self._program is None:
                if self._finished or len(self.programs) >= self.config.max_programs:
                    return None
                if not self._start_program():
                    continue
            assert self._program is not None
            event = self._program.next_event(self.config.step_timeout_s)
            if event.command is not None:
                self._running = event.command
                command = LanguageCommand(
                    event.command, CommandStyle.SUBTASK, CommandSource.PLANNER, observation.timestamp, self._replaces
                )
                self._replaces = None
                return command
            self._program = None
            if event.error is None:
                self._finished = True
                return None
            self.error = event.error
            self._notes.append(f"your last program stopped: {event.error}")

    def handle_failure(self, failed: LanguageCommand, reason: str) -> None:
        """``failed`` did not achieve its effect: stop the program; the next one is told why (see the class)."""
        if self._running == failed.text:
            self._running = None  # it did not happen
        self._stop_program(f"'{failed.text}' failed: {reason}")
        self._notes.append(f"failed: {failed.text} ({reason})")
        self._finished = False
        self._replaces = failed

    def handle_correction(self, correction: LanguageCommand) -> None:
        """A stop ends the instruction's programs; a subtask correction stops the running program, is executed by
        the runtime (and counted as done when the next command is asked for), and the next program is told."""
        self._running = None  # interrupted: not done
        if correction.style is CommandStyle.STOP:
            self._stop_program("stopped by the person")
            self._finished = True
            return
        self._stop_program(f"corrected: {correction.text}")
        self._notes.append(f"the person said: {correction.text}")
        self._running = correction.text if correction.style is CommandStyle.SUBTASK else None
        self._finished = False
        self._replaces = correction

    def context(self) -> str:
        """The comment lines put before the instruction in the next program's prompt."""
        lines = []
        if self.done:
            lines.append("# done so far: " + "; ".join(self.done))
        lines += [f"# {note}" for note in self._notes]
        if self._observation is not None:
            try:
                lines.append("# objects in view now: " + ", ".join(self._seen().object_names()))
            except (TiersError, ValueError) as error:
                lines.append(f"# perception failed: {error}")
        if self.programs:
            lines.append("# write the code for what remains of the task, from the current state.")
        return "\n".join(lines)

    def _start_program(self) -> bool:
        """Write the next program and start it; False (and a note) when it could not be written."""
        context = self.context()
        self._notes = []
        placeholder = GeneratedProgram(self.instruction, "", {})
        try:
            program = self.writer.write(self.instruction, self._api(_refuse_control), context)
        except TiersError as error:
            self.programs.append(placeholder)
            self.error = f"{type(error).__name__}: {error}"
            self._notes.append(f"no program could be written: {self.error}")
            return False
        self.programs.append(program)
        self._program = SteppedProgram(program.source, self._api, self.config.limits)
        return True

    def _stop_program(self, reason: str) -> None:
        if self._program is not None:
            self._program.stop(reason)
            self._program = None

    def _seen(self) -> ObjectPerception:
        if self._observation is None:
            raise ValueError("nothing observed yet")
        if self._perception is None:
            self._perception = self.perceive(self._observation)
        return self._perception

    def _api(self, control: Callable[..., bool]) -> dict[str, Callable[..., Any]]:
        def observed() -> Observation:
            if self._observation is None:
                raise ValueError("nothing observed yet")
            return self._observation

        def move_to(*args: Any) -> bool:
            raise ValueError("move_to is not a subtask: in a hierarchy, use grasp/place/open_fixture/... or execute")

        def control_of(name: str) -> Callable[..., bool]:
            return lambda *args: control(name, *args)

        return {
            "get_obj_names": lambda: self._seen().object_names(),
            "get_obj_pos": lambda name: self._seen().position(name),
            "get_bbox": lambda name: self._seen().bbox(name),
            "get_points": lambda name, max_points=256: self._seen().points(name, max_points),
            "get_ee_pose": lambda: observed().ee_pose,
            "get_gripper_opening": lambda: observed().gripper_opening,
            "move_to": move_to,
            "say": lambda text: self.said.append(str(text)),
            **{name: control_of(name) for name in CONTROL_PRIMITIVES},
        }


def _refuse_control(name: str, *args: Any) -> bool:
    raise ValueError("only the names of this API are read while writing")


@dataclass(frozen=True)
class CodeAsPoliciesOutcome:
    """One instruction executed by :class:`CodeAsPoliciesRunner`."""

    program: GeneratedProgram
    result: SandboxResult | None
    success: bool  # the task's success predicate after the program ended
    error: str | None  # why the program failed to generate or run, None if it ran to the end


class CodeAsPoliciesRunner:
    """Executes Code as Policies programs against a primitive API bound to a robot (handed in by the caller).

    Attributes:
        primitives: the API the last program ran against.
    """

    def __init__(self, backend: ChatBackend, config: CodeAsPoliciesConfig | None = None):
        self.config = config or CodeAsPoliciesConfig()
        self.writer = CodeWriter(backend, self.config)
        self.primitives: PrimitiveApi | None = None

    def run(self, primitives: PrimitiveApi, instruction: str) -> CodeAsPoliciesOutcome:
        """Write the program for ``instruction`` and run it in the sandbox against ``primitives.api()``.

        ``primitives`` is bound to a robot at the start of an episode, e.g.
        ``KitchenPrimitives(env, low_tier=driver)`` (:mod:`tiers.apps.evaluation.kitchen_primitives`) on a reset
        kitchen env, whose every motion passes the safety check; success is its ``success`` after the program.
        """
        self.primitives = primitives
        api: Mapping[str, Callable[..., Any]] = primitives.api()
        program = GeneratedProgram(instruction, "", {})
        try:
            program = self.writer.write(instruction, api)
            result = run_sandboxed(program.source, api, limits=self.config.limits)
        except TiersError as error:
            return CodeAsPoliciesOutcome(program, None, primitives.success, f"{type(error).__name__}: {error}")
        return CodeAsPoliciesOutcome(program, result, primitives.success, None)
