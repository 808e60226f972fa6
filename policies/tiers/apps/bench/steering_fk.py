"""Feynman–Kac resampling beside gradient guidance on kitchen episodes: success and sampler latency per chunk.

One command runs every row on the same tasks and seeds (the steering rows of the mid tier's README)::

    tiers bench steering --fk [--fk-hierarchy H ...] [--fk-limit 24] [--fk-seed 1000] --threads 1

Each hierarchy (default: :data:`ROWS`) is evaluated as ``tiers eval --mode control --hierarchy H --family
open_close --family pick_place --split train --limit N --seed S --threads T --videos 0`` would (the gold plan
executed by the hierarchy's mid and low tiers), in this process and one worker, so that every chunk the low
tier samples can be timed: the wall time of ``predict_action_chunk`` (encoder + sampler + reward gradients,
or the Feynman–Kac particles; ticks that pop a queued action are not counted), as in
:mod:`tiers.apps.bench.shifts`. Feynman–Kac rows also count resampling events per chunk.

Output: each row's ``tiers eval`` report under ``OUT/<hierarchy name>/``, ``OUT/figures.json``, and a markdown
table on stdout (success with its Wilson 95 % interval; chunk ms mean, median and p95).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tiers.apps.evaluation.evaluate import run_evaluation
from tiers.apps.evaluation.report import EvalMode, wilson_interval
from tiers.policies.low.policy import GenerativeLowPolicy
from tiers.policies.mid.steering import FeynmanKacLowPolicy, FeynmanKacSteering

ROWS = ("learned_paths_unguided", "learned_paths", "learned_paths_fk", "learned_paths_fk_guided")
FAMILIES = ("open_close", "pick_place")


@dataclass(frozen=True)
class Row:
    """One hierarchy's figures.

    Attributes:
        hierarchy: the hierarchy: a name in configs/hierarchies/ or a YAML's path.
        episodes, successes: episodes run and succeeded.
        success_ci95: Wilson 95 % interval of the success rate, (low, high) in [0, 1].
        chunks: chunks sampled.
        chunk_ms_mean, chunk_ms_median, chunk_ms_p95: wall time per chunk, ms (the mean includes the run's first
            chunk, which pays one-off initialisation).
        resamples_per_chunk: Feynman–Kac resampling events per steered chunk (0 without steering).
        elapsed_s: wall time of the row.
    """

    hierarchy: str
    episodes: int
    successes: int
    success_ci95: tuple[float, float]
    chunks: int
    chunk_ms_mean: float
    chunk_ms_median: float
    chunk_ms_p95: float
    resamples_per_chunk: float
    elapsed_s: float

    def markdown(self) -> str:
        low, high = self.success_ci95
        rate = 100 * self.successes / max(self.episodes, 1)
        return (
            f"| `{self.hierarchy}` | {self.successes}/{self.episodes} ({rate:.1f}% [{100 * low:.1f}, "
            f"{100 * high:.1f}]) | {self.chunk_ms_mean:.1f} / {self.chunk_ms_median:.1f} / {self.chunk_ms_p95:.1f} | "
            f"{self.resamples_per_chunk:.2f} |"
        )


@contextmanager
def _wrapped(owner: type, name: str, wrapper: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    """Replace ``owner.name`` by ``wrapper(original)`` inside the block (class level: every instance built in it)."""
    original = owner.__dict__[name]
    setattr(owner, name, wrapper(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextmanager
def chunk_probes() -> Iterator[tuple[list[float], list[int]]]:
    """Time every chunk a low tier samples (s) and count each Feynman–Kac call's resamples inside the block.

    The methods are wrapped on the classes, before the hierarchy is built: a :class:`FeynmanKacLowPolicy` binds
    its own (wrapped) ``predict_action_chunk`` onto the policy it steers, which then no longer calls the
    policy class's method, so no chunk is timed twice.
    """
    durations: list[float] = []
    resamples: list[int] = []

    def timing(method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                durations.append(time.perf_counter() - started)

        return timed

    def counting(method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            resamples.append(result.report.resamples)
            return result

        return counted

    with ExitStack() as stack:
        stack.enter_context(_wrapped(GenerativeLowPolicy, "predict_action_chunk", timing))
        stack.enter_context(_wrapped(FeynmanKacLowPolicy, "predict_action_chunk", timing))
        stack.enter_context(_wrapped(FeynmanKacSteering, "run", counting))
        yield durations, resamples


def run_row(hierarchy: str, *, out: Path, limit: int, seed: int, threads: int) -> Row:
    """Evaluate one hierarchy on the README's steering tasks and time its chunks (see the module docstring)."""
    with chunk_probes() as (durations, resamples):
        started = time.perf_counter()
        report = run_evaluation(
            EvalMode.CONTROL,
            out=out / Path(hierarchy).stem,  # a name, or a YAML's path
            hierarchy=hierarchy,
            families=list(FAMILIES),
            split="train",
            limit=limit,
            seed=seed,
            videos=0,
            torch_threads=threads,
            record={"bench": "steering_fk", "hierarchy": hierarchy},
        )
        elapsed = time.perf_counter() - started
    overall = report.overall()
    ms = 1e3 * np.asarray(durations) if durations else np.asarray([np.nan])
    return Row(
        hierarchy=hierarchy,
        episodes=overall.episodes,
        successes=overall.successes,
        success_ci95=wilson_interval(overall.successes, overall.episodes),
        chunks=len(durations),
        chunk_ms_mean=float(ms.mean()),
        chunk_ms_median=float(np.median(ms)),
        chunk_ms_p95=float(np.percentile(ms, 95)),
        resamples_per_chunk=float(np.mean(resamples)) if resamples else 0.0,
        elapsed_s=elapsed,
    )


def run_rows(
    hierarchies: Sequence[str], *, out: Path, limit: int, seed: int, threads: int, progress: Callable[[str], None]
) -> list[Row]:
    """Every row in turn (``out/figures.json`` rewritten after each: a run stopped part-way keeps its rows)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    rows: list[Row] = []
    for hierarchy in hierarchies:
        progress(f"{hierarchy}: {limit} tasks, seed {seed}")
        rows.append(run_row(hierarchy, out=out, limit=limit, seed=seed, threads=threads))
        progress(rows[-1].markdown())
        (out / "figures.json").write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return rows
