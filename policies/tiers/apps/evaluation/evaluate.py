"""One ``tiers eval`` run: the tasks selected, the episodes spread over workers, the report written.

::

    report = run_evaluation(EvalMode.CONTROL, out=Path("outputs/eval/control"), families=["open_close"], limit=4)
    report.overall().success_rate

Writes ``results.json``, ``summary.md``, ``success_by_family.png`` and rollout videos into ``out``
(:meth:`tiers.apps.evaluation.report.EvalReport.write`), with a progress bar and the summary on ``console``.

Reproducible: every episode derives all its random draws from its seed (:mod:`tiers.apps.evaluation.seeding`),
so the same command on the same machine gives the same episodes (success, steps, reason) with any number of
workers and either backend. What could break it is written into ``results.json`` under
``settings.reproducibility``: wall-clock budgets a hierarchy opts into, the torch threads and device. An
episode that raises is recorded as an errored failure and the run goes on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tiers.apps.evaluation.parallel import ParallelBackend, run_jobs
from tiers.apps.evaluation.report import EpisodeResult, EvalMode, EvalReport
from tiers.apps.evaluation.runner import errored_result, make_runner
from tiers.apps.evaluation.settings import EpisodeJob, EvalSettings
from tiers.core.errors import ConfigError
from tiers.policies.hierarchy.config import HierarchyConfig
from tiers.sim.backends import check_backend_available
from tiers.sim.kitchen.tasks import Task, TaskFamily, all_tasks, get_task


def select_tasks(task_ids: list[str], families: list[str], split: str, limit: int | None) -> list[str]:
    """Task ids chosen by id, family and split, then ``limit`` of them spread over the families.

    ``limit`` is shared round-robin among the families present, in :class:`TaskFamily` order (whatever the
    order of ``families``), a family with too few tasks leaving its turn to the others; each family's share
    is an evenly spaced sample of its tasks. The ids keep the order of the selection.

    Raises:
        TiersError: an unknown task id or family; the message lists valid ones.
    """
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
        tasks = spread_over_families(tasks, limit)
    return [t.id for t in tasks]


def spread_over_families(tasks: list[Task], limit: int) -> list[Task]:
    """``limit`` of ``tasks`` shared round-robin among their families (see :func:`select_tasks`)."""
    groups: dict[TaskFamily, list[Task]] = defaultdict(list)
    for task in tasks:
        groups[task.family].append(task)
    order = [family for family in TaskFamily if family in groups]
    shares = dict.fromkeys(order, 0)
    left = min(limit, len(tasks))
    while left > 0:
        for family in order:
            if left > 0 and shares[family] < len(groups[family]):
                shares[family] += 1
                left -= 1
    chosen = {id(groups[f][i]) for f in order for i in spread(len(groups[f]), shares[f])}
    return [task for task in tasks if id(task) in chosen]


def spread(total: int, count: int) -> list[int]:
    """``count`` distinct indices evenly spaced over ``range(total)``."""
    if count <= 0:
        return []
    step = total / count
    return sorted({int(i * step) for i in range(count)})


def run_evaluation(
    mode: EvalMode,
    *,
    out: Path,
    hierarchy: str | None = None,
    controller: str = "expert",
    planner: str = "gold_echo",
    tasks: list[str] | None = None,
    families: list[str] | None = None,
    split: str = "all",
    limit: int | None = None,
    seeds: int = 1,
    seed: int = 0,
    backend: str = "mujoco",
    workers: int = 1,
    parallel: str = "process",
    videos: int = 2,
    max_steps: int | None = None,
    torch_threads: int = 1,
    corrections_log: Path | None = None,
    inject_corrections: int = 0,
    record: dict[str, Any] | None = None,
    console: Console | None = None,
) -> EvalReport:
    """Evaluate in ``mode`` and write the report into ``out`` (see the module docstring).

    Args:
        mode: planner, control, integrated or corrections (Kitchen-R's modes, plus corrections).
        hierarchy: a hierarchy YAML (name or path) evaluated instead of ``planner`` / ``controller``.
        controller: ``expert`` or a low-tier checkpoint folder (control, integrated).
        planner: a name in :data:`tiers.apps.evaluation.settings.PLANNERS` (planner, integrated).
        tasks, families, split, limit: which tasks (see :func:`select_tasks`).
        seeds, seed: episodes per task, from seeds ``seed .. seed + seeds - 1``.
        backend: simulator backend name.
        workers, parallel: worker count and kind ("process" or "ray").
        videos: rollout videos of an evenly spaced sample of the executed episodes.
        max_steps: per-episode truncation override.
        torch_threads: torch's CPU threads in each worker (episodes replay exactly at one thread count).
        corrections_log: corrections mode: log the episodes as a corrections dataset here (one worker).
        inject_corrections: corrections said at seeded random times per hierarchy episode
            (:mod:`tiers.apps.evaluation.injection`); 0: none.
        record: settings written into ``results.json`` besides the run's own (the command line's flags).
        console: where progress and the summary go (default: stdout).

    Raises:
        ConfigError / IsaacUnavailableError: an unknown name, or a simulator this machine cannot start.
    """
    check_backend_available(backend)  # a missing simulator fails here, with why, before any worker starts
    console = console or Console()
    settings = EvalSettings(
        mode=mode,
        controller=controller,
        planner=planner,
        backend=backend,
        video_dir=str(out / "videos"),
        max_steps=max_steps,
        hierarchy=hierarchy,
        extra={"corrections_log": str(corrections_log)} if corrections_log else {},
        torch_threads=torch_threads,
        inject_corrections=inject_corrections,
    )
    if corrections_log and workers > 1:
        raise ConfigError("--corrections-log writes one dataset: run it with --workers 1")
    task_ids = select_tasks(tasks or [], families or [], split, limit)
    pairs = [(task_id, seed + k) for task_id in task_ids for k in range(seeds)]
    filmed = set(spread(len(pairs), videos)) if mode is not EvalMode.PLANNER else set()
    jobs = [EpisodeJob(i, task_id, episode_seed, i in filmed) for i, (task_id, episode_seed) in enumerate(pairs)]
    console.print(
        f"[bold]tiers eval[/bold] mode={mode.value} {settings.agent}: {len(jobs)} episodes "
        f"({len(task_ids)} tasks × {seeds} seeds), {workers} worker(s) [{parallel}]"
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
            workers=workers,
            backend=ParallelBackend(parallel),
            on_result=on_result,
            on_error=errored_result,  # a worker that dies takes only its own episodes with it
        )
    elapsed = time.perf_counter() - start
    report = EvalReport(
        mode,
        settings.agent,
        results,
        settings={
            **(record or {}),
            "out": str(out),
            "elapsed_s": elapsed,
            "episodes_per_minute": 60 * len(jobs) / elapsed,
            "reproducibility": reproducibility(hierarchy, torch_threads),
        },
    )
    report.write(out)
    console.print(report.markdown().split("\n## failures")[0])
    overall = report.overall()
    errored = f"; {overall.errored} errored (see results.json)" if overall.errored else ""
    console.print(
        f"{len(jobs)} episodes in {elapsed:.1f} s ({60 * len(jobs) / elapsed:.1f}/min); "
        f"overall success {overall.success_text()}{errored}; report in {out}"
    )
    budgets = report.settings["reproducibility"]["wall_clock_budgets"]
    if budgets:
        console.print(f"[yellow]wall-clock budgets {budgets}: episodes depend on this machine's speed and load")
    return report


def reproducibility(hierarchy: str | None, torch_threads: int) -> dict[str, Any]:
    """What decides whether the episodes replay exactly, for ``results.json``.

    ``wall_clock_budgets``: the real-time budgets the hierarchy opts into (its runtime's ``budgets_s`` per tier,
    the mid tier's ``paths.rrt_time_limit``), empty when none; with any, ``exact_on_this_machine`` is False.
    ``torch_threads`` (per worker) and ``cuda``: the same episodes need the same thread count and device (CPU
    reductions and GPU kernels round differently), see ``sim/README.md``, "Reproducible evaluation".
    """
    budgets: dict[str, float] = {}
    if hierarchy is not None:
        config = HierarchyConfig.load(hierarchy)
        budgets.update({f"runtime.budgets_s.{tier}": float(s) for tier, s in config.runtime.budgets_s.items()})
        paths = (config.mid.settings.get("paths") or {}) if config.mid is not None else {}
        if paths.get("rrt_time_limit") is not None:
            budgets["mid.paths.rrt_time_limit"] = float(paths["rrt_time_limit"])
    return {
        "seeded": "every draw of an episode derives from its seed (tiers.apps.evaluation.seeding)",
        "wall_clock_budgets": budgets,
        "exact_on_this_machine": not budgets,
        "torch_threads": torch_threads,
        "cuda": torch.cuda.is_available(),
    }
