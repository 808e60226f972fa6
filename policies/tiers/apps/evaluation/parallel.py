"""Run evaluation episodes in parallel: in-process, over local worker processes, or on a Ray cluster.

Each worker builds its runner once (``make_runner(settings)``: a simulator, a policy) and then runs
jobs. Every job carries its own seed and its index, and results come back in job order, so the same
jobs give the same results whatever the number of workers or the backend.

``make_runner`` and ``settings`` must be picklable (a top-level function and a dataclass), because
they travel to the workers; the runner itself never does.

A job whose call fails (the runner raised, its worker process died, its result could not come back) is handed
to ``on_error``, whose result stands in for it, and the other jobs go on; without ``on_error`` the error
propagates. (``tiers eval``'s runners already turn an episode's exception into a result inside the worker:
``on_error`` is the net under that, for a worker that crashes.) A Ray actor that dies is restarted.
"""

from __future__ import annotations

import concurrent.futures
import functools
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
    on_error: Callable[[J, BaseException], R] | None = None,
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
        on_error: the result of a job whose call raised (see the module docstring); None: raise.
    """
    indices = [job.index for job in jobs]
    if len(set(indices)) != len(indices):
        raise ValueError("job indices must be distinct")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results: dict[int, R] = {}

    def collect(job: J, outcome: Callable[[], R]) -> None:
        """Store the result ``outcome()`` gives, or ``on_error``'s when it raises."""
        try:
            result = outcome()
        except Exception as error:
            if on_error is None:
                raise
            result = on_error(job, error)
        results[job.index] = result
        if on_result is not None:
            on_result(result)

    if workers == 1 or len(jobs) <= 1:
        runner = make_runner(settings)
        for job in jobs:
            collect(job, functools.partial(runner, job))
    elif backend is ParallelBackend.PROCESS:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)),
            mp_context=context,
            initializer=_init_worker,
            initargs=(make_runner, settings),
        ) as pool:
            futures = {pool.submit(_run_in_worker, job): job for job in jobs}
            for future in concurrent.futures.as_completed(futures):
                collect(futures[future], future.result)
    else:
        _run_on_ray(make_runner, settings, jobs, min(workers, len(jobs)), collect)
    return [results[index] for index in indices]


def _run_on_ray[S, J: Job, R](
    make_runner: Callable[[S], Callable[[J], R]],
    settings: S,
    jobs: Sequence[J],
    workers: int,
    collect: Callable[[J, Callable[[], R]], None],
) -> None:
    ray = require("ray", purpose="evaluation on a Ray cluster")
    started_here = not ray.is_initialized()
    if started_here:
        address = os.environ.get("RAY_ADDRESS")
        # a local instance is sized to the run; a cluster brings its own resources
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
    try:

        @ray.remote(num_cpus=1, max_restarts=3)  # a dead actor comes back (its job is reported failed)
        class Worker:
            def __init__(self) -> None:
                self.runner = make_runner(settings)

            def run(self, job: J) -> R:
                return self.runner(job)

        # one job per idle actor; each result (or failure) is matched to its job through its object ref
        idle = [Worker.remote() for _ in range(workers)]  # type: ignore[attr-defined]
        waiting = list(jobs)
        running: dict[Any, tuple[Any, J]] = {}
        while waiting or running:
            while idle and waiting:
                actor, job = idle.pop(), waiting.pop(0)
                running[actor.run.remote(job)] = (actor, job)
            (ready,), _ = ray.wait(list(running), num_returns=1)
            actor, job = running.pop(ready)
            idle.append(actor)
            collect(job, functools.partial(ray.get, ready))
    finally:
        if started_here:
            ray.shutdown()
