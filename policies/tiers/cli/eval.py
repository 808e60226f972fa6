"""``tiers eval``: evaluate planners and controllers on the kitchen benchmark (Kitchen-R's modes).

Examples::

    tiers eval --mode control --policy expert                    # the full instruction set, gold plans
    tiers eval --mode planner --planner shuffled --split held_out
    tiers eval --mode integrated --planner gold_echo --family push --limit 10 --workers 2 --videos 3
    tiers eval --mode corrections --hierarchy offline_paths --limit 20 --corrections-log outputs/corrections
    tiers eval --mode integrated --hierarchy offline_paths --limit 12 --inject-corrections 2

Writes ``results.json``, ``summary.md`` (success rates with 95 % Wilson intervals, errored episodes counted
apart), ``success_by_family.png`` and rollout videos into ``--out``; the same command on the same machine gives
the same episodes (``sim/README.md``, "Reproducible evaluation"). The run
is :func:`tiers.apps.evaluation.evaluate.run_evaluation`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "evaluate a planner and/or controller on the kitchen benchmark (planner / control / integrated modes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=["planner", "control", "integrated", "corrections"], default="control")
    parser.add_argument(
        "--hierarchy",
        default=None,
        help="a hierarchy YAML (configs/hierarchies/<name>.yaml or a path) evaluated instead of --planner/--policy",
    )
    parser.add_argument(
        "--corrections-log", type=Path, default=None, help="corrections mode: log episodes as a corrections dataset"
    )
    parser.add_argument(
        "--inject-corrections",
        type=int,
        default=0,
        metavar="K",
        help="hierarchy episodes: K nudges or stop+resume pairs said at random times drawn from the episode seed",
    )
    parser.add_argument("--policy", default="expert", help="controller that acts (control, integrated); 'expert'")
    parser.add_argument("--planner", default="gold_echo", help="planner scored (planner, integrated)")
    parser.add_argument("--task", action="append", default=[], help="task id (repeatable); default: all tasks")
    parser.add_argument("--family", action="append", default=[], help="task family (repeatable)")
    parser.add_argument("--split", choices=["all", "train", "held_out"], default="all")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most N tasks, shared round-robin among the families (evenly spaced)"
    )
    parser.add_argument("--seeds", type=int, default=1, help="episodes per task, seeds 0..N-1 (+ --seed)")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument(
        "--backend", default="mujoco", help="simulator backend: mujoco, or isaacsim (Isaac Sim 6.2, RTX GPU)"
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel workers")
    parser.add_argument("--parallel", choices=["process", "ray"], default="process", help="worker backend")
    parser.add_argument("--videos", type=int, default=2, help="rollout videos for an evenly spaced sample")
    parser.add_argument("--max-steps", type=int, default=None, help="override the per-episode step limit")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads per worker (episodes replay exactly at one count)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/eval/<mode>-<time>)")


def run(args: argparse.Namespace) -> int:
    from tiers.apps.evaluation.evaluate import run_evaluation
    from tiers.apps.evaluation.report import EvalMode

    mode = EvalMode(args.mode)
    out = args.out or Path("outputs") / "eval" / f"{mode.value}-{time.strftime('%Y%m%d-%H%M%S')}"
    flags = {key: value for key, value in vars(args).items() if key != "run"}  # written into results.json
    run_evaluation(
        mode,
        out=out,
        hierarchy=args.hierarchy,
        controller=args.policy,
        planner=args.planner,
        tasks=args.task,
        families=args.family,
        split=args.split,
        limit=args.limit,
        seeds=args.seeds,
        seed=args.seed,
        backend=args.backend,
        workers=args.workers,
        parallel=args.parallel,
        videos=args.videos,
        max_steps=args.max_steps,
        torch_threads=args.threads,
        corrections_log=args.corrections_log,
        inject_corrections=args.inject_corrections,
        record={key: str(value) if isinstance(value, Path) else value for key, value in flags.items()},
    )
    return 0
