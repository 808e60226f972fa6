"""``tiers bench sim``: speed of the kitchen simulation, the expert and the evaluation harness.

Figures (all wall-clock, on this machine, in one run so ratios are comparable):
    step_ms[no_render]                  KitchenEnv.step without images (physics + success check)
    step_ms[front+wrist@128], [@224]    the same with front (RGB-D + segmentation) and wrist cameras
    raw_mj_step_ms                      mujoco.mj_step for the same physics substeps, nothing else
    backend_overhead, env_overhead      backend.step / raw and env.step / raw (goal: <= 1.25)
    expert_episode_s, expert_steps      scripted-expert episodes over a fixed task sample
    eval_episodes_per_min[1], [N]       evaluation throughput with 1 and N worker processes
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import mujoco
import numpy as np

from tiers.apps.evaluation.parallel import ParallelBackend, run_jobs
from tiers.apps.evaluation.report import EvalMode
from tiers.apps.evaluation.runner import make_runner
from tiers.apps.evaluation.settings import EpisodeJob, EvalSettings
from tiers.core.embodiment import EmbodimentSpec
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.tasks import all_tasks, get_task
from tiers.sim.mujoco.kitchen import MujocoKitchen

BENCH_TASK = "pick_place/apple-in-drawer/0"  # the task whose scene is stepped (objects present, nothing special)
ROUNDS = 10  # interleaved timing rounds for the overhead ratios


def _time_per_call(function: Callable[[], object], calls: int) -> float:
    """Mean seconds per call after one warm-up call."""
    function()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def bench_steps(steps: int = 200) -> dict[str, float]:
    """Step times (ms) without rendering, with front+wrist at 128 and 224 pixels, and raw MuJoCo."""
    task = get_task(BENCH_TASK)
    results: dict[str, float] = {}
    env = KitchenEnv(task, render=False)
    observation, _ = env.reset(seed=0)
    hold = np.append(observation.joint_positions, observation.gripper_opening).astype(np.float32)
    backend = env.backend
    model, data = backend.model, backend.data  # type: ignore[attr-defined]
    substeps = backend.substeps  # type: ignore[attr-defined]
    contenders: dict[str, Callable[[], object]] = {
        "step_ms[no_render]": lambda: env.step(hold),
        "backend_step_ms[no_render]": lambda: backend.step(hold, render=False),
        "raw_mj_step_ms": lambda: mujoco.mj_step(model, data, nstep=substeps),
    }
    # interleaved rounds, median per figure: a shared, noisy machine slows all three alike
    rounds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(ROUNDS):
        for name, function in contenders.items():
            rounds[name].append(1e3 * _time_per_call(function, max(1, steps // ROUNDS)))
    results.update({name: float(np.median(values)) for name, values in rounds.items()})
    raw = np.array(rounds["raw_mj_step_ms"])
    results["backend_overhead"] = float(np.median(np.array(rounds["backend_step_ms[no_render]"]) / raw))
    results["env_overhead"] = float(np.median(np.array(rounds["step_ms[no_render]"]) / raw))
    env.close()
    for size in (128, 224):
        overrides = [f"cameras.{i}.{key}={size}" for i in range(3) for key in ("width", "height")]
        spec = EmbodimentSpec.load("panda", overrides=overrides)
        rendered = KitchenEnv(task, backend=MujocoKitchen(spec, cameras=["front", "wrist"]), render=True)
        rendered.reset(seed=0)
        results[f"step_ms[front+wrist@{size}]"] = 1e3 * _time_per_call(partial(rendered.step, hold), steps // 4)
        rendered.close()
    return results


def bench_expert_and_eval(tasks: int = 6, workers: int | None = None) -> dict[str, float]:
    """Expert episode wall time and evaluation throughput with 1 and N workers on a fixed task sample."""
    workers = workers or min(4, os.cpu_count() or 1)
    every = max(1, len(all_tasks()) // tasks)
    sample = [task.id for task in all_tasks()[::every][:tasks]]
    jobs = [EpisodeJob(index, task_id, seed=0) for index, task_id in enumerate(sample)]
    settings = EvalSettings(EvalMode.CONTROL, controller="expert")
    results: dict[str, float] = {}
    timings: dict[int, float] = {}
    outcomes: dict[int, list[bool]] = {}
    for count in sorted({1, workers}):
        start = time.perf_counter()
        episodes = run_jobs(make_runner, settings, jobs, workers=count, backend=ParallelBackend.PROCESS)
        timings[count] = time.perf_counter() - start
        outcomes[count] = [episode.success for episode in episodes]
        if count == 1:
            results["expert_episode_s"] = float(np.mean([episode.wall_time for episode in episodes]))
            results["expert_steps"] = float(np.mean([episode.steps for episode in episodes]))
            results["expert_success_rate[sample]"] = float(np.mean(outcomes[1]))
        results[f"eval_episodes_per_min[{count}]"] = 60 * len(jobs) / timings[count]
    results["workers"] = float(workers)
    results["same_results_across_workers"] = float(len({tuple(v) for v in outcomes.values()}) == 1)
    return results


def run_sim_benchmark(*, steps: int = 200, tasks: int = 6, workers: int | None = None) -> dict[str, Any]:
    """All figures of ``tiers bench sim`` as one JSON-ready dict."""
    figures: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count()}
    figures.update(bench_steps(steps))
    figures.update(bench_expert_and_eval(tasks, workers))
    return figures
