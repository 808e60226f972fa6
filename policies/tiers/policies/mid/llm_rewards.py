"""Rewards from language by a language model: it writes a short reward program, run in the shared sandbox.

A torch closure cannot cross the sandbox, so the model does not write rewards; it writes a program against the
reward-building API of :mod:`tiers.policies.mid.reward_spec` (:data:`REWARD_API_DOC`)::

    subtask + affordance keypoints by name + point sets  --prompt (API doc, 3 examples)-->  chat model
    reply --extract code--> program --run_sandboxed--> API calls, each as JSON to this process:
        RewardRecorder validates and records them (term ids back to the program)
    recorder.spec() --build_staged--> StagedGuidance (the same builder as the templates)

The examples of the prompt (:data:`REWARD_EXAMPLES`: pick, place, open) are the templates of
:mod:`tiers.policies.mid.language_rewards` written as programs, so a model that copies them reproduces the
templates; what it adds (a box to keep out of, a different weight, a closest-step reach) is its own.

Nothing here crashes on a bad reply: a reply without code, a program the sandbox refuses (imports, ``_``
attribute walks: refused before any process starts) or stops (limits), a program that raises, or a spec that
fails validation each become a ``reason``. One repair round (``repair_rounds``) sends the reason back to the
model and asks for the whole program again. When no program succeeds, :class:`LLMRewardResult` carries the
template's rewards instead (``source`` ``"templates"``; ``fallback=False`` leaves ``staged`` None).
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass, field

import numpy as np

from tiers.core.config import Config
from tiers.policies.mid.affordances import Affordance, AffordanceKind
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.language_rewards import subtask_rewards
from tiers.policies.mid.perception import SceneCloud, SegmentationSource
from tiers.policies.mid.reward_spec import (
    KEYPOINT_MEANING,
    MAX_STAGES,
    MAX_TERMS,
    MAX_TERMS_PER_STAGE,
    MAX_WEIGHT,
    RewardRecorder,
    RewardSource,
    RewardSpec,
    RewardSpecError,
    build_staged,
)
from tiers.policies.mid.steering import StagedGuidance
from tiers.services.chat import (
    ChatBackend,
    ChatMessage,
    assistant_message,
    extract_code,
    system_message,
    user_message,
)
from tiers.services.sandbox import (
    SandboxLimitError,
    SandboxLimits,
    SandboxProgramError,
    SandboxViolation,
    run_sandboxed,
)

REWARD_API_DOC = f"""\
# You write reward programs that steer a robot arm's learned policy through one subtask, in stages.
# Python, no imports; builtins and math.* only. Base frame: x away from the robot, y to its left, z up; metres.
# scene_info() -> {{"kind": "grasp" | "handle" | "push" | "place", "target": name,
#     "keypoints": {{name: [x, y, z]}}, "approach": unit [dx, dy, dz] of the final approach,
#     "motion": [dx, dy, dz] m moved after contact, "opening": m finger opening on the way in,
#     "max_opening": m, "support_height": z of the table (m) or None, "point_sets": [names]}}
# Point sets: "obstacles" (every point above the table but the target's) and one per object, by its name.
# keypoint(name) -> [x, y, z] of one keypoint of the affordance.
# Reward terms; each returns a term id (int) to list in stages; 0 < weight <= {MAX_WEIGHT:g}; where a point is
# asked for, give [x, y, z] or a keypoint name:
# reach(point, weight=10.0, at="last") -> id: the tool at point by the chunk's end ("closest": at any step)
# keep_clear(what, margin=None, weight=100.0) -> id: the tool at least margin m from a point set (what: its name;
#     margin defaults to 0.04) or out of a box (what: [[xmin, ymin, zmin], [xmax, ymax, zmax]]; default 0.02)
# stay_above(height, margin=0.01, weight=100.0) -> id: the tool margin m above a horizontal surface at z = height
# keep_down(weight=1.0) -> id: the tool pointing down
# gripper(opening, weight=10.0) -> id: finger opening in m, 0 (closed) to max_opening
# stage(name, terms, enter=0.02, fallback=None, target=None) -> index: the next stage, steered by the listed term
#     ids until the tool is within enter m of target (default: the point of the stage's first reach term);
#     fallback: return to this stage from a later one when the tool is farther than that from target (None: never)
# Define the stages in order; every term must be in a stage (a term may be in several). At most {MAX_STAGES}
# stages, {MAX_TERMS} terms, {MAX_TERMS_PER_STAGE} per stage.
"""

_COMMON = 'info = scene_info()\ncommon = [keep_down(), keep_clear("obstacles"), stay_above(info["support_height"])]\n'

# (subtask, example affordance, program): the templates of language_rewards written as programs
REWARD_EXAMPLES: tuple[tuple[str, Affordance, str], ...] = (
    (
        "pick up the apple",
        Affordance(AffordanceKind.GRASP, "apple", np.array([0.5, 0.1, 0.04])),
        _COMMON + 'stage("pre-grasp", [reach("approach_start"), gripper(info["max_opening"])] + common)\n'
        'stage("grasp", [reach("point"), gripper(0.0)] + common)\n'
        'stage("lift", [reach("lifted"), gripper(0.0)] + common)',
    ),
    (
        "put the apple in the bowl",
        Affordance(AffordanceKind.PLACE, "bowl", np.array([0.45, -0.15, 0.05])),
        _COMMON + "# carrying: fall back when the tool is pushed 6 cm off the spot\n"
        'stage("carry", [reach("approach_start"), gripper(0.0)] + common, fallback=0.06)\n'
        'stage("lower", [reach("point"), gripper(0.0)] + common, fallback=0.06)\n'
        'stage("release", [reach("lifted"), gripper(info["max_opening"])] + common)',
    ),
    (
        "open the drawer",
        Affordance(
            AffordanceKind.HANDLE, "drawer", np.array([0.62, 0.0, 0.25]), opening=0.05, motion=np.array([-0.15, 0, 0])
        ),
        _COMMON + 'stage("pre-grasp", [reach("approach_start"), gripper(info["opening"])] + common)\n'
        'stage("grasp", [reach("point"), gripper(0.0)] + common)\n'
        'stage("pull", [reach("motion_end"), gripper(0.0)] + common)',
    ),
)


def reward_query(subtask: str, recorder: RewardRecorder) -> str:
    """The user turn for one subtask: the subtask, the affordance, its keypoints by name, the point sets."""
    info = recorder.scene_info()
    lines = [f"Subtask: {subtask}", f"Affordance: {info['kind']} of the {info['target']}", "Keypoints:"]
    for name, point in info["keypoints"].items():
        lines.append(f"  {name}: [{', '.join(f'{v:.3f}' for v in point)}]  # {KEYPOINT_MEANING[name]}")
    sets = [f"{name} ({len(recorder.point_sets[name])} points)" for name in info["point_sets"]]
    support = "none (no scene cloud)" if info["support_height"] is None else f"{info['support_height']:.3f} m"
    lines += [
        f"Point sets: {', '.join(sets) or 'none'}",
        f"Support height: {support}; opening: {info['opening']:.3f} m; max opening: {info['max_opening']:.3f} m",
        "Write the reward program.",
    ]
    return "\n".join(lines)


@dataclass
class LLMRewardConfig(Config):
    """How reward programs are asked for and run."""

    base_url: str | None = None  # OpenAI-compatible endpoint; None: TIERS_LLM_BASE_URL (as the high tier)
    model: str | None = None  # model name; None: TIERS_LLM_MODEL
    model_path: str | None = None  # a local transformers model folder instead (TIERS_LLM_MODEL_PATH)
    repair_rounds: int = 1  # times a failed program's reason is sent back for a new program
    max_tokens: int = 768  # completion length per request
    temperature: float = 0.0  # 0: greedy, reproducible programs
    # a reward program only records calls: a second of CPU and a few hundred calls are plenty
    limits: SandboxLimits = field(
        default_factory=lambda: SandboxLimits(cpu_seconds=1.0, wall_seconds=5.0, max_api_calls=500, api_seconds=5.0)
    )

    def __post_init__(self) -> None:
        if self.repair_rounds < 0 or self.max_tokens < 1:
            raise ValueError(
                f"repair_rounds must be >= 0 and max_tokens >= 1, got {self.repair_rounds}, {self.max_tokens}"
            )


@dataclass(frozen=True)
class LLMRewardResult:
    """Staged rewards written by the model, or the templates' with the reason the model's are not used.

    Attributes:
        staged: the rewards to hand down; None only when the model failed and ``fallback`` was off.
        source: who wrote ``staged`` (LLM, or TEMPLATES after a failure), None when ``staged`` is None.
        reason: why the model's rewards are not used ("" when they are): the last attempt's failure.
        failures: the reason of every failed attempt, in order (a repaired success keeps the first).
        program: the last program the model wrote ("" if none).
        spec: the recorded spec of a successful program.
        api_calls: API calls the last program made (0 when the sandbox refused it before it started).
        requests: model requests sent.
        model_seconds: s spent waiting for the model.
    """

    staged: StagedGuidance | None
    source: RewardSource | None
    reason: str = ""
    failures: tuple[str, ...] = ()
    program: str = ""
    spec: RewardSpec | None = None
    api_calls: int = 0
    requests: int = 0
    model_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """The model's program gave the rewards."""
        return self.source is RewardSource.LLM


class LLMRewardWriter:
    """Subtask + affordance -> staged rewards from a model-written program (module docstring)."""

    def __init__(self, backend: ChatBackend, config: LLMRewardConfig | None = None):
        self.backend = backend
        self.config = config or LLMRewardConfig()

    def messages(self, subtask: str, recorder: RewardRecorder) -> list[ChatMessage]:
        """The chat: system (API doc), the examples as user/assistant turns, then this subtask's query."""
        messages = [system_message(REWARD_API_DOC + "Answer with Python code only.")]
        for example, affordance, program in REWARD_EXAMPLES:
            scene = RewardRecorder(affordance, cloud=_example_cloud(affordance), max_opening=recorder.max_opening)
            messages += [user_message(reward_query(example, scene)), assistant_message(program)]
        return [*messages, user_message(reward_query(subtask, recorder))]

    def write(
        self,
        subtask: str,
        affordance: Affordance,
        fk: ArmFK,
        *,
        cloud: SceneCloud | None = None,
        max_opening: float = 0.08,
        fallback: bool = True,
    ) -> LLMRewardResult:
        """Ask for, run and build a reward program for ``subtask``; never raises on a bad reply or backend.

        Args:
            subtask: the subtask's text ("pick up the apple").
            affordance: its keypoint affordance (base frame).
            fk: torch forward kinematics of the arm, for the reward terms.
            cloud: the segmented scene (point sets, support height); None: no obstacle terms are possible.
            max_opening: m, the gripper's full opening.
            fallback: on failure, hand out the template's rewards (:func:`~tiers.policies.mid.language_rewards.
                subtask_rewards`) instead of None.
        """
        config = self.config
        messages = self.messages(subtask, RewardRecorder(affordance, cloud=cloud, max_opening=max_opening))
        failures: list[str] = []
        program, api_calls, requests, waited = "", 0, 0, 0.0
        for attempt in range(1 + config.repair_rounds):
            if attempt:
                messages += [
                    user_message(
                        f"That program failed: {failures[-1]}\nWrite the whole program again, fixed. "
                        "Answer with Python code only."
                    )
                ]
            started = time.perf_counter()
            try:
                reply = self.backend.complete(messages, temperature=config.temperature, max_tokens=config.max_tokens)
            except Exception as error:  # BackendError, or a local model's own failure: asking again would not help
                failures.append(f"the model could not be asked: {type(error).__name__}: {error}")
                break
            finally:
                waited += time.perf_counter() - started
                requests += 1
            messages.append(assistant_message(reply.text))
            program, spec, reason, api_calls = self._run(
                reply.text, RewardRecorder(affordance, cloud=cloud, max_opening=max_opening)
            )
            if spec is not None:
                return LLMRewardResult(
                    build_staged(spec, fk), RewardSource.LLM, failures=tuple(failures), program=program, spec=spec,
                    api_calls=api_calls, requests=requests, model_seconds=waited,
                )  # fmt: skip
            failures.append(reason)
        staged: StagedGuidance | None = None
        source: RewardSource | None = None
        if fallback:
            staged = subtask_rewards(affordance, fk, cloud=cloud, max_opening=max_opening)
            source = RewardSource.TEMPLATES
        return LLMRewardResult(
            staged, source, reason=failures[-1], failures=tuple(failures), program=program, api_calls=api_calls,
            requests=requests, model_seconds=waited,
        )  # fmt: skip

    def _run(self, reply: str, recorder: RewardRecorder) -> tuple[str, RewardSpec | None, str, int]:
        """Run the reply's program against ``recorder``: (program, its spec or None, the reason when None, API
        calls the program made)."""
        program = extract_code(reply)
        if "```" not in reply and not _is_python(program):
            # prose without a code block: say so, rather than report the prose's syntax error
            return "", None, f"the reply holds no Python code: {reply.strip()[:200]!r}", 0
        if not program.strip():
            return "", None, "the reply holds no Python code (an empty code block)", 0
        try:
            run_sandboxed(program, recorder.api(), limits=self.config.limits)
        except SandboxLimitError as error:  # before SandboxViolation, its base class
            return program, None, f"the sandbox stopped the program: {error}", recorder.calls
        except SandboxViolation as error:
            return program, None, f"the sandbox refused the program: {error}", recorder.calls
        except SandboxProgramError as error:
            return program, None, f"the program failed: {error}", recorder.calls
        try:
            return program, recorder.spec(), "", recorder.calls
        except RewardSpecError as error:
            return program, None, f"invalid reward spec: {error}", recorder.calls


def _example_cloud(affordance: Affordance) -> SceneCloud:
    """A tiny scene for a prompt example: the target's keypoint and one other object 15 cm to its side, on a
    support at z = 0 (so the example's query lists the point sets a real scene has)."""
    other = affordance.point + np.array([0.0, 0.15, 0.0])
    points = np.stack([affordance.point, other])
    names = {1: "cup" if affordance.target != "cup" else "can"}
    if affordance.kind is not AffordanceKind.HANDLE:  # fixtures are background, not segments
        names[0] = affordance.target
    return SceneCloud(points, np.full((2, 3), 0.5), np.array([0, 1], dtype=np.int32), names, SegmentationSource.MASKS)


def _is_python(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return bool(text.strip())
