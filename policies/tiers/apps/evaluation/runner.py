"""Episode runners for ``tiers eval``: one per evaluation mode, built once per worker.

Modes (Kitchen-R):
    planner     the planner sees the instruction and the first observation; its plan is scored against
                the gold plan (exact match, per-step accuracy); nothing is executed.
    control     the gold plan is given; the controller executes it; success is the task's predicate.
    integrated  the planner's plan is executed by the controller; success is the task's predicate, so a
                wrong plan fails the episode.

Controllers: ``expert`` (the scripted expert with privileged state, through
:func:`tiers.apps.evaluation.expert_episode.run_expert_plan`), or the folder of a low-tier policy checkpoint
(``tiers train``), run by :class:`tiers.apps.evaluation.learned.LearnedController`. Planners and the settings
that name them: :mod:`tiers.apps.evaluation.settings`. A hierarchy YAML is run by
:class:`tiers.apps.evaluation.hierarchy_runner.HierarchyEpisodeRunner`.

:func:`make_runner` wraps either in a :class:`GuardedRunner`: an episode that raises becomes a failed
:class:`EpisodeResult` carrying its error (type, message, the raising frame), and the worker goes on with the
next job; every job starts from its own seed (:mod:`tiers.apps.evaluation.seeding`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from tiers.apps.evaluation.expert_episode import run_expert_plan
from tiers.apps.evaluation.hierarchy_runner import HierarchyEpisodeRunner
from tiers.apps.evaluation.learned import LearnedController, is_checkpoint
from tiers.apps.evaluation.planning import collect_plan, score_plan
from tiers.apps.evaluation.report import EpisodeError, EpisodeResult, EvalMode
from tiers.apps.evaluation.seeding import seed_globals
from tiers.apps.evaluation.settings import PLANNERS, EpisodeJob, EvalSettings
from tiers.commands.subtasks import Subtask
from tiers.core.errors import ContractError, TiersError
from tiers.core.observation import Observation
from tiers.services.video import write_video
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.expert import ExpertStep, ScriptedExpert
from tiers.sim.kitchen.tasks import Task, get_task

# the jobs and settings are also importable from here, where the runners that take them live


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
        frames: list[NDArray[np.uint8]] = []

        def film(observation: Observation, step: ExpertStep) -> None:
            frames.append(env.backend.observe(render=True).images["front"])

        rollout = run_expert_plan(
            env, expert, plan, env.backend.observe(render=False), on_step=film if job.record_video else None
        )
        info, steps = rollout.info, rollout.steps
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
        return EpisodeResult.of_task(
            task,
            seed=job.seed,
            success=success,
            reason=reason,
            wall_time=time.perf_counter() - start,
            extra=dict(extra),
        )


class GuardedRunner:
    """Runs a job from its own seed on ``torch_threads`` CPU threads and turns an exception into an errored
    result (see the module docstring).

    The thread count is set for the job and restored after it, so an in-process evaluation leaves the caller's
    torch as it was; every worker runs its episodes alike (a Ray actor would otherwise get one thread, the main
    process one per core, and CPU reductions round by how they are split).
    """

    def __init__(self, runner: Callable[[EpisodeJob], EpisodeResult], *, torch_threads: int = 1) -> None:
        self.runner = runner
        self.torch_threads = torch_threads

    def __call__(self, job: EpisodeJob) -> EpisodeResult:
        threads = torch.get_num_threads()
        torch.set_num_threads(self.torch_threads)
        seed_globals(job.seed)  # whatever an episode draws from a global generator follows its seed alone
        start = time.perf_counter()
        try:
            return self.runner(job)
        except Exception as error:  # any failure of one episode is that episode's result, never the run's
            result = errored_result(job, error)
            result.wall_time = time.perf_counter() - start
            return result
        finally:
            torch.set_num_threads(threads)


def errored_result(job: EpisodeJob, error: BaseException) -> EpisodeResult:
    """The failed result of ``job``, which raised ``error`` (its type, message and where it was raised)."""
    described = EpisodeError.from_exception(error)
    try:
        task = get_task(job.task_id)
        family, split, instruction = task.family.value, "held_out" if task.held_out else "train", task.instruction
    except (TiersError, ValueError):  # the task id itself may be what failed
        family, split, instruction = "unknown", "unknown", ""
    return EpisodeResult(
        task_id=job.task_id,
        family=family,
        split=split,
        instruction=instruction,
        seed=job.seed,
        success=False,
        reason=f"error: {described.type}: {described.message} (at {described.where})",
        error=described,
    )


def make_runner(settings: EvalSettings) -> Callable[[EpisodeJob], EpisodeResult]:
    """Top-level (picklable) factory for :func:`tiers.apps.evaluation.parallel.run_jobs`."""
    if settings.hierarchy is not None:
        return GuardedRunner(HierarchyEpisodeRunner(settings), torch_threads=settings.torch_threads)
    return GuardedRunner(EpisodeRunner(settings), torch_threads=settings.torch_threads)
