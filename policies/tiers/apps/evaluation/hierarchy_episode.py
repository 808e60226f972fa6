"""One kitchen episode driven by a hierarchy runtime, optionally with the simulated corrector.

The simulator renders camera images only on the ticks that read them (:meth:`HierarchyRuntime.needs_images`):
planners and the mid tier look at the scene when a command starts, a low tier without cameras never does,
so a proprioceptive hierarchy runs at physics speed. Corrections said by the corrector are handed to the
runtime exactly as a person's would be, and to an optional recorder of the episode (the corrections log).
Corrections injected at seeded random times (:mod:`tiers.apps.evaluation.injection`) reach the runtime the
same way, in any mode; they are recorded in the result's ``extra["injected"]``.

Every random draw of the episode derives from ``seed`` (:mod:`tiers.apps.evaluation.seeding`): the scene, the
tiers' own generators and the global ones, so the same seed replays the same episode on the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from tiers.apps.evaluation.corrector import SimulatedCorrector
from tiers.apps.evaluation.injection import CorrectionInjector
from tiers.apps.evaluation.report import EpisodeResult
from tiers.apps.evaluation.seeding import seed_tiers, state_digest
from tiers.core.errors import ContractError
from tiers.core.features import CommandSource
from tiers.core.observation import Observation
from tiers.policies.hierarchy.runtime import HierarchyRuntime, RuntimeStep
from tiers.services.video import write_video
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.layout import KitchenLayout
from tiers.sim.kitchen.tasks import Task

SETTLE_STEPS = 10  # control steps (0.5 s) the hierarchy keeps holding after it says it is done, before judging

# called after every tick with (observation the action was chosen from, the tick's output, what was said or None)
TickObserver = Callable[[Observation, RuntimeStep, str | None], None]


@dataclass
class HierarchyEpisode:
    """What happened in one episode: the result, the corrections said, the commands executed, the timings."""

    result: EpisodeResult
    corrections: list[tuple[float, str]] = field(default_factory=list)  # (s, text) said by the corrector
    commands: list[str] = field(default_factory=list)  # command texts in the order they started
    timings: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    frames: list[NDArray[np.uint8]] = field(default_factory=list)


def run_hierarchy_episode(
    env: KitchenEnv,
    runtime: HierarchyRuntime,
    task: Task,
    *,
    seed: int,
    corrector: SimulatedCorrector | None = None,
    video_path: str | Path | None = None,
    on_tick: TickObserver | None = None,
    max_steps: int | None = None,
    layout: KitchenLayout | None = None,
    injector: CorrectionInjector | None = None,
) -> HierarchyEpisode:
    """Run ``task`` from ``seed`` until success, truncation, or the hierarchy is done and settled.

    Args:
        env: a kitchen env built with ``render=False`` (images are rendered on demand).
        runtime: the hierarchy; it is reset here.
        corrector: the simulated person (corrections mode), or None.
        video_path: write the front camera as an mp4 here (renders every tick: slower).
        on_tick: called after each tick (for the corrections log).
        max_steps: truncation override; None: the env's limit.
        layout: start from this scene instead of one sampled for ``task`` from ``seed`` (test-time shifts).
        injector: corrections said at scheduled times regardless of what the robot does, or None.
    """
    start = time.perf_counter()
    # before the reset: resetting the runtime already plans the first command
    seed_tiers(seed, planner=runtime.planner, mid=runtime.mid, low=runtime.low)
    options: dict[str, object] = {"task": task} if layout is None else {"task": task, "layout": layout}
    observation, _ = env.reset(seed=seed, options=options)
    observation = _with_images(env, observation)
    runtime.reset(task.instruction, observation)
    if corrector is not None:
        corrector.reset(env.scene_state())
    limit = max_steps or env.max_steps
    frames: list[NDArray[np.uint8]] = []
    info: dict[str, object] = {"success": False, "reason": "no step taken"}
    steps = settled = 0
    said: str | None = None
    settle_steps = SETTLE_STEPS
    if corrector is not None:  # give the person time to object when the hierarchy stops short
        settle_steps += round(corrector.settings.grace_s * env.embodiment.control_rate_hz) + 1
    while steps < limit:
        if runtime.needs_images(observation):
            observation = _with_images(env, observation)
        if video_path is not None:  # the front camera alone, unless this tick rendered every camera anyway
            frames.append(observation.images["front"] if observation.images else env.backend.render_rgb("front"))
        step = runtime.step(observation)
        if on_tick is not None:
            on_tick(observation, step, said)
        said = None
        observation, _, terminated, truncated, info = env.step(step.action)
        steps += 1
        if corrector is not None:
            said = corrector.observe(env.scene_state(), runtime.command, finished=runtime.done)
            if said is not None:
                try:
                    runtime.correct(said, source=CommandSource.SIMULATED_CORRECTOR, timestamp=observation.timestamp)
                except ContractError:
                    said = None
        if injector is not None:
            said = _inject(injector, runtime, float(observation.timestamp)) or said
        settled = settled + 1 if runtime.done else 0
        if terminated or truncated or settled >= settle_steps:
            break
    success = bool(info["success"])
    extra: dict[str, object] = {
        "subtasks_started": sum(event.kind == "command" for event in runtime.events),
        "corrections": 0 if corrector is None else len(corrector.said),
        "retries": runtime.retries,  # failed subtasks re-planned by the mid tier (recovery)
        "replans": runtime.replans,  # failed subtasks handed back to the planner (recovery)
        "outcomes": [f"{e.command.text}: {e.detail}" for e in runtime.events if e.kind == "outcome" and e.command],
        "control_p50_ms": runtime.timers["step"].summary()["p50_ms"],
        "state_digest": state_digest(observation.joint_positions, observation.ee_pose),  # replays compare equal
    }
    if injector is not None:
        extra["injected"] = injector.results()
    if video_path is not None and frames:
        extra["video"] = str(write_video(video_path, frames, fps=env.embodiment.control_rate_hz))
    result = EpisodeResult.of_task(
        task,
        seed=seed,
        success=success,
        reason="" if success else str(info["reason"]),
        steps=steps,
        sim_time=env.backend.time,
        wall_time=time.perf_counter() - start,
        extra=extra,
    )
    return HierarchyEpisode(
        result=result,
        corrections=[] if corrector is None else list(corrector.said),
        commands=[event.command.text for event in runtime.events if event.kind == "command" and event.command],
        timings={name: timer.summary() for name, timer in runtime.timers.items()},
        frames=frames,
    )


def _inject(injector: CorrectionInjector, runtime: HierarchyRuntime, now: float) -> str | None:
    """Say the injected corrections due by ``now`` (s); returns the last one said, for the tick observer."""
    said = None
    for correction in injector.due(now):
        during = runtime.command.text if runtime.command is not None else None
        try:
            runtime.correct(correction.text, source=CommandSource.SIMULATED_CORRECTOR, timestamp=now)
        except ContractError:  # never for the injector's own phrases; recorded as not applied all the same
            injector.said(correction, now, during, applied=False)
            continue
        injector.said(correction, now, during, applied=True)
        said = correction.text
    return said


def _with_images(env: KitchenEnv, observation: Observation) -> Observation:
    """``observation`` with every camera rendered (same physics state, same instruction)."""
    if observation.images:
        return observation
    return replace(env.backend.observe(render=True), instruction=observation.instruction)
