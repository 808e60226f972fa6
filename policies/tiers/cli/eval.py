"""``tiers eval``: evaluate planners and controllers on the kitchen benchmark (Kitchen-R's modes).

Examples::

    tiers eval --mode control --policy expert                    # the full instruction set, gold plans
    tiers eval --mode planner --planner shuffled --split held_out
    tiers eval --mode integrated --planner gold_echo --family push --limit 10 --workers 2 --videos 3
    tiers eval --mode corrections --hierarchy offline_paths --limit 20 --corrections-log outputs/corrections

Writes ``results.json``, ``summary.md``, ``success_by_family.png`` and rollout videos into ``--out``.
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
    parser.add_argument("--policy", default="expert", help="controller that acts (control, integrated); 'expert'")
    parser.add_argument("--planner", default="gold_echo", help="planner scored (planner, integrated)")
    parser.add_argument("--task", action="append", default=[], help="task id (repeatable); default: all tasks")
    parser.add_argument("--family", action="append", default=[], help="task family (repeatable)")
    parser.add_argument("--split", choices=["all", "train", "held_out"], default="all")
    parser.add_argument("--limit", type=int, default=None, help="evenly spaced sample of at most N tasks")
    parser.add_argument("--seeds", type=int, default=1, help="episodes per task, seeds 0..N-1 (+ --seed)")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument(
        "--backend", default="mujoco", help="simulator backend: mujoco, or isaacsim (Isaac Sim 6.2, RTX GPU)"
    )
    parser.add_argument("--workers", type=int, default=1, help="parallel workers")
    parser.add_argument("--parallel", choices=["process", "ray"], default="process", help="worker backend")
    parser.add_argument("--videos", type=int, default=2, help="rollout videos for an evenly spaced sample")
    parser.add_argument("--max-steps", type=int, default=None, help="override the per-episode step limit")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/eval/<mode>-<time>)")


def select_tasks(task_ids: list[str], families: list[str], split: str, limit: int | None) -> list[str]:
    """Task ids chosen by id, family and split, then an evenly spaced sample of ``limit``.

    Raises:
        TiersError: an unknown task id or family; the message lists valid ones.
    """
    from tiers.core.errors import ConfigError
    from tiers.sim.kitchen.tasks import TaskFamily, all_tasks, get_task

    known_families = [family.value for family in TaskFamily]
    for family in families:
        if family not in known_families:
            raise ConfigError(f"unknown task family {family!r}; families: {', '.join(known_families)}")
    tasks = [get_task(task_id) for task_id in task_ids] if task_ids else list(all_tasks())
    tasks = [t for t in tasks if not families or t.family.value in families]
    if split != "all":
        tasks = [t for t in tasks if t.held_out == (split == "held_out")]
    if not tasks:
        raise ConfigError(f"no task matches --task {task_ids} --family {families} --split {split}")
    if limit is not None and limit < len(tasks):
        tasks = [tasks[int(i)] for i in _spread(len(tasks), limit)]
    return [t.id for t in tasks]


def _spread(total: int, count: int) -> list[int]:
    """``count`` distinct indices evenly spaced over ``range(total)``."""
    if count <= 0:
        return []
    step = total / count
    return sorted({int(i * step) for i in range(count)})


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from tiers.apps.evaluation.parallel import ParallelBackend, run_jobs
    from tiers.apps.evaluation.report import EpisodeResult, EvalMode, EvalReport
    from tiers.apps.evaluation.runner import EpisodeJob, EvalSettings, make_runner
    from tiers.sim.backends import check_backend_available

    check_backend_available(args.backend)  # a missing simulator fails here, with why, before any worker starts
    console = Console()
    mode = EvalMode(args.mode)
    out = args.out or Path("outputs") / "eval" / f"{mode.value}-{time.strftime('%Y%m%d-%H%M%S')}"
    settings = EvalSettings(
        mode=mode,
        controller=args.policy,
        planner=args.planner,
        backend=args.backend,
        video_dir=str(out / "videos"),
        max_steps=args.max_steps,
        hierarchy=args.hierarchy,
        extra={"corrections_log": str(args.corrections_log)} if args.corrections_log else {},
    )
    if args.corrections_log and args.workers > 1:
        from tiers.core.errors import ConfigError

        raise ConfigError("--corrections-log writes one dataset: run it with --workers 1")
    task_ids = select_tasks(args.task, args.family, args.split, args.limit)
    pairs = [(task_id, args.seed + k) for task_id in task_ids for k in range(args.seeds)]
    filmed = set(_spread(len(pairs), args.videos)) if mode is not EvalMode.PLANNER else set()
    jobs = [EpisodeJob(i, task_id, seed, i in filmed) for i, (task_id, seed) in enumerate(pairs)]
    console.print(
        f"[bold]tiers eval[/bold] mode={mode.value} {settings.agent}: {len(jobs)} episodes "
        f"({len(task_ids)} tasks × {args.seeds} seeds), {args.workers} worker(s) [{args.parallel}]"
    )
    start = time.perf_counter()
    successes = 0
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as progress:
        bar = progress.add_task("episodes  success 0.0%", total=len(jobs))

        def on_result(result: EpisodeResult) -> None:
            nonlocal successes
            successes += result.success
            done = progress.tasks[0].completed + 1
            progress.update(bar, advance=1, description=f"episodes  success {100 * successes / done:.1f}%")

        results = run_jobs(
            make_runner,
            settings,
            jobs,
            workers=args.workers,
            backend=ParallelBackend(args.parallel),
            on_result=on_result,
        )
    elapsed = time.perf_counter() - start
    report = EvalReport(
        mode,
        settings.agent,
        results,
        settings={
            **{
                key: str(value) if isinstance(value, Path) else value
                for key, value in vars(args).items()
                if key != "run"
            },
            "out": str(out),
            "elapsed_s": elapsed,
            "episodes_per_minute": 60 * len(jobs) / elapsed,
        },
    )
    report.write(out)
    console.print(report.markdown().split("\n## failures")[0])
    console.print(
        f"{len(jobs)} episodes in {elapsed:.1f} s ({60 * len(jobs) / elapsed:.1f}/min); "
        f"overall success {100 * report.overall().success_rate:.1f}%; report in {out}"
    )
    return 0
