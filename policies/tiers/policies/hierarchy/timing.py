"""Per-tier timing statistics and latency budgets of the hierarchy runtime.

Every call into a tier is timed on the wall clock. A :class:`TierTimer` keeps the durations, reports
p50/p99, and says when the recent calls run over the tier's budget, so the runtime can degrade the tier
gracefully (fewer denoising steps, fewer particles) instead of missing control ticks.

Budgets are opt-in (``runtime.budgets_s`` of a hierarchy YAML). Without one the durations are only reported
and nothing the runtime decides depends on the wall clock, so an episode replays exactly from its seed; with
one, when a tier is degraded depends on the machine's speed and load (``tiers eval`` records the budgets in
``results.json`` and marks the run as not bit-reproducible).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

RECENT_CALLS = 10  # calls whose median decides whether a tier is over its budget


@dataclass
class TierTimer:
    """Wall-clock durations (s) of one tier's calls.

    Attributes:
        name: the tier ("planner", "mid", "low", "step").
        budget_s: latency budget per call in s, or None for no budget.
    """

    name: str
    budget_s: float | None = None
    durations: list[float] = field(default_factory=list)
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_CALLS))

    @contextmanager
    def measure(self) -> Iterator[None]:
        """Time the ``with`` block as one call."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.durations.append(elapsed)
            self._recent.append(elapsed)

    @property
    def over_budget(self) -> bool:
        """The median of the last :data:`RECENT_CALLS` calls exceeds the budget (needs a full window)."""
        if self.budget_s is None or len(self._recent) < RECENT_CALLS:
            return False
        return float(np.median(self._recent)) > self.budget_s

    def forget_recent(self) -> None:
        """Start a fresh window (after the tier was degraded, judge it on new calls only)."""
        self._recent.clear()

    def summary(self) -> dict[str, float | int | None]:
        """``calls``, ``p50_ms``, ``p99_ms``, ``max_ms``, ``total_s`` and ``budget_ms`` (JSON-able)."""
        values = np.asarray(self.durations)
        budget = None if self.budget_s is None else self.budget_s * 1e3
        if values.size == 0:
            return {"calls": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "total_s": 0.0, "budget_ms": budget}
        return {
            "calls": int(values.size),
            "p50_ms": float(np.percentile(values, 50) * 1e3),
            "p99_ms": float(np.percentile(values, 99) * 1e3),
            "max_ms": float(values.max() * 1e3),
            "total_s": float(values.sum()),
            "budget_ms": budget,
        }
