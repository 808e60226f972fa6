"""SafetyFilter: every limit acts, reports itself, and nothing unsafe gets through (fuzzed)."""

from __future__ import annotations

import numpy as np
import pytest

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError, ContractError
from tiers.deploy.safety import InterventionKind, SafetyConfig, SafetyFilter, mujoco_tcp_kinematics


@pytest.fixture(scope="module")
def spec() -> EmbodimentSpec:
    return EmbodimentSpec.load("panda")


@pytest.fixture
def safety(spec: EmbodimentSpec) -> SafetyFilter:
    safety = SafetyFilter(spec)
    safety.reset(spec.home, 0.08)
    return safety


def _home_action(spec: EmbodimentSpec, opening: float = 0.04) -> np.ndarray:
    return np.append(spec.home, opening)


def test_a_small_motion_passes_untouched(spec: EmbodimentSpec, safety: SafetyFilter) -> None:
    action = _home_action(spec)
    action[0] += 0.02  # 0.4 rad/s at 20 Hz, far below limits; accelerating from rest needs 8 rad/s² < 15
    result = safety.filter(action)
    assert not result.modified and not result.held
    np.testing.assert_allclose(result.action, action)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("index", [0, 7])
def test_non_finite_requests_hold_the_last_safe_command(
    spec: EmbodimentSpec, safety: SafetyFilter, bad: float, index: int
) -> None:
    first = _home_action(spec)
    first[1] += 0.01
    safe = safety.filter(first).action
    action = _home_action(spec)
    action[index] = bad
    result = safety.filter(action)
    assert result.held
    np.testing.assert_array_equal(result.action, safe)
    (event,) = result.interventions
    assert event.kind is InterventionKind.NON_FINITE
    assert event.component == (spec.joint_names[0] if index == 0 else "gripper")
    assert safety.counts[InterventionKind.NON_FINITE] == 1


def test_joint_and_gripper_limits_are_enforced_and_reported(spec: EmbodimentSpec) -> None:
    _, upper = spec.position_limits
    # start at the upper limit of joint 1 so that only the position limit acts
    start = np.array(spec.home)
    start[0] = upper[0]
    safety = SafetyFilter(spec, SafetyConfig(check_workspace=False))
    safety.reset(start, 0.04)
    action = np.append(start, 0.5)
    action[0] = upper[0] + 1.0
    result = safety.filter(action)
    kinds = {event.kind: event for event in result.interventions}
    assert kinds[InterventionKind.POSITION_LIMIT].component == "panda_joint1"
    assert result.action[0] == pytest.approx(upper[0] - safety.config.position_margin)
    assert kinds[InterventionKind.GRIPPER_LIMIT].applied == pytest.approx(spec.gripper.max_opening)


def test_velocity_limit_scales_the_whole_step_keeping_its_direction(spec: EmbodimentSpec) -> None:
    safety = SafetyFilter(spec, SafetyConfig(check_workspace=False))
    safety.reset(spec.home, 0.04)
    home = np.array(spec.home)
    direction = np.array([1.0, 0.5, 0, 0, 0, 0, 0])
    target = np.append(home + 2.0 * direction, 0.04)  # far: many ticks at full speed
    kinds, previous = [], home
    for _ in range(12):
        result = safety.filter(target)
        kinds.append(result.interventions[0].kind)
        step = result.action[:7] - previous
        assert step[1] == pytest.approx(0.5 * step[0])  # direction kept
        previous = result.action[:7]
    # speeding up is acceleration-bound, then the velocity limit binds at v_max exactly
    assert kinds[0] is InterventionKind.ACCELERATION and kinds[-1] is InterventionKind.VELOCITY
    assert step[0] == pytest.approx(spec.velocity_limits[0] * spec.control_period)


def test_acceleration_limits_speeding_up_but_never_braking(spec: EmbodimentSpec) -> None:
    safety = SafetyFilter(spec, SafetyConfig(check_workspace=False))
    safety.reset(spec.home, 0.04)
    target = _home_action(spec)
    target[0] += 0.1  # a 2 rad/s jump from rest: 40 rad/s² > 15
    result = safety.filter(target)
    (event,) = result.interventions
    assert event.kind is InterventionKind.ACCELERATION
    dt = spec.control_period
    assert result.action[0] - spec.home[0] == pytest.approx(spec.acceleration_limits[0] * dt * dt)
    # a full stop right after is allowed (braking is not limited)
    stop = safety.filter(result.action)
    assert not stop.modified


def test_max_step_and_deviation_band(spec: EmbodimentSpec) -> None:
    safety = SafetyFilter(spec, SafetyConfig(check_workspace=False, max_step=0.001))
    safety.reset(spec.home, 0.04)
    action = _home_action(spec)
    action[2] += 0.004
    result = safety.filter(action)
    assert result.interventions[0].kind is InterventionKind.MAX_STEP
    assert result.action[2] - spec.home[2] == pytest.approx(0.001)

    banded = SafetyFilter(spec, SafetyConfig(check_workspace=False, max_deviation=0.05))
    measured = np.array(spec.home)
    banded.reset(measured, 0.04)
    action = _home_action(spec)
    action[3] += 1.0
    result = banded.filter(action, measured=measured)
    assert result.interventions[0].kind is InterventionKind.DEVIATION
    assert result.interventions[0].applied == pytest.approx(spec.home[3] + 0.05)


def test_workspace_box_stops_the_tool_at_the_boundary(spec: EmbodimentSpec) -> None:
    fk = mujoco_tcp_kinematics(spec)
    home_tcp = fk(np.array(spec.home))
    # a box whose top is 2 cm above the tool at home; lifting the arm (joint 2 back) raises the tool
    config = SafetyConfig(workspace_high=[0.9, 0.75, float(home_tcp[2]) + 0.02], max_ee_speed=10.0)
    safety = SafetyFilter(spec, config, forward_kinematics=fk)
    safety.reset(spec.home, 0.04)
    action = _home_action(spec)
    saw_workspace = False
    for _ in range(60):
        action[1] -= 0.01  # shoulder back: the tool rises and moves toward the robot
        result = safety.filter(action)
        saw_workspace |= any(e.kind is InterventionKind.WORKSPACE for e in result.interventions)
        assert fk(result.action[:7])[2] <= config.workspace_high[2] + 1e-6
    assert saw_workspace


def test_cartesian_speed_cap(spec: EmbodimentSpec) -> None:
    safety = SafetyFilter(spec, SafetyConfig(max_ee_speed=0.05))
    fk = mujoco_tcp_kinematics(spec)
    safety.reset(spec.home, 0.04)
    action = _home_action(spec)
    action[0] += 0.05
    result = safety.filter(action)
    kinds = [event.kind for event in result.interventions]
    assert InterventionKind.EE_SPEED in kinds
    moved = np.linalg.norm(fk(result.action[:7]) - fk(np.array(spec.home)))
    assert moved <= 0.05 * spec.control_period + 1e-6


def test_fuzz_nothing_unsafe_ever_leaves_the_filter(spec: EmbodimentSpec) -> None:
    """Random garbage (NaN, Inf, huge, tiny, in-range) for 2000 ticks: every output is finite, in limits,
    within velocity and acceleration limits of the previous output, and inside the workspace box."""
    rng = np.random.default_rng(0)
    fk = mujoco_tcp_kinematics(spec)
    safety = SafetyFilter(spec, forward_kinematics=fk)
    safety.reset(spec.home, 0.04)
    lower, upper = spec.position_limits
    dt = spec.control_period
    previous, velocity = np.array(spec.home), np.zeros(7)
    box_low, box_high = np.array(safety.config.workspace_low), np.array(safety.config.workspace_high)
    for _ in range(2000):
        action = np.append(rng.uniform(lower - 1, upper + 1), rng.uniform(-0.1, 0.2))
        roll = rng.random()
        if roll < 0.15:
            action[rng.integers(8)] = rng.choice([np.nan, np.inf, -np.inf])
        elif roll < 0.25:
            action *= 1e6
        elif roll < 0.6:
            action[:7] = previous + rng.normal(0, 0.02, 7)
        out = safety.filter(action, measured=previous).action
        q = out[:7]
        assert np.all(np.isfinite(out))
        assert np.all(q >= lower) and np.all(q <= upper)
        assert 0.0 <= out[7] <= spec.gripper.max_opening
        new_velocity = (q - previous) / dt
        assert np.all(np.abs(new_velocity) <= spec.velocity_limits + 1e-9)
        speeding_up = np.abs(new_velocity) > np.abs(velocity) + 1e-9
        jump = np.abs(new_velocity - velocity)
        assert np.all(jump[speeding_up] <= spec.acceleration_limits[speeding_up] * dt + 1e-6)
        tcp = fk(q)
        assert np.all(tcp >= box_low - 1e-6) and np.all(tcp <= box_high + 1e-6)
        previous, velocity = q, new_velocity


def test_contract_errors_name_the_problem(spec: EmbodimentSpec) -> None:
    safety = SafetyFilter(spec, SafetyConfig(check_workspace=False))
    with pytest.raises(ContractError, match="reset"):
        safety.filter(_home_action(spec))
    safety.reset(spec.home, 0.04)
    with pytest.raises(ContractError, match=r"shape \(8,\)"):
        safety.filter(np.zeros(7))
    with pytest.raises(ConfigError, match="velocity_scale"):
        SafetyConfig.from_dict({"velocity_scale": 1.5})
    with pytest.raises(ConfigError, match="workspace_low"):
        SafetyConfig.from_dict({"workspace_low": [1, 0, 0], "workspace_high": [0, 1, 1]})


def test_a_non_finite_measured_state_holds_and_is_reported(spec: EmbodimentSpec) -> None:
    """A NaN in the *measured* joints used to skip the deviation band silently and let the request through."""
    safety = SafetyFilter(spec, SafetyConfig(check_workspace=False, max_deviation=0.05))
    safety.reset(spec.home, 0.04)
    action = _home_action(spec)
    action[3] += 0.01
    measured = np.array(spec.home)
    measured[4] = np.nan
    result = safety.filter(action, measured=measured)
    assert result.held
    np.testing.assert_array_equal(result.action, _home_action(spec))  # the last safe command, not the request
    (event,) = result.interventions
    assert event.kind is InterventionKind.NON_FINITE_MEASURED and event.component == spec.joint_names[4]
    assert safety.counts[InterventionKind.NON_FINITE_MEASURED] == 1
    with pytest.raises(ContractError, match="measured must have shape"):
        safety.filter(action, measured=np.zeros(3))
