"""Run evaluation episodes in parallel: in-process, over local worker processes, or on a Ray cluster.

Each worker builds its runner once (``make_runner(settings)``: a simulator, a policy) and then runs
jobs. Every job carries its own seed and its index, and results come back in job order, so the same
jobs give the same results whatever the number of workers or the backend.

``make_runner`` and ``settings`` must be picklable (a top-level function and a dataclass), because
they travel to the workers; the runner itself never does.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, Protocol

from tiers.core.extras import require


class Job(Protocol):
    """Anything with an ``index``: its position in the run, which orders the results."""

    @property
    def index(self) -> int: ...


class ParallelBackend(StrEnum):
    PROCESS = "process"  # local worker processes (spawned: MuJoCo's GL contexts and torch do not fork well)
    RAY = "ray"  # a Ray cluster: $RAY_ADDRESS if set, else a local instance started for the run


_runner: Callable[[Any], Any] | None = None  # the runner of this worker process


def _init_worker(make_runner: Callable[[Any], Callable[[Any], Any]], settings: Any) -> None:
    global _runner
    _runner = make_runner(settings)


def _run_in_worker(job: Any) -> Any:
    assert _runner is not None, "worker used before its initializer ran"
    return _runner(job)


def run_jobs[S, J: Job, R](
    make_runner: Callable[[S], Callable[[J], R]],
    settings: S,
    jobs: Sequence[J],
    *,
    workers: int = 1,
    backend: ParallelBackend = ParallelBackend.PROCESS,
    on_result: Callable[[R], None] | None = None,
) -> list[R]:
    """Run ``jobs`` and return their results in job-index order.

    Type parameters: S the settings, J the jobs, R one job's result.

    Args:
        make_runner: builds a runner (job -> result) from ``settings``; called once per worker.
        settings: picklable description of what to build.
        jobs: jobs with distinct ``index`` values.
        workers: parallel workers; 1 runs everything in this process.
        backend: local processes or Ray (ignored when ``workers == 1``).
        on_result: called with each result as it completes (progress bars, live logs).
    """
    indices = [job.index for job in jobs]
    if len(set(indices)) != len(indices):
        raise ValueError("job indices must be distinct")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results: dict[int, R] = {}

    def collect(job_index: int, result: R) -> None:
        results[job_index] = result
        if on_result is not None:
            on_result(result)

    if workers == 1 or len(jobs) <= 1:
        runner = make_runner(settings)
        for job in jobs:
            collect(job.index, runner(job))
    elif backend is ParallelBackend.PROCESS:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(make_runner, settings),
        ) as pool:
            futures = {pool.submit(_run_in_worker, job): job.index for job in jobs}
            for future in concurrent.futures.as_completed(futures):
                collect(futures[future], future.result())
    else:
        _run_on_ray(make_runner, settings, jobs, min(workers, len(jobs)), collect)
    return [results[index] for index in indices]


def _run_on_ray[S, J: Job, R](
    make_runner: Callable[[S], Callable[[J], R]],
    settings: S,
    jobs: Sequence[J],
    workers: int,
    collect: Callable[[int, R], None],
) -> None:
    ray = require("ray", purpose="evaluation on a Ray cluster")
    started_here = not ray.is_initialized()
    if started_here:
        address = os.environ.get("RAY_ADDRESS")
        # a local instance is sized to the run; a cluster brings its own resources
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
    try:

        @ray.remote(num_cpus=1)
        class Worker:
            def __init__(self) -> None:
                self.runner = make_runner(settings)

            def run(self, job: J) -> tuple[int, R]:
                return job.index, self.runner(job)

        pool = ray.util.ActorPool([Worker.remote() for _ in range(workers)])  # type: ignore[attr-defined]
        for index, result in pool.map_unordered(lambda actor, job: actor.run.remote(job), list(jobs)):
            collect(index, result)
    finally:
        if started_here:
            ray.shutdown()
