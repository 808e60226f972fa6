"""``tiers demo``: record, train, compose, evaluate and report, on MuJoCo on the CPU, offline.

Examples::

    tiers demo                   # the full pipeline (about 15 minutes on 2 CPU cores)
    tiers demo --quick           # the shipped checkpoint, a few episodes per mode (under 2 minutes)
    tiers demo --episodes 80 --train-steps 4000 --workers 2

Writes ``report.html``, ``report.md``, ``summary.json``, figures and rollout videos into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "the main job: record demos, train a hierarchy, evaluate it in every mode, write a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="use the shipped checkpoint; a few episodes per mode")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/demo/<time>)")
    parser.add_argument("--episodes", type=int, default=None, help="expert demonstrations to record")
    parser.add_argument("--train-steps", type=int, default=None, help="optimiser steps of the low tier")
    parser.add_argument("--eval-tasks", type=int, default=None, help="tasks per executed mode")
    parser.add_argument("--workers", type=int, default=None, help="parallel evaluation workers")
    parser.add_argument(
        "--hierarchy",
        action="append",
        default=[],
        help="also evaluate this hierarchy YAML in integrated mode on the same tasks (repeatable; any kind)",
    )


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rich.console import Console

    from tiers.apps.demo import QUICK, DemoConfig, run_demo

    console = Console(highlight=False)
    config = QUICK if args.quick else DemoConfig()
    changes = {
        "episodes": args.episodes,
        "train_steps": args.train_steps,
        "eval_tasks": args.eval_tasks,
        "workers": args.workers,
        "hierarchies": args.hierarchy or None,
    }
    config = replace(config, **{key: value for key, value in changes.items() if value is not None})
    out = args.out or Path("outputs") / "demo" / time.strftime("%Y%m%d-%H%M%S")
    summary = run_demo(out, config, quick=args.quick, echo=lambda text: console.print(text, markup=False))
    console.print("\n[bold]tiers demo[/bold] summary")
    for row in summary["modes"]:
        console.print(f"  {row['label']:58s} {100 * row['success']:5.1f}% of {row['episodes']}", markup=False)
    return 0
