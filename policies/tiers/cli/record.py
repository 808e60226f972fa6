"""``tiers record``: roll out the scripted expert in the kitchen and write a LeRobotDataset v3.

    tiers record --out data/drawer --num-episodes 50 --tasks open_close push --seed 0
    tiers record --out data/drawer --num-episodes 20 --tasks open/drawer/0 --resume

Attempt j (counted across resumed sessions) runs seed ``--seed + j`` on a task drawn from the selection with that
seed. Only successful episodes are kept unless ``--keep-failures``; every attempt is logged in
``meta/tiers_episodes.jsonl``. Each kept episode is committed atomically: killing the command loses at most the
episode in progress, and ``--resume`` continues where it stopped.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

HELP = "record scripted-expert episodes in the kitchen into a LeRobotDataset v3 (videos, depth, language labels)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, required=True, help="dataset folder (created; must be empty unless --resume)"
    )
    parser.add_argument("--num-episodes", type=int, required=True, help="episodes to keep in this session")
    parser.add_argument(
        "--tasks", nargs="+", required=True, help="task ids (open/drawer/0) and/or families (open_close, push, ...)"
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed: attempt j uses seed + j (default 0)")
    parser.add_argument("--resume", action="store_true", help="append to an existing dataset at --out")
    parser.add_argument("--no-videos", action="store_true", help="store camera frames as PNG images, not mp4 videos")
    parser.add_argument("--no-cameras", action="store_true", help="record proprioception only (no rendering; fast)")
    parser.add_argument("--no-depth", action="store_true", help="leave out depth images")
    parser.add_argument("--keep-failures", action="store_true", help="keep failed episodes too (logged as failed)")
    parser.add_argument(
        "--max-attempts", type=int, default=None, help="stop after this many attempts (default 3 × --num-episodes)"
    )
    parser.add_argument("--robot", default="panda", help="robot preset (configs/robots/<name>.yaml)")


def resolve_tasks(tokens: list[str]) -> list[str]:
    """Task ids from ids and family names, in the order given, without duplicates.

    Raises:
        UnknownTaskError: a token is neither a family nor a task id (the message lists close ids).
    """
    from tiers.sim.kitchen.tasks import TaskFamily, get_task, tasks_by_family

    families = {family.value for family in TaskFamily}
    chosen: dict[str, None] = {}
    for token in tokens:
        tasks = tasks_by_family(token) if token in families else (get_task(token),)
        chosen.update(dict.fromkeys(task.id for task in tasks))
    return list(chosen)


def attempt_task(task_ids: list[str], seed: int, attempt: int) -> tuple[str, int]:
    """(task id, episode seed) of attempt number ``attempt``: deterministic in (seed, attempt)."""
    import numpy as np

    rng = np.random.default_rng([seed, attempt])
    return task_ids[int(rng.integers(len(task_ids)))], seed + attempt


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tiers.core.errors import ConfigError

    if args.num_episodes < 1:
        raise ConfigError(f"--num-episodes must be >= 1, got {args.num_episodes}")
    max_attempts = args.max_attempts if args.max_attempts is not None else 3 * args.num_episodes
    if max_attempts < 1:
        raise ConfigError(f"--max-attempts must be >= 1, got {max_attempts}")
    # lerobot encodes AV1 with SVT-AV1, which prints its whole configuration per video at its default level
    os.environ.setdefault("SVT_LOG", "1")  # errors only
    console = Console(stderr=True)
    summary = _record(args, max_attempts, console)
    _print_summary(Console(), summary)  # progress on stderr, the summary on stdout
    if summary["kept"] < args.num_episodes:
        console.print(
            f"[yellow]kept {summary['kept']} of {args.num_episodes} episodes after {summary['attempts']} attempts "
            f"(--max-attempts {max_attempts})[/yellow]"
        )
        return 1
    return 0


def _record(args: argparse.Namespace, max_attempts: int, console: Any) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    import tiers.sim
    from tiers.apps.record import roll_out_expert
    from tiers.datasets.features import DatasetSpec
    from tiers.datasets.language_motion import SMOOTHING_WINDOW, Agreement
    from tiers.datasets.recorder import DatasetRecorder, EpisodeRecord

    task_ids = resolve_tasks(args.tasks)
    cameras = not args.no_cameras
    env = tiers.sim.make(task_ids, robot=args.robot, render=cameras)
    spec = DatasetSpec.from_embodiment(
        env.embodiment, cameras=cameras, depth=not args.no_depth, use_videos=not args.no_videos
    )
    recorder = DatasetRecorder(args.out, spec, resume=args.resume)
    if recorder.recovery.rolled_forward or recorder.recovery.discarded_staging:
        console.print(
            f"recovered {args.out}: finished an interrupted commit ({recorder.recovery.rolled_forward} files), "
            f"dropped an unfinished episode: {recorder.recovery.discarded_staging}"
        )
    first = max((record.attempt + 1 for record in recorder.records), default=0)
    kept = successes = attempts = frames = 0
    agreement, tolerant = Agreement(), Agreement()
    start = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("recording", total=args.num_episodes)
            while kept < args.num_episodes and attempts < max_attempts:
                task_id, seed = attempt_task(task_ids, args.seed, first + attempts)
                progress.update(bar, description=f"{task_id} seed {seed} ({successes}/{attempts} succeeded)")
                episode = roll_out_expert(env, task_id, seed, spec)
                attempts += 1
                successes += int(episode.success)
                frames += len(episode.frames)
                agreement.add(episode.expert_motions, episode.language_motions)
                tolerant.add(episode.expert_motions, episode.language_motions, tolerance=SMOOTHING_WINDOW)
                record = EpisodeRecord(
                    task_id=task_id,
                    instruction=str(episode.frames[0]["task"]) if episode.frames else "",
                    seed=seed,
                    success=episode.success,
                    frames=len(episode.frames),
                    reason=episode.reason,
                    attempt=first + attempts - 1,
                    wall_time=episode.wall_time,
                )
                if episode.frames and (episode.success or args.keep_failures):
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
    from tiers.datasets.recorder import dataset_size_bytes

    return {
        "path": str(args.out),
        "kept": kept,
        "attempts": attempts,
        "successes": successes,
        "frames": frames,
        "total_episodes": recorder.num_episodes,
        "total_frames": recorder.num_frames,
        "wall_time": time.perf_counter() - start,
        "size_bytes": dataset_size_bytes(args.out),
        "agreement": agreement.rate,
        "agreement_tolerant": tolerant.rate,
    }


def _print_summary(console: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

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
