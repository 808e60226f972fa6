"""Scripted-expert rollouts in the kitchen, turned into dataset frames with language labels.

One episode, timeline (dt = 1 / control rate)::

    t:        0        1        2      ...  T-1        T
    obs:      o_0      o_1      o_2         o_{T-1}    o_T (final: labels only, not a frame)
    expert:   a_0 ...                       a_{T-1}
    frame t = (o_t, a_t, subtask_t, expert primitive_t, language motion_t)

:func:`record_dataset` (``tiers record``) runs attempts until enough episodes are kept and commits each kept
episode to a LeRobotDataset; :func:`roll_out_expert` is one attempt.

The language motion of frame t looks ahead over o_t..o_{t+window} (see :mod:`tiers.datasets.language_motion`),
so frames are buffered for the whole episode and labelled before they are handed to the recorder. The episode
is the evaluator's expert loop (:func:`~tiers.apps.evaluation.expert_episode.run_expert_plan`): it ends when the
task succeeds (the environment terminates), when it is truncated, or ``settle_steps`` after the expert reports
its plan done or given up. Frames after the plan is over keep the last subtask's text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tiers.apps.evaluation.expert_episode import SETTLE_STEPS, run_expert_plan
from tiers.core.errors import ConfigError
from tiers.core.observation import Observation
from tiers.datasets.features import DatasetSpec
from tiers.datasets.language_motion import SMOOTHING_WINDOW, Agreement, LabelerSettings, label_motions
from tiers.datasets.recorder import DatasetRecorder, EpisodeRecord, dataset_size_bytes
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.expert import ExpertStep, ScriptedExpert
from tiers.sim.kitchen.tasks import TaskFamily, get_task, tasks_by_family


@dataclass
class ExpertEpisode:
    """One expert rollout, ready to record.

    Attributes:
        frames: ``add_frame`` dicts, one per control step.
        success: the task's predicate held at the end.
        reason: why it failed ("" on success).
        expert_motions: per-frame primitive phases (``Motion`` values).
        language_motions: per-frame RT-H language motions.
        wall_time: s spent simulating and rendering.
    """

    frames: list[dict[str, Any]] = field(default_factory=list)
    success: bool = False
    reason: str = ""
    expert_motions: list[str] = field(default_factory=list)
    language_motions: list[str] = field(default_factory=list)
    wall_time: float = 0.0


def roll_out_expert(
    env: KitchenEnv,
    task_id: str,
    seed: int,
    spec: DatasetSpec,
    *,
    labeler: LabelerSettings | None = None,
    settle_steps: int = SETTLE_STEPS,
) -> ExpertEpisode:
    """Run the scripted expert on ``task_id`` from ``seed`` in ``env`` and return labelled frames.

    ``env`` must render the cameras of ``spec`` (``render=True``) when ``spec.cameras`` is not empty.
    """
    start = time.perf_counter()
    observation, _ = env.reset(seed=seed, options={"task": task_id})
    assert env.task is not None
    instruction = env.task.instruction
    expert = ScriptedExpert.from_kitchen(env.backend)  # type: ignore[arg-type]
    observations: list[Observation] = []
    actions: list[NDArray[np.float32]] = []
    subtasks: list[str] = []
    primitives: list[str] = []
    subtask = env.task.plan[0].text if env.task.plan else ""

    def keep(observation: Observation, step: ExpertStep) -> None:
        nonlocal subtask
        subtask = step.subtask.text if step.subtask is not None else subtask  # after the plan: the last one
        observations.append(observation)
        actions.append(step.action)
        subtasks.append(subtask)
        primitives.append(step.motion.value)

    rollout = run_expert_plan(env, expert, env.task.plan, observation, settle_steps=settle_steps, on_step=keep)
    observation, info = rollout.observation, rollout.info
    poses = np.array([o.ee_pose for o in [*observations, observation]])  # (T+1, 7): the final one for look-ahead
    openings = np.array([o.gripper_opening for o in [*observations, observation]])  # (T+1,)
    motions = label_motions(poses, openings, dt=1.0 / spec.fps, settings=labeler)[:-1]
    frames = [
        spec.frame(o, a, task=instruction, subtask=s, language_motion=m, expert_motion=p)
        for o, a, s, m, p in zip(observations, actions, subtasks, motions, primitives, strict=True)
    ]
    success = bool(info["success"])
    reason = "" if success else str(info["reason"])
    if expert.failure is not None and not success:
        reason = f"{expert.failure}; {reason}"
    return ExpertEpisode(
        frames=frames,
        success=success,
        reason=reason,
        expert_motions=primitives,
        language_motions=motions,
        wall_time=time.perf_counter() - start,
    )


# -- a recording session (tiers record) ----------------------------------------------------------------------


def resolve_tasks(tokens: list[str]) -> list[str]:
    """Task ids from ids and family names, in the order given, without duplicates.

    Raises:
        UnknownTaskError: a token is neither a family nor a task id (the message lists close ids).
    """
    families = {family.value for family in TaskFamily}
    chosen: dict[str, None] = {}
    for token in tokens:
        tasks = tasks_by_family(token) if token in families else (get_task(token),)
        chosen.update(dict.fromkeys(task.id for task in tasks))
    return list(chosen)


def attempt_task(task_ids: list[str], seed: int, attempt: int) -> tuple[str, int]:
    """(task id, episode seed) of attempt number ``attempt``: deterministic in (seed, attempt)."""
    rng = np.random.default_rng([seed, attempt])
    return task_ids[int(rng.integers(len(task_ids)))], seed + attempt


def record_dataset(
    out: str | Path,
    *,
    num_episodes: int,
    tasks: list[str],
    seed: int = 0,
    resume: bool = False,
    cameras: bool = True,
    depth: bool = False,
    videos: bool = True,
    keep_failures: bool = False,
    max_attempts: int | None = None,
    robot: str = "panda",
    console: Console | None = None,
) -> dict[str, Any]:
    """Record ``num_episodes`` scripted-expert episodes into the LeRobotDataset at ``out`` (``tiers record``).

    Attempt j (counted across resumed sessions) runs seed ``seed + j`` on a task drawn from ``tasks`` (ids and
    families) with that seed. Only successful episodes are kept unless ``keep_failures``; every attempt is logged
    in ``meta/tiers_episodes.jsonl``, and each kept episode is committed atomically.

    Args:
        cameras: render and record the robot's cameras (RGB video and each camera's model, every frame).
        depth: also record the depth of the cameras marked ``depth: true``; off by default, because lerobot's
            own policies take every video as an RGB input and ``lerobot-train`` fails on a depth video.
        max_attempts: stop after this many attempts; None: 3 x ``num_episodes``.
        console: where the progress goes (default: stderr).

    Returns:
        The session's summary (``kept``, ``attempts``, ``successes``, ``frames``, dataset totals, ``wall_time`` s,
        ``size_bytes``, language-motion ``agreement``); see :func:`print_record_summary`.

    Raises:
        ConfigError: ``num_episodes`` or ``max_attempts`` below 1.
    """
    if num_episodes < 1:
        raise ConfigError(f"--num-episodes must be >= 1, got {num_episodes}")
    max_attempts = max_attempts if max_attempts is not None else 3 * num_episodes
    if max_attempts < 1:
        raise ConfigError(f"--max-attempts must be >= 1, got {max_attempts}")
    console = console or Console(stderr=True)
    task_ids = resolve_tasks(tasks)
    env = KitchenEnv(task_ids, robot=robot, render=cameras)
    spec = DatasetSpec.from_embodiment(env.embodiment, cameras=cameras, depth=depth, use_videos=videos)
    recorder = DatasetRecorder(out, spec, resume=resume)
    if recorder.recovery.rolled_forward or recorder.recovery.discarded_staging:
        console.print(
            f"recovered {out}: finished an interrupted commit ({recorder.recovery.rolled_forward} files), "
            f"dropped an unfinished episode: {recorder.recovery.discarded_staging}"
        )
    first = max((record.attempt + 1 for record in recorder.records), default=0)
    kept = successes = attempts = frames = 0
    agreement, tolerant = Agreement(), Agreement()
    start = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("recording", total=num_episodes)
            while kept < num_episodes and attempts < max_attempts:
                task_id, episode_seed = attempt_task(task_ids, seed, first + attempts)
                progress.update(bar, description=f"{task_id} seed {episode_seed} ({successes}/{attempts} succeeded)")
                episode = roll_out_expert(env, task_id, episode_seed, spec)
                attempts += 1
                successes += int(episode.success)
                frames += len(episode.frames)
                agreement.add(episode.expert_motions, episode.language_motions)
                tolerant.add(episode.expert_motions, episode.language_motions, tolerance=SMOOTHING_WINDOW)
                record = EpisodeRecord(
                    task_id=task_id,
                    instruction=str(episode.frames[0]["task"]) if episode.frames else "",
                    seed=episode_seed,
                    success=episode.success,
                    frames=len(episode.frames),
                    reason=episode.reason,
                    attempt=first + attempts - 1,
                    wall_time=episode.wall_time,
                )
                if episode.frames and (episode.success or keep_failures):
                    for frame in episode.frames:
                        recorder.add_frame(frame)
                    recorder.save_episode(record)
                    kept += 1
                    progress.advance(bar)
                else:
                    recorder.discard_episode(record)
    finally:
        recorder.close()
        env.close()
    return {
        "path": str(out),
        "kept": kept,
        "attempts": attempts,
        "max_attempts": max_attempts,
        "successes": successes,
        "frames": frames,
        "total_episodes": recorder.num_episodes,
        "total_frames": recorder.num_frames,
        "wall_time": time.perf_counter() - start,
        "size_bytes": dataset_size_bytes(out),
        "agreement": agreement.rate,
        "agreement_tolerant": tolerant.rate,
    }


def print_record_summary(console: Console, summary: dict[str, Any]) -> None:
    """The summary of :func:`record_dataset` as a table."""
    table = Table(title=f"tiers record → {summary['path']}", show_header=False)
    rate = summary["successes"] / summary["attempts"] if summary["attempts"] else float("nan")
    speed = summary["frames"] / summary["wall_time"] if summary["wall_time"] > 0 else float("nan")
    rows = [
        ("episodes kept (this session)", f"{summary['kept']} of {summary['attempts']} attempts"),
        ("episodes in dataset", str(summary["total_episodes"])),
        ("success rate", f"{rate:.1%} ({summary['successes']}/{summary['attempts']})"),
        ("frames (this session, all attempts)", str(summary["frames"])),
        ("frames in dataset", str(summary["total_frames"])),
        ("recording speed", f"{speed:.1f} frames/s ({summary['wall_time']:.1f} s)"),
        ("size on disk", f"{summary['size_bytes'] / 1e6:.2f} MB"),
        (
            "language motion vs expert primitive",
            f"{summary['agreement']:.1%} of frames ({summary['agreement_tolerant']:.1%} within ±window)",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
