"""Control-rate timing: a drift-free rate loop and jitter statistics of any periodic callback.

Lateness of a tick is measured against its ideal time on a fixed grid (``start + k·period``), so an early
slow tick does not shift every later deadline (no drift). A tick later than a whole period is an overrun;
the loop then skips to the next grid point instead of firing a burst of catch-up ticks, which would send a
robot several commands at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np


class JitterStats:
    """Statistics of tick times of a loop that should run every ``period`` seconds.

    Feed each tick's time with :meth:`record` (from any loop: :class:`Rate`, an rclpy timer, a sim).
    """

    def __init__(self, period: float, *, keep: int = 100_000):
        """
        Args:
            period: s, the nominal period.
            keep: at most this many recent ticks are kept for percentiles.
        """
        if not period > 0:
            raise ValueError(f"period must be positive seconds, got {period}")
        self.period = period
        self._keep = keep
        self._times: list[float] = []
        self.overruns = 0  # ticks that came more than one period late

    def record(self, t: float) -> None:
        """A tick happened at ``t`` (s, monotonic)."""
        if self._times and t - self._times[-1] > 2 * self.period:
            self.overruns += 1
        self._times.append(t)
        if len(self._times) > self._keep:
            del self._times[: len(self._times) - self._keep]

    def reset(self) -> None:
        self._times.clear()
        self.overruns = 0

    def summary(self) -> dict[str, Any]:
        """Figures in ms: mean/std period, and |period - nominal| percentiles (the jitter)."""
        if len(self._times) < 2:
            return {"ticks": len(self._times), "rate_hz": 1.0 / self.period}
        periods = np.diff(np.asarray(self._times))  # (N-1,) s
        jitter = np.abs(periods - self.period)
        return {
            "ticks": len(self._times),
            "rate_hz": 1.0 / self.period,
            "achieved_hz": float(1.0 / periods.mean()),
            "period_mean_ms": float(periods.mean() * 1e3),
            "period_std_ms": float(periods.std() * 1e3),
            "jitter_p50_ms": float(np.percentile(jitter, 50) * 1e3),
            "jitter_p99_ms": float(np.percentile(jitter, 99) * 1e3),
            "jitter_max_ms": float(jitter.max() * 1e3),
            "overruns": self.overruns,
        }


class Rate:
    """Sleep until the next tick of a fixed grid: ``rate = Rate(50); while ...: work(); rate.sleep()``."""

    def __init__(
        self,
        rate_hz: float,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        spin_s: float = 0.0005,
    ):
        """
        Args:
            rate_hz: ticks per second.
            clock: monotonic seconds.
            sleep: blocks for the given seconds (injectable for simulated time).
            spin_s: s busy-waited before each tick for precision (0 with a simulated clock).
        """
        if not rate_hz > 0 or not math.isfinite(rate_hz):
            raise ValueError(f"rate_hz must be a positive finite number, got {rate_hz}")
        self.period = 1.0 / rate_hz
        self._clock, self._sleep, self._spin = clock, sleep, spin_s
        self._next = clock() + self.period  # s, the next grid point
        self.stats = JitterStats(self.period)
        self.skipped = 0  # grid points skipped after overruns

    def sleep(self) -> float:
        """Block until the next grid point; returns the tick time (s on ``clock``)."""
        now = self._clock()
        if now > self._next + self.period:  # overrun: skip the missed grid points, do not burst
            missed = math.floor((now - self._next) / self.period)
            self.skipped += missed
            self._next += missed * self.period
        # sleep most of the way, then busy-wait the last spin_s: OS sleeps overshoot by 50-100 µs or more
        while (left := self._next - self._clock()) > 0:
            if left > self._spin:
                self._sleep(left - self._spin)
        tick = self._clock()
        self.stats.record(tick)
        self._next += self.period
        return tick
