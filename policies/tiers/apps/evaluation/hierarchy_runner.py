"""``tiers eval --hierarchy NAME``: one hierarchy YAML evaluated in each of Kitchen-R's modes, plus corrections.

    planner      the hierarchy's planner alone, scored against the gold plan (nothing executed);
    control      the gold plan handed to the hierarchy's mid and low tiers (the controller alone);
    integrated   the whole hierarchy;
    corrections  the whole hierarchy with the simulated person correcting it in plain language
                 (:mod:`tiers.apps.evaluation.corrector`); episodes can be logged as a corrections dataset.

In control, integrated and corrections modes, ``settings.inject_corrections`` > 0 adds that many corrections
per episode at seeded random times (:mod:`tiers.apps.evaluation.injection`).

One :class:`HierarchyEpisodeRunner` per worker builds the simulator with the cameras the hierarchy needs
and loads the hierarchy once; privileged planners are rebuilt per task.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import tiers.apps.evaluation.kinds  # noqa: F401  (the privileged kinds a hierarchy may name can be built)
from tiers.apps.evaluation.corrections_log import EpisodeCorrectionsLog
from tiers.apps.evaluation.corrector import CorrectorSettings, SimulatedCorrector
from tiers.apps.evaluation.hierarchy_episode import run_hierarchy_episode
from tiers.apps.evaluation.injection import CorrectionInjector, InjectionSettings
from tiers.apps.evaluation.planning import GoldPlanEcho, collect_plan, score_plan
from tiers.apps.evaluation.report import EpisodeResult, EvalMode
from tiers.apps.evaluation.settings import EpisodeJob, EvalSettings
from tiers.policies.hierarchy.build import hierarchy_embodiment, load_hierarchy
from tiers.sim.backends import make_backend
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.tasks import get_task


class HierarchyEpisodeRunner:
    """Runs :class:`EpisodeJob` s of one mode with the hierarchy named in ``settings.hierarchy``."""

    def __init__(self, settings: EvalSettings):
        assert settings.hierarchy is not None
        self.settings = settings
        spec = hierarchy_embodiment(settings.hierarchy, settings.robot)
        backend = make_backend(settings.backend, spec)
        self.env = KitchenEnv(None, backend=backend, render=False, max_steps=settings.max_steps)
        self.hierarchy = load_hierarchy(settings.hierarchy, env=self.env, device=settings.extra.get("device", "cpu"))
        self._planner = self.hierarchy.runtime.planner
        corrector = settings.extra.get("corrector_settings")
        self.corrector_settings = CorrectorSettings.from_yaml(corrector) if corrector else CorrectorSettings()
        injection = settings.extra.get("injection_settings")  # a YAML of InjectionSettings; the count is the flag's
        base = InjectionSettings.from_yaml(injection) if injection else InjectionSettings()
        self.injection_settings = replace(base, count=settings.inject_corrections)
        self._log: EpisodeCorrectionsLog | None = None
        log_dir = settings.extra.get("corrections_log")
        if settings.mode is EvalMode.CORRECTIONS and log_dir:
            self._log = EpisodeCorrectionsLog(log_dir, self.hierarchy.runtime, source=self.hierarchy.config.name)

    def __call__(self, job: EpisodeJob) -> EpisodeResult:
        task = get_task(job.task_id)
        runtime = self.hierarchy.runtime_for(task)
        if self.settings.mode is EvalMode.PLANNER:
            return self._score_planner(job)
        if self.settings.mode is EvalMode.CONTROL:
            runtime.planner = GoldPlanEcho(task.plan)  # the controller alone: the gold plan is given
        elif not self.hierarchy.kinds[0].privileged:
            runtime.planner = self._planner  # the hierarchy's own planner (a control episode swapped it out)
        corrector = None
        if self.settings.mode is EvalMode.CORRECTIONS:
            corrector = SimulatedCorrector(task, self.corrector_settings)
        injector = None
        if self.settings.inject_corrections:
            injector = CorrectionInjector.for_episode(job.seed, task.id, len(task.plan), self.injection_settings)
        video = None
        if job.record_video and self.settings.video_dir:
            name = f"{job.index:04d}_{job.task_id.replace('/', '_')}_seed{job.seed}.mp4"
            video = Path(self.settings.video_dir) / name
        if self._log is not None:
            self._log.start_episode()
        episode = run_hierarchy_episode(
            self.env,
            runtime,
            task,
            seed=job.seed,
            corrector=corrector,
            video_path=video,
            on_tick=self._log,
            max_steps=self.settings.max_steps,
            injector=injector,
        )
        if self._log is not None:
            self._log.end_episode(episode.result)
        result = episode.result
        result.extra["commands"] = episode.commands
        if episode.corrections:
            result.extra["said"] = [text for _, text in episode.corrections]
        for tier in ("planner", "mid", "low", "step"):
            for statistic in ("p50_ms", "p99_ms"):
                value = episode.timings.get(tier, {}).get(statistic)
                if value is not None:
                    result.extra[f"{tier}_{statistic}"] = value
        return result

    def _score_planner(self, job: EpisodeJob) -> EpisodeResult:
        task = get_task(job.task_id)
        start = time.perf_counter()
        observation, _ = self.env.reset(seed=job.seed, options={"task": task})
        observation = replace(self.env.backend.observe(render=True), instruction=task.instruction)
        planner = self.hierarchy.runtime_for(task).planner
        score = score_plan(collect_plan(planner, task.instruction, observation), task.plan)
        return EpisodeResult.of_task(
            task,
            seed=job.seed,
            success=score.exact,
            reason=score.reason,
            wall_time=time.perf_counter() - start,
            extra={"step_accuracy": score.step_accuracy, "plan": list(score.predicted)},
        )
