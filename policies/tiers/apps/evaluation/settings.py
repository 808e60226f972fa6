"""What one ``tiers eval`` run is made of: the episodes to run, the settings every worker builds its runner
from, and the planners and controllers those settings may name.

Controllers: ``expert`` (the scripted expert with privileged state), or the folder of a low-tier policy
checkpoint (``tiers train``). Planners: the reference planners of :mod:`tiers.apps.evaluation.planning`
(``gold_echo``, ``shuffled``) and the high tier's ``grammar``, ``llm`` and ``code_as_policies``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tiers.apps.evaluation.learned import is_checkpoint
from tiers.apps.evaluation.planning import GoldPlanEcho, ShuffledGoldPlan
from tiers.apps.evaluation.report import EvalMode
from tiers.core.errors import ConfigError
from tiers.core.protocols import HighLevelPlanner
from tiers.policies.high.code_as_policies import CodeAsPoliciesPlanner
from tiers.policies.high.grammar_planner import GrammarPlanner
from tiers.policies.high.llm_planner import llm_planner_from_env
from tiers.services.chat import make_backend
from tiers.sim.backends import BACKENDS
from tiers.sim.kitchen.tasks import Task

CONTROLLERS = ("expert",)


def _grammar_planner(task: Task, seed: int) -> HighLevelPlanner:
    """The high tier's offline rule-based planner (reads the instruction only, never the gold plan)."""
    return GrammarPlanner()


def _llm_planner(task: Task, seed: int) -> HighLevelPlanner:
    """The high tier's LLM planner on the endpoint the environment names (TIERS_LLM_BASE_URL, TIERS_LLM_MODEL)."""
    return llm_planner_from_env()


def _code_as_policies_planner(task: Task, seed: int) -> HighLevelPlanner:
    """Code as Policies on the same endpoint: the program's subtask calls, run in the sandbox, are the plan."""
    return CodeAsPoliciesPlanner(make_backend())


PLANNERS: dict[str, Callable[[Task, int], HighLevelPlanner]] = {
    "gold_echo": lambda task, seed: GoldPlanEcho(task.plan),
    "shuffled": lambda task, seed: ShuffledGoldPlan(task.plan, seed=seed),
    "grammar": _grammar_planner,
    "llm": _llm_planner,
    "code_as_policies": _code_as_policies_planner,
}


@dataclass(frozen=True)
class EpisodeJob:
    """One episode to run: which task, from which seed, whether to film it."""

    index: int
    task_id: str
    seed: int
    record_video: bool = False


@dataclass(frozen=True)
class EvalSettings:
    """What every worker builds (picklable: it travels to worker processes)."""

    mode: EvalMode
    controller: str = "expert"  # who acts in control/integrated modes
    planner: str = "gold_echo"  # who plans in planner/integrated modes
    robot: str = "panda"
    backend: str = "mujoco"  # simulator, a name in tiers.sim.backends.BACKENDS
    video_dir: str | None = None  # where rollout videos go
    max_steps: int | None = None  # per-episode override of the truncation limit
    extra: dict[str, str] = field(default_factory=dict)
    hierarchy: str | None = None  # a hierarchy YAML (name or path) evaluated instead of planner/controller
    # torch's CPU threads in every worker: CPU reductions round by how they are split, so episodes replay
    # exactly only at one thread count; the same count everywhere keeps them independent of --workers/--parallel
    torch_threads: int = 1
    # corrections said at seeded random times in every hierarchy episode (tiers.apps.evaluation.injection)
    inject_corrections: int = 0

    def __post_init__(self) -> None:
        if self.torch_threads < 1:
            raise ConfigError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if self.inject_corrections < 0:
            raise ConfigError(f"inject_corrections must be >= 0, got {self.inject_corrections}")
        if self.inject_corrections and (self.hierarchy is None or self.mode is EvalMode.PLANNER):
            raise ConfigError(
                "--inject-corrections corrects a running hierarchy: pass --hierarchy NAME, not planner mode"
            )
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown simulator backend {self.backend!r}; available: {', '.join(BACKENDS)}")
        if self.hierarchy is not None:
            return  # the hierarchy's own tiers are checked when it loads
        if self.mode is EvalMode.CORRECTIONS:
            raise ConfigError("the corrections mode evaluates a whole hierarchy: pass --hierarchy NAME")
        learned = is_checkpoint(self.controller)
        if self.mode is not EvalMode.PLANNER and self.controller not in CONTROLLERS and not learned:
            available = ", ".join(CONTROLLERS)
            raise ConfigError(f"unknown controller {self.controller!r}; available: {available} or a checkpoint folder")
        if self.mode is not EvalMode.CONTROL and self.planner not in PLANNERS:
            raise ConfigError(f"unknown planner {self.planner!r}; available: {', '.join(PLANNERS)}")

    @property
    def agent(self) -> str:
        """What is evaluated, for reports."""
        if self.hierarchy is not None:
            return f"hierarchy={self.hierarchy}"
        if self.mode is EvalMode.PLANNER:
            return f"planner={self.planner}"
        if self.mode is EvalMode.CONTROL:
            return f"controller={self.controller}"
        return f"planner={self.planner}, controller={self.controller}"
