"""Rate: ticks on a fixed grid without drift or bursts; jitter statistics."""

from __future__ import annotations

import pytest

from tiers.deploy.rate import JitterStats, Rate


class _SimClock:
    """Simulated time: sleeping advances it; work advances it by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_ticks_land_on_the_grid_despite_uneven_work() -> None:
    clock = _SimClock()
    rate = Rate(50.0, clock=clock, sleep=clock.sleep, spin_s=0.0)
    ticks = []
    for k in range(20):
        clock.now += 0.002 if k % 2 else 0.015  # uneven work, always shorter than the 20 ms period
        ticks.append(rate.sleep())
    assert ticks == pytest.approx([0.02 * (k + 1) for k in range(20)])
    summary = rate.stats.summary()
    assert summary["jitter_max_ms"] == pytest.approx(0.0, abs=1e-9)
    assert summary["achieved_hz"] == pytest.approx(50.0)


def test_an_overrun_ticks_once_at_once_then_rejoins_the_grid_without_bursting() -> None:
    clock = _SimClock()
    rate = Rate(50.0, clock=clock, sleep=clock.sleep, spin_s=0.0)
    rate.sleep()  # t = 0.02
    clock.now += 0.065  # a 65 ms stall: grid points 0.04, 0.06, 0.08 are missed
    assert rate.sleep() == pytest.approx(0.085)  # the late tick fires at once (a late command beats none)
    assert rate.skipped == 2  # 0.04 and 0.06 are dropped, not fired in a burst
    assert rate.sleep() == pytest.approx(0.1)  # back on the grid, one tick per period
    assert rate.sleep() == pytest.approx(0.12)
    assert rate.stats.overruns == 1


def test_jitter_statistics() -> None:
    stats = JitterStats(0.02)
    for t in (0.0, 0.021, 0.040, 0.061, 0.080):
        stats.record(t)
    summary = stats.summary()
    assert summary["ticks"] == 5
    assert summary["jitter_max_ms"] == pytest.approx(1.0)
    assert summary["period_mean_ms"] == pytest.approx(20.0)


def test_a_real_clock_rate_keeps_time() -> None:
    rate = Rate(200.0)
    for _ in range(20):
        rate.sleep()
    # behaviour, not speed: 20 ticks at 200 Hz are one tick per 5 ms grid point, none skipped on average
    summary = rate.stats.summary()
    assert summary["ticks"] == 20
    assert summary["period_mean_ms"] == pytest.approx(5.0, rel=0.5)


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="rate_hz"):
        Rate(0.0)
    with pytest.raises(ValueError, match="period"):
        JitterStats(-1.0)
