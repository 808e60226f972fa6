"""``tiers bench TARGET``: speed benchmarks that print their figures and write them as JSON.

Targets arrive with the parts they measure; ``sim`` measures the kitchen simulation, the scripted
expert and the evaluation harness (see :mod:`tiers.sim.bench`); ``data`` the training data loader on a
recorded dataset (see :mod:`tiers.datasets.bench`); ``planner`` the high tier's planners and sandbox (see
:mod:`tiers.policies.high.bench`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELP = "run a speed benchmark (sim, data, planner) and write its figures as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["sim", "data", "planner"], help="what to measure")
    parser.add_argument("--dataset", type=Path, default=None, help="dataset folder for `data` (needs an RGB camera)")
    parser.add_argument("--steps", type=int, default=200, help="control steps timed per figure")
    parser.add_argument("--tasks", type=int, default=6, help="expert episodes in the evaluation sample")
    parser.add_argument("--workers", type=int, default=None, help="N for the N-worker evaluation figure")
    parser.add_argument("--instructions", type=int, default=40, help="`planner`: per split for CaP / endpoints")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default outputs/bench/<target>-<time>.json)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from tiers.core.errors import ConfigError

    console = Console()
    if args.target == "data" and args.dataset is None:
        raise ConfigError("tiers bench data needs --dataset PATH (a LeRobotDataset with an RGB camera)")
    console.print(f"[bold]tiers bench {args.target}[/bold]: this takes a minute or two")
    if args.target == "data":
        from tiers.datasets.bench import run_data_benchmark

        figures = run_data_benchmark(args.dataset)
    elif args.target == "planner":
        from tiers.policies.high.bench import run_planner_benchmark

        figures = run_planner_benchmark(instructions=args.instructions)
    else:
        from tiers.sim.bench import run_sim_benchmark

        figures = run_sim_benchmark(steps=args.steps, tasks=args.tasks, workers=args.workers)
    out = args.out or Path("outputs") / "bench" / f"{args.target}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    table = Table(title=f"bench {args.target}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(escape(name), f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"figures written to {out}")
    return 0
