"""``tiers record``: roll out the scripted expert in the kitchen and write a LeRobotDataset v3.

    tiers record --out data/drawer --num-episodes 50 --tasks open_close push --seed 0
    tiers record --out data/drawer --num-episodes 20 --tasks open/drawer/0 --resume
    tiers record --out data/drawer_rgbd --num-episodes 50 --tasks open_close --depth

The default dataset (RGB videos of every camera, each camera's intrinsics and base-from-camera pose at every
frame, proprioception, actions, language) trains with lerobot's own ``lerobot-train``; ``--depth`` adds the front
depth video, which lerobot 0.6.1's policies would take as an RGB input (see datasets/README.md).

Attempt j (counted across resumed sessions) runs seed ``--seed + j`` on a task drawn from the selection with that
seed. Only successful episodes are kept unless ``--keep-failures``; every attempt is logged in
``meta/tiers_episodes.jsonl``. Each kept episode is committed atomically: killing the command loses at most the
episode in progress, and ``--resume`` continues where it stopped. The session is
:func:`tiers.apps.record.record_dataset`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = (
    "record scripted-expert episodes in the kitchen into a LeRobotDataset v3 (videos, camera models, language "
    "labels; depth with --depth)"
)


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
    parser.add_argument(
        "--depth",
        action="store_true",
        help="also record depth (cameras with depth: true) as lerobot depth videos; lerobot-train's ACT and "
        "Diffusion take every video as RGB, so drop it for them (datasets/README.md)",
    )
    parser.add_argument("--keep-failures", action="store_true", help="keep failed episodes too (logged as failed)")
    parser.add_argument(
        "--max-attempts", type=int, default=None, help="stop after this many attempts (default 3 × --num-episodes)"
    )
    parser.add_argument("--robot", default="panda", help="robot preset (configs/robots/<name>.yaml)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tiers.apps.record import print_record_summary, record_dataset

    # lerobot encodes AV1 with SVT-AV1, which prints its whole configuration per video at its default level
    os.environ.setdefault("SVT_LOG", "1")  # errors only
    console = Console(stderr=True)
    summary = record_dataset(
        args.out,
        num_episodes=args.num_episodes,
        tasks=args.tasks,
        seed=args.seed,
        resume=args.resume,
        cameras=not args.no_cameras,
        depth=args.depth,
        videos=not args.no_videos,
        keep_failures=args.keep_failures,
        max_attempts=args.max_attempts,
        robot=args.robot,
        console=console,
    )
    print_record_summary(Console(), summary)  # progress on stderr, the summary on stdout
    if summary["kept"] < args.num_episodes:
        console.print(
            f"[yellow]kept {summary['kept']} of {args.num_episodes} episodes after {summary['attempts']} attempts "
            f"(--max-attempts {summary['max_attempts']})[/yellow]"
        )
        return 1
    return 0
