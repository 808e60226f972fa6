"""Episode runners for ``tiers eval``: one per evaluation mode, built once per worker.

Modes (Kitchen-R):
    planner     the planner sees the instruction and the first observation; its plan is scored against
                the gold plan (exact match, per-step accuracy); nothing is executed.
    control     the gold plan is given; the controller executes it; success is the task's predicate.
    integrated  the planner's plan is executed by the controller; success is the task's predicate, so a
                wrong plan fails the episode.

Controllers: ``expert`` (the scripted expert with privileged state), or the folder of a low-tier policy
checkpoint (``tiers train``), run by :class:`tiers.apps.evaluation.learned.LearnedController`. Planners:
the reference planners of :mod:`tiers.apps.evaluation.planning` (``gold_echo``, ``shuffled``); learned and
LLM planners plug in with the high tier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tiers.apps.evaluation.learned import LearnedController, is_checkpoint
from tiers.apps.evaluation.planning import GoldPlanEcho, ShuffledGoldPlan, collect_plan, score_plan
from tiers.apps.evaluation.report import EpisodeResult, EvalMode
from tiers.commands.subtasks import Subtask
from tiers.core.errors import ConfigError, ContractError
from tiers.core.observation import Observation
from tiers.core.protocols import HighLevelPlanner
from tiers.services.video import write_video
from tiers.sim.backends import BACKENDS
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.expert import ScriptedExpert
from tiers.sim.kitchen.tasks import Task, get_task

CONTROLLERS = ("expert",)


def _grammar_planner(task: Task, seed: int) -> HighLevelPlanner:
    """The high tier's offline rule-based planner (reads the instruction only, never the gold plan)."""
    from tiers.policies.high.grammar_planner import GrammarPlanner

    return GrammarPlanner()


def _llm_planner(task: Task, seed: int) -> HighLevelPlanner:
    """The high tier's LLM planner on the endpoint the environment names (TIERS_LLM_BASE_URL, TIERS_LLM_MODEL)."""
    from tiers.policies.high.llm_planner import llm_planner_from_env

    return llm_planner_from_env()


def _code_as_policies_planner(task: Task, seed: int) -> HighLevelPlanner:
    """Code as Policies on the same endpoint: the program's subtask calls, run in the sandbox, are the plan."""
    from tiers.policies.high.code_as_policies import CodeAsPoliciesPlanner
    from tiers.services.chat import make_backend

    return CodeAsPoliciesPlanner(make_backend())


PLANNERS: dict[str, Callable[[Task, int], HighLevelPlanner]] = {
    "gold_echo": lambda task, seed: GoldPlanEcho(task.plan),
    "shuffled": lambda task, seed: ShuffledGoldPlan(task.plan, seed=seed),
    "grammar": _grammar_planner,
    "llm": _llm_planner,
    "code_as_policies": _code_as_policies_planner,
}
SETTLE_STEPS = 10  # control steps (0.5 s) the controller holds still after finishing, before judging


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

    def __post_init__(self) -> None:
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


class EpisodeRunner:
    """Runs :class:`EpisodeJob` s of one mode in one environment (one per worker)."""

    def __init__(self, settings: EvalSettings):
        self.settings = settings
        self.env = KitchenEnv(
            None, backend=settings.backend, robot=settings.robot, render=False, max_steps=settings.max_steps
        )
        self._expert: ScriptedExpert | None = None  # built on first use: planner mode never needs one
        self._learned: LearnedController | None = None  # a policy checkpoint, checked against the robot at load
        if settings.mode is not EvalMode.PLANNER and is_checkpoint(settings.controller):
            self._learned = LearnedController(settings.controller, self.env)

    def __call__(self, job: EpisodeJob) -> EpisodeResult:
        task = get_task(job.task_id)
        start = time.perf_counter()
        observation, _ = self.env.reset(seed=job.seed, options={"task": task})
        if self.settings.mode is not EvalMode.CONTROL:  # planners see the cameras (VLMs read images)
            observation = replace(self.env.backend.observe(render=True), instruction=task.instruction)
        if self.settings.mode is EvalMode.PLANNER:
            result = self._score_planner(task, job, observation, start)
        else:
            plan: Sequence[Subtask] = task.plan
            planned: dict[str, object] = {}
            if self.settings.mode is EvalMode.INTEGRATED:
                planner = PLANNERS[self.settings.planner](task, job.seed)
                texts = collect_plan(planner, task.instruction, observation)
                score = score_plan(texts, task.plan)
                planned = {"plan_exact": float(score.exact), "step_accuracy": score.step_accuracy}
                try:
                    plan = [Subtask.parse(text) for text in texts]
                except ContractError as error:
                    return self._result(task, job, False, f"planner output is not executable: {error}", start, planned)
            result = self._execute(task, job, plan, start)
            result.extra.update(planned)
        result.wall_time = time.perf_counter() - start
        return result

    def _score_planner(self, task: Task, job: EpisodeJob, observation: Observation, start: float) -> EpisodeResult:
        planner = PLANNERS[self.settings.planner](task, job.seed)
        score = score_plan(collect_plan(planner, task.instruction, observation), task.plan)
        extra = {"step_accuracy": score.step_accuracy, "plan": list(score.predicted)}
        return self._result(task, job, score.exact, score.reason, start, extra)

    def _execute(self, task: Task, job: EpisodeJob, plan: Sequence[Subtask], start: float) -> EpisodeResult:
        env = self.env
        if self._learned is not None:
            name = f"{job.index:04d}_{job.task_id.replace('/', '_')}_seed{job.seed}.mp4"
            video = Path(self.settings.video_dir) / name if job.record_video and self.settings.video_dir else None
            return self._learned.run(task, plan, seed=job.seed, video_path=video, start=start)
        if self._expert is None:
            self._expert = ScriptedExpert.from_kitchen(env.backend)  # type: ignore[arg-type]
        expert = self._expert
        observation = env.backend.observe(render=False)
        expert.reset(plan, env.scene_state(), observation)
        frames: list[NDArray[np.uint8]] = []
        info: dict[str, object] = {"success": False, "reason": "no step taken"}
        finished_at: int | None = None
        steps = 0
        while True:
            if job.record_video:
                frames.append(env.backend.observe(render=True).images["front"])
            state = env.scene_state()
            step = expert.act(observation, state)
            observation, _, terminated, truncated, info = env.step(step.action)
            steps += 1
            if step.done and finished_at is None:
                finished_at = steps
            if terminated or truncated or (finished_at is not None and steps - finished_at >= SETTLE_STEPS):
                break
        reason = "" if info["success"] else str(info["reason"])
        if expert.failure is not None and not info["success"]:
            reason = f"gave up {expert.failure.subtask.text!r}: {expert.failure.reason}; {reason}"
        extra: dict[str, object] = {"subtasks": len(plan)}
        if job.record_video and frames and self.settings.video_dir:
            name = f"{job.index:04d}_{job.task_id.replace('/', '_')}_seed{job.seed}.mp4"
            path = write_video(Path(self.settings.video_dir) / name, frames, fps=env.embodiment.control_rate_hz)
            extra["video"] = str(path)
        result = self._result(task, job, bool(info["success"]), reason, start, extra)
        result.steps = steps
        result.sim_time = env.backend.time
        return result

    @staticmethod
    def _result(
        task: Task, job: EpisodeJob, success: bool, reason: str, start: float, extra: dict[str, object]
    ) -> EpisodeResult:
        return EpisodeResult(
            task_id=task.id,
            family=task.family.value,
            split="held_out" if task.held_out else "train",
            instruction=task.instruction,
            seed=job.seed,
            success=success,
            reason=reason,
            wall_time=time.perf_counter() - start,
            extra=dict(extra),
        )


def make_runner(settings: EvalSettings) -> Callable[[EpisodeJob], EpisodeResult]:
    """Top-level (picklable) factory for :func:`tiers.apps.evaluation.parallel.run_jobs`."""
    if settings.hierarchy is not None:
        from tiers.apps.evaluation.hierarchy_runner import HierarchyEpisodeRunner

        return HierarchyEpisodeRunner(settings)
    return EpisodeRunner(settings)
