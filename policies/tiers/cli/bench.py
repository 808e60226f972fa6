"""``tiers bench TARGET``: speed benchmarks that print their figures and write them as JSON.

Targets arrive with the parts they measure; ``sim`` measures the kitchen simulation, the scripted
expert and the evaluation harness (see :mod:`tiers.apps.bench.sim`); ``data`` the training data loader on a
recorded dataset (see :mod:`tiers.apps.bench.data`); ``planner`` the high tier's planners and sandbox (see
:mod:`tiers.apps.bench.planner`); ``lowlevel`` the low tier's policies: latency against network evaluations,
BESO-3 against DDPM-100 and lerobot's diffusion policy, training throughput and memory (see
:mod:`tiers.apps.bench.lowlevel`), and with ``--success`` the low-tier study: every low tier trained on one
recording with the same budget, success in the kitchen against latency, resumable (see
:mod:`tiers.apps.bench.low_tier_study`); ``steering`` the mid
tier's path planning per 640x480 frame, guidance cost and IK-execution success, and with ``--shift-episodes``
the test-time-shift suite with a frozen learned policy, unsteered vs steered (see :mod:`tiers.apps.bench.steering`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HELP = "run a speed benchmark (sim, data, planner, lowlevel, steering, ros) and write its figures as JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target", choices=["sim", "data", "planner", "lowlevel", "steering", "ros"], help="what to measure"
    )
    parser.add_argument("--dataset", type=Path, default=None, help="dataset folder for `data` (needs an RGB camera)")
    parser.add_argument("--steps", type=int, default=200, help="control steps timed per figure")
    parser.add_argument("--tasks", type=int, default=6, help="expert episodes in the evaluation sample")
    parser.add_argument(
        "--workers", type=int, default=None, help="N for the N-worker evaluation figure (lowlevel --success: processes)"
    )
    parser.add_argument("--instructions", type=int, default=40, help="`planner`: per split for CaP / endpoints")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default outputs/bench/<target>-<time>.json)")
    lowlevel = parser.add_argument_group("lowlevel (--steps: the training budget of --success)")
    lowlevel.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the policies run")
    lowlevel.add_argument(
        "--preset",
        choices=["kitchen", "cpu", "tiny"],
        default=None,
        help="network sizes (default kitchen; --success: cpu, lerobot's policies sized for a CPU; cpu is --success's)",
    )
    lowlevel.add_argument(
        "--evaluations", type=int, nargs="+", default=[1, 3, 10, 100], help="network evaluations per BESO chunk"
    )
    lowlevel.add_argument("--repeats", type=int, default=20, help="timed chunks per latency figure (median)")
    lowlevel.add_argument("--lerobot-repeats", type=int, default=3, help="timed chunks of lerobot's diffusion policy")
    lowlevel.add_argument("--warmup", type=int, default=2, help="untimed calls before each latency figure")
    lowlevel.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1: CPU-time figures; also steering's shift suite)"
    )
    lowlevel.add_argument("--train-steps", type=int, default=5, help="timed training steps per policy")
    lowlevel.add_argument("--train-batch", type=int, default=8, help="windows per timed training step")
    lowlevel.add_argument(
        "--policies",
        nargs="+",
        default=None,
        help="subset of beso flow ddpm lerobot_diffusion (--success: arms, of those and ddim10 lerobot_act)",
    )
    lowlevel.add_argument(
        "--success",
        action="store_true",
        help="the low-tier study: train each arm on --dataset, run the kitchen (resumable: rerun with the same --out)",
    )
    lowlevel.add_argument(
        "--no-onnx", action="store_true", help="skip BESO-3 exported and run by ONNX Runtime (needs the export extra)"
    )
    lowlevel.add_argument("--seeds", type=int, default=3, help="--success: training seeds per policy")
    lowlevel.add_argument(
        "--train-minutes", type=float, default=None, help="--success: wall-clock cap per training run (minutes)"
    )
    lowlevel.add_argument("--episodes", type=int, default=5, help="--success: episodes per task and seed")
    lowlevel.add_argument(
        "--batch-size", type=int, default=None, help="windows per batch (lowlevel --success: 32, data: 8)"
    )
    lowlevel.add_argument(
        "--max-steps", type=int, default=None, help="per-episode control-step limit (--success, --shift-episodes)"
    )
    steering = parser.add_argument_group("steering")
    steering.add_argument("--frames", type=int, default=20, help="640x480 scenes timed for path planning")
    steering.add_argument("--ik-episodes", type=int, default=0, help="IK-execution seeds per task (0: skip)")
    steering.add_argument(
        "--shift-episodes",
        type=int,
        default=0,
        help="frozen-policy test-time-shift suite: layout seeds per (shift, task), each run by 3 arms (0: skip)",
    )
    steering.add_argument("--vls-weight", type=float, default=10.0, help="--shift-episodes: weight of the VLS arm")
    steering.add_argument(
        "--fk",
        action="store_true",
        help="instead: Feynman-Kac resampling beside gradient guidance on kitchen episodes (success, ms per chunk)",
    )
    steering.add_argument("--fk-hierarchy", action="append", default=None, help="--fk: a row (repeatable)")
    steering.add_argument("--fk-limit", type=int, default=24, help="--fk: tasks of open_close and pick_place")
    steering.add_argument("--fk-seed", type=int, default=1000, help="--fk: episode seed")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from tiers.core.errors import ConfigError

    console = Console()
    if args.target == "data" and args.dataset is None:
        raise ConfigError("tiers bench data needs --dataset PATH (a LeRobotDataset with an RGB camera)")
    if args.target == "lowlevel":
        return _run_lowlevel(args)
    console.print(f"[bold]tiers bench {args.target}[/bold]: this takes a minute or two")
    if args.target == "data":
        from tiers.apps.bench.data import run_data_benchmark

        figures = run_data_benchmark(args.dataset, batch_size=args.batch_size or 8)
    elif args.target == "planner":
        from tiers.apps.bench.planner import run_planner_benchmark

        figures = run_planner_benchmark(instructions=args.instructions)
    elif args.target == "ros":
        from tiers.core.extras import require

        require("rclpy", purpose="tiers bench ros")  # before the benchmark's own rclpy imports, for a clear error
        from tiers.apps.bench.ros import run_ros_benchmark

        figures = run_ros_benchmark()
    elif args.target == "steering" and args.fk:
        return _run_fk(args, console)
    elif args.target == "steering":
        figures = _run_steering(args, console)
    else:
        from tiers.apps.bench.sim import run_sim_benchmark

        figures = run_sim_benchmark(steps=args.steps, tasks=args.tasks, workers=args.workers)
    out = args.out or Path("outputs") / "bench" / f"{args.target}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    table = Table(title=f"bench {args.target}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        if name.startswith(FROZEN_PREFIX):  # the shift suite has its own table below
            continue
        table.add_row(escape(name), f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    if figures.get("frozen_episodes"):
        console.print(_shift_table(figures))
    console.print(f"figures written to {out}")
    return 0


FROZEN_PREFIX = "frozen_"  # figure keys of the steering bench's frozen-policy shift suite


def _run_fk(args: argparse.Namespace, console: Any) -> int:
    """``tiers bench steering --fk``: the Feynman-Kac rows (:mod:`tiers.apps.bench.steering_fk`) and their table."""
    from rich.markdown import Markdown

    from tiers.apps.bench.steering_fk import ROWS, run_rows

    out = args.out or Path("outputs") / "bench" / f"steering-fk-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = run_rows(
        args.fk_hierarchy or ROWS,
        out=out,
        limit=args.fk_limit,
        seed=args.fk_seed,
        threads=args.threads or 1,
        progress=lambda text: console.print(text, markup=False),
    )
    header = [
        "| hierarchy | success [Wilson 95%] | chunk ms mean / median / p95 | FK resamples per chunk |",
        "|---|" * 4,
    ]
    console.print(Markdown("\n".join([*header, *(row.markdown() for row in rows)])))
    console.print(f"figures written to {out / 'figures.json'}")
    return 0


def _run_steering(args: argparse.Namespace, console: Any) -> dict[str, Any]:
    """``tiers bench steering``, with a progress bar over the shift suite's episodes when it runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tiers.apps.bench.steering import run_steering_benchmark

    if args.shift_episodes <= 0:
        return run_steering_benchmark(frames=args.frames, episodes=args.ik_episodes)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        bar = progress.add_task("shift suite (frozen policy)", total=None)
        outcomes: dict[str, list[bool]] = {}

        def on_episode(done: int, total: int, episode: Any) -> None:
            outcomes.setdefault(episode.arm, []).append(episode.success)
            rates = "  ".join(f"{arm} {100 * sum(v) / len(v):.0f}%" for arm, v in outcomes.items())
            progress.update(bar, completed=done, total=total, description=f"shift suite  {rates}")

        return run_steering_benchmark(
            frames=args.frames,
            episodes=args.ik_episodes,
            shift_episodes=args.shift_episodes,
            vls_weight=args.vls_weight,
            shift_max_steps=args.max_steps,
            threads=args.threads,
            on_shift_episode=on_episode,
        )


def _shift_table(figures: dict[str, Any]) -> Any:
    """Success per shift and arm, sampler latency and its ratio to the unsteered arm, gain and goal."""
    from rich.table import Table

    arms = [key.removeprefix("frozen_success/all/") for key in figures if key.startswith("frozen_success/all/")]
    shifts = [key.removeprefix("frozen_scenes/") for key in figures if key.startswith("frozen_scenes/")]
    table = Table(
        title=f"test-time shifts, frozen policy ({figures.get('frozen_hierarchy')}, "
        f"vls_weight {figures.get('frozen_vls_weight')}, {figures.get('frozen_threads')} torch thread(s))"
    )
    table.add_column("figure")
    for arm in arms:
        table.add_column(arm, justify="right")

    def row(label: str, key: str, fmt: str) -> None:
        values = [figures.get(f"{key}/{arm}") for arm in arms]
        table.add_row(label, *("" if value is None else format(value, fmt) for value in values))

    for shift in [*shifts, "all"]:
        scenes = figures.get(f"frozen_scenes/{shift}", sum(figures.get(f"frozen_scenes/{s}", 0) for s in shifts))
        row(f"success {shift} ({scenes} scenes)", f"frozen_success/{shift}", ".1%")
    row("sampler ms per chunk, mean", "frozen_chunk_ms_mean", ".1f")
    row("sampler ms per chunk, p95", "frozen_chunk_ms_p95", ".1f")
    row("latency ratio to unsteered", "frozen_latency_ratio", ".2f")
    row("reward evaluations per chunk", "frozen_reward_calls_per_chunk", ".1f")
    row("gain over unsteered (points)", "frozen_gain_points", "+.1f")
    row("goal met (>= +20 points at <= 3x)", "frozen_goal_met", "")
    return table


def _run_lowlevel(args: argparse.Namespace) -> int:
    """``tiers bench lowlevel``: latency/throughput figures, or with ``--success`` the low-tier study."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from tiers.apps.bench import lowlevel as bench
    from tiers.core.errors import ConfigError

    console = Console()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    policies = args.policies or list(bench.POLICIES)
    if args.success:
        return _run_low_tier_study(args, console)
    if args.preset == "cpu":
        raise ConfigError("--preset cpu sizes the --success study's lerobot arms; the latency bench has kitchen, tiny")
    out = args.out or Path("outputs") / "bench" / f"lowlevel-{stamp}.json"
    config = bench.LowLevelBenchConfig(
        preset=args.preset or "kitchen",
        device=args.device,
        evaluations=args.evaluations,
        repeats=args.repeats,
        lerobot_repeats=args.lerobot_repeats,
        warmup=args.warmup,
        threads=args.threads,
        train_steps=args.train_steps,
        train_batch=args.train_batch,
        policies=policies,
        onnx=not args.no_onnx,
    )
    console.print(f"[bold]tiers bench lowlevel[/bold] on {args.device}, {config.preset} networks (minutes on a CPU)")
    figures = bench.run_lowlevel_benchmark(config, progress=console.print)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = bench.plot_latency(figures, out.with_suffix(".png"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    table = Table(title="bench lowlevel")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name, value in figures.items():
        table.add_row(escape(name), f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"figures written to {out}; plot {plot}")
    return 0


def _run_low_tier_study(args: argparse.Namespace, console: Any) -> int:
    """``tiers bench lowlevel --success``: the low-tier study into ``--out`` (its folder: the runs, resumable)."""
    from rich.table import Table

    from tiers.apps.bench import low_tier_study as study
    from tiers.core.errors import ConfigError

    if args.dataset is None:
        raise ConfigError("tiers bench lowlevel --success needs --dataset PATH (a tiers record dataset)")
    # a stable default folder: a rerun of the same command resumes it
    out = args.out or Path("outputs") / "bench" / "lowlevel-success.json"
    config = study.LowTierStudyConfig(
        dataset=args.dataset,
        steps=args.steps,
        batch_size=args.batch_size or 32,
        train_minutes=args.train_minutes,
        seeds=args.seeds,
        episodes=args.episodes,
        preset=args.preset or "cpu",
        device=args.device,
        max_steps=args.max_steps,
        arms=args.policies or list(study.ARMS),
        workers=args.workers or 1,
        threads=args.threads or 1,
        latency_repeats=args.repeats,
        latency_warmup=args.warmup,
    )
    console.print(
        f"[bold]tiers bench lowlevel --success[/bold]: {len(config.arms)} arms × {config.seeds} seeds, "
        f"{config.steps} steps × {config.batch_size} per run, {config.workers} worker(s); runs in {out.with_suffix('')}"
    )
    figures = study.run_low_tier_study(config, out.with_suffix(""), progress=console.print)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    table = Table(title=f"low-tier study ({figures['latency_basis']} per chunk, B = 1)")
    for index, column in enumerate(study.STUDY_COLUMNS):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in study.study_rows(figures):
        table.add_row(*row)
    console.print(table)
    console.print(study.goal_line(figures), markup=False)
    trained, evaluated = figures["runs.trained"], figures["runs.evaluated"]
    console.print(f"this call trained {trained} run(s) and evaluated {evaluated}; the rest was already done")
    folder = out.with_suffix("")
    console.print(f"figures written to {out}; table {folder / 'table.md'}; plot {folder / 'success.png'}")
    return 0
