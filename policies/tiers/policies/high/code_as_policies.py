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

:class:`CodeAsPoliciesPlanner` is the ``HighLevelPlanner`` view: it runs the program once against
:func:`~tiers.policies.high.primitives.planning_api` (perception from the first observation, control calls
recorded) and hands out the subtasks the program asked for. :class:`CodeAsPoliciesRunner` executes the program
against the :class:`~tiers.policies.high.primitives.PrimitiveApi` it is handed, e.g. the kitchen's
:class:`tiers.apps.evaluation.kitchen_primitives.KitchenPrimitives`: the tier never builds a robot binding itself.
"""

from __future__ import annotations

import ast
import builtins
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tiers.core.config import Config
from tiers.core.errors import TiersError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.policies.high.primitives import PrimitiveApi, commands_from_program_calls, planning_api
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

    def write(self, instruction: str, api_names: Iterable[str]) -> GeneratedProgram:
        query = instruction.strip().rstrip(".") + "."
        code = self.policy(query)
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
