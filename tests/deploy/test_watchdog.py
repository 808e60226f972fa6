"""Watchdog: stale sources hold then stop, only an explicit resume restarts, the software stop latches."""

from __future__ import annotations

import pytest

from tiers.core.errors import ConfigError, ContractError
from tiers.deploy.watchdog import ControlState, Watchdog, WatchdogConfig


class _Clock:
    """Simulated seconds, advanced by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fed(watchdog: Watchdog, clock: _Clock) -> None:
    for source in watchdog.sources:
        watchdog.feed(source)


def test_waits_for_every_source_then_runs() -> None:
    clock = _Clock()
    watchdog = Watchdog(["joint_states", "front"], WatchdogConfig(timeout_s=0.1), clock=clock)
    assert watchdog.update() is ControlState.WAITING
    watchdog.feed("joint_states")
    assert watchdog.update() is ControlState.WAITING  # the camera has not arrived
    watchdog.feed("front")
    assert watchdog.update() is ControlState.RUNNING


def test_stale_joint_states_hold_then_stop_and_need_an_explicit_resume() -> None:
    clock = _Clock()
    watchdog = Watchdog(["joint_states", "front"], WatchdogConfig(timeout_s=0.1, stop_after_s=0.5), clock=clock)
    _fed(watchdog, clock)
    assert watchdog.update() is ControlState.RUNNING
    clock.now = 0.09
    watchdog.feed("front")  # the camera keeps coming, joint states stop
    assert watchdog.update() is ControlState.RUNNING
    clock.now = 0.101
    assert watchdog.update() is ControlState.HOLDING
    assert "joint_states" in watchdog.reason and "front" not in watchdog.reason
    clock.now = 0.3
    _fed(watchdog, clock)  # data comes back: holding is latched by default
    assert watchdog.update() is ControlState.HOLDING
    clock.now = 0.7  # stale again for longer than stop_after_s of holding
    assert watchdog.update() is ControlState.STOPPED
    _fed(watchdog, clock)
    assert watchdog.update() is ControlState.STOPPED  # STOPPED never resumes by itself
    assert watchdog.resume() is ControlState.RUNNING
    assert [t.after for t in watchdog.transitions] == [
        ControlState.RUNNING,
        ControlState.HOLDING,
        ControlState.STOPPED,
        ControlState.RUNNING,
    ]


def test_resume_on_fresh_data_leaves_holding_by_itself() -> None:
    clock = _Clock()
    watchdog = Watchdog(["joint_states"], WatchdogConfig(timeout_s=0.1, resume_on_fresh_data=True), clock=clock)
    _fed(watchdog, clock)
    watchdog.update()
    clock.now = 0.2
    assert watchdog.update() is ControlState.HOLDING
    _fed(watchdog, clock)
    assert watchdog.update() is ControlState.RUNNING


def test_software_stop_latches_and_resume_waits_for_fresh_data() -> None:
    clock = _Clock()
    watchdog = Watchdog(["joint_states"], clock=clock)
    _fed(watchdog, clock)
    watchdog.update()
    watchdog.stop("operator pressed stop")
    assert watchdog.update() is ControlState.STOPPED
    assert "software stop" in watchdog.reason
    clock.now = 1.0  # nothing fresh any more: resume goes to WAITING, then RUNNING once data arrives
    assert watchdog.resume() is ControlState.WAITING
    _fed(watchdog, clock)
    assert watchdog.update() is ControlState.RUNNING


def test_per_source_timeouts_let_cameras_be_slower_than_joint_states() -> None:
    clock = _Clock()
    config = WatchdogConfig(timeout_s=0.1, source_timeouts={"front": 0.5})
    watchdog = Watchdog(["joint_states", "front"], config, clock=clock)
    _fed(watchdog, clock)
    watchdog.update()
    clock.now = 0.3
    watchdog.feed("joint_states")
    assert watchdog.update() is ControlState.RUNNING  # the camera is 300 ms old, within its 500 ms
    clock.now = 0.55
    watchdog.feed("joint_states")
    assert watchdog.update() is ControlState.HOLDING and "front" in watchdog.reason


def test_errors_name_the_problem() -> None:
    watchdog = Watchdog(["joint_states"])
    with pytest.raises(ContractError, match="'wrist'"):
        watchdog.feed("wrist")
    with pytest.raises(ContractError, match="at least one source"):
        Watchdog([])
    with pytest.raises(ContractError, match="wrist"):
        Watchdog(["joint_states"], WatchdogConfig(source_timeouts={"wrist": 1.0}))
    with pytest.raises(ConfigError, match="timeout_s"):
        WatchdogConfig.from_dict({"timeout_s": 0})
    with pytest.raises(ConfigError, match="stop_after_s"):
        WatchdogConfig.from_dict({"stop_after_s": -0.1})  # once unreachable: the check sat after a return


def test_a_hold_stops_after_stop_after_s_even_when_data_comes_back() -> None:
    """A short gap, then fresh data: the latched hold may not repeat the held command for longer than
    stop_after_s (it once stayed HOLDING as long as the data was fresh)."""
    clock = _Clock()
    watchdog = Watchdog(["joint_states"], WatchdogConfig(timeout_s=0.1, stop_after_s=0.5), clock=clock)
    _fed(watchdog, clock)
    assert watchdog.update() is ControlState.RUNNING
    clock.now = 0.15
    assert watchdog.update() is ControlState.HOLDING
    for k in range(1, 60):  # fresh data every 20 ms from here on, for more than a second
        clock.now = 0.15 + 0.02 * k
        _fed(watchdog, clock)
        state = watchdog.update()
        if clock.now - 0.15 <= 0.5:
            assert state is ControlState.HOLDING
        else:
            assert state is ControlState.STOPPED, clock.now
    assert "held 0.50 s" in watchdog.reason
