"""SafetyFilter: the last software check between a policy's joint targets and a robot's controller.

Every command a policy, a Code-as-Policies motion or a person sends to an arm passes through
:meth:`SafetyFilter.filter` once per control tick. The filter never raises on a bad *value*: it returns a
safe command and reports each intervention (what was changed, from what to what, and which limit acted).

Pipeline of one tick (``dt`` s after the previous command; J arm joints; action = [q (J,) rad, opening m])::

    request ──▶ NaN/Inf? ──yes──▶ hold the last safe command (whole request rejected)
                   │ no           (also when the measured state, if given, holds NaN/Inf)
                   ▼
    q  ── deviation band: |q - measured| <= max_deviation (only when the measured state is given)
       ── joint position limits, shrunk by position_margin
       ── one scale s ∈ [0, 1] on Δq = q - q_prev so that every joint keeps
            |Δq| <= min(max_step, v_max·dt)             (max change per step, velocity limit)
            Δq/dt ∈ [v_prev - a_max·dt, v_prev + a_max·dt] widened to include 0  (acceleration; braking
                                                          is never limited, so a stop is always possible)
       ── tool centre point (FK): inside the workspace box and moving at most max_ee_speed·dt; if not, the
          largest fraction of the step along q_prev → q that satisfies both (bisection; 0 = hold)
    opening ── clipped to [0, gripper.max_opening]

Scaling Δq as a whole (rather than clipping joints one by one) keeps the joint-space direction of the
policy's motion, so a slowed-down command still follows the path that was planned.

Frames and units: joint values in rad, rad/s, rad/s²; the workspace box is in the robot base frame (m);
the gripper opening is the fingertip distance in m.

This is a software filter. It is **not** a safety-rated function and not a hardware emergency stop: it
cannot act if the process, the computer or the network fails. A real arm must keep its own hardware e-stop
and its controller's limits (e.g. Franka's reflexes) enabled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import mujoco
import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiers.core.config import Config
from tiers.core.embodiment import ActionSpace, EmbodimentSpec
from tiers.core.errors import ContractError
from tiers.services.kinematics import ArmKinematics, robot_model_path

# (J,) rad -> (3,) m: the tool centre point in the base frame
ForwardKinematics = Callable[[NDArray[np.float64]], NDArray[np.float64]]


class InterventionKind(StrEnum):
    """Why the filter changed a command."""

    NON_FINITE = "non_finite"  # NaN/Inf in the request: rejected whole, last safe command held
    NON_FINITE_MEASURED = "non_finite_measured"  # NaN/Inf in the measured joint state: no band to check, held
    DEVIATION = "deviation"  # target too far ahead of the measured joint position
    POSITION_LIMIT = "position_limit"  # joint target outside its limits (minus the margin)
    MAX_STEP = "max_step"  # change per tick above max_step
    VELOCITY = "velocity"  # change per tick above the joint's velocity limit × dt
    ACCELERATION = "acceleration"  # change of velocity above the joint's acceleration limit × dt
    WORKSPACE = "workspace"  # the tool centre point would leave the workspace box
    EE_SPEED = "ee_speed"  # the tool centre point would move faster than max_ee_speed
    GRIPPER_LIMIT = "gripper_limit"  # opening outside [0, max_opening]


@dataclass(frozen=True)
class Intervention:
    """One change the filter made.

    Attributes:
        kind: which check acted.
        component: joint name, ``"gripper"``, ``"tcp"`` (tool centre point) or ``"action"`` (whole request).
        requested: the value that reached this check (rad, m, m/s; the NaN/Inf itself for a rejected request).
        applied: the value let through (same unit; for a rejected request, the held value).
        limit: the bound that acted (same unit; for a scaled step: the per-tick bound).
    """

    kind: InterventionKind
    component: str
    requested: float
    applied: float
    limit: float

    def describe(self) -> str:
        return (
            f"{self.kind.value}: {self.component} requested {self.requested:.6g}, applied {self.applied:.6g} "
            f"(limit {self.limit:.6g})"
        )


@dataclass(frozen=True)
class SafetyResult:
    """What :meth:`SafetyFilter.filter` lets through.

    Attributes:
        action: (J+1,) float64, the safe command: J joint targets in rad, then the gripper opening in m.
        interventions: every change made, in pipeline order; empty when the request passed untouched.
        held: the request was rejected and ``action`` repeats the last safe command.
    """

    action: NDArray[np.float64]
    interventions: tuple[Intervention, ...] = ()
    held: bool = False

    @property
    def modified(self) -> bool:
        return bool(self.interventions)


@dataclass
class SafetyConfig(Config):
    """Limits enforced on top of the robot's :class:`EmbodimentSpec` (which gives joint, velocity,
    acceleration limits and the Cartesian speed cap)."""

    workspace_low: list[float] = field(default_factory=lambda: [-0.3, -0.75, 0.0])  # m, base frame box corner
    workspace_high: list[float] = field(default_factory=lambda: [0.9, 0.75, 1.1])  # m, base frame box corner
    check_workspace: bool = True  # keep the tool centre point in the box and under max_ee_speed (needs FK)
    position_margin: float = 0.01  # rad kept clear of each joint limit
    velocity_scale: float = 1.0  # fraction of the spec's joint velocity limits allowed, (0, 1]
    acceleration_scale: float = 1.0  # fraction of the spec's joint acceleration limits allowed, (0, 1]
    max_step: float | None = None  # rad, largest change of any joint target per tick; None: v_max·dt only
    max_ee_speed: float | None = None  # m/s of the tool centre point; None: the spec's max_ee_speed
    max_deviation: float = 0.3  # rad a target may lead the measured joint position (when it is given)
    model_xml: str = ""  # MJCF of the arm for FK; "": the Panda model shipped in tiers.sim's assets

    def __post_init__(self) -> None:
        if len(self.workspace_low) != 3 or len(self.workspace_high) != 3:
            raise ValueError(
                f"workspace_low and workspace_high must be [x, y, z] in m, got {self.workspace_low}, "
                f"{self.workspace_high}"
            )
        if not all(lo < hi for lo, hi in zip(self.workspace_low, self.workspace_high, strict=True)):
            raise ValueError(f"workspace_low {self.workspace_low} must be below workspace_high {self.workspace_high}")
        for name in ("velocity_scale", "acceleration_scale"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.position_margin < 0:
            raise ValueError(f"position_margin must be >= 0 rad, got {self.position_margin}")
        if self.max_step is not None and self.max_step <= 0:
            raise ValueError(f"max_step must be positive rad (or null), got {self.max_step}")
        if self.max_ee_speed is not None and self.max_ee_speed <= 0:
            raise ValueError(f"max_ee_speed must be positive m/s (or null), got {self.max_ee_speed}")
        if self.max_deviation <= 0:
            raise ValueError(f"max_deviation must be positive rad, got {self.max_deviation}")


def mujoco_tcp_kinematics(spec: EmbodimentSpec, model_xml: str | Path = "") -> ForwardKinematics:
    """FK of ``spec.ee_frame`` on a MuJoCo model: (J,) rad -> (3,) m in the base frame (~7 µs a call).

    Args:
        spec: the robot; its joint names and ``ee_frame`` site must be in the model.
        model_xml: MJCF path; "" uses the model the robot's YAML names (its base is the world origin).
    """
    path = Path(model_xml) if model_xml else robot_model_path(spec)
    if not path.is_file():
        raise ContractError(f"safety FK model_xml {str(path)!r} does not exist")
    kinematics = ArmKinematics(
        mujoco.MjModel.from_xml_path(str(path)), joint_names=spec.joint_names, site_name=spec.ee_frame
    )

    def tcp_position(q: NDArray[np.float64]) -> NDArray[np.float64]:
        return kinematics.forward(q)[0]

    return tcp_position


class SafetyFilter:
    """Stateful per-tick filter of joint-position commands (see the module docstring for the pipeline).

    Example::

        safety = SafetyFilter(EmbodimentSpec.load("panda"))
        safety.reset(observation.joint_positions, observation.gripper_opening)
        for each tick:
            result = safety.filter(policy_action, measured=observation.joint_positions)
            send(result.action)            # never NaN, always within limits
            for event in result.interventions: log(event.describe())
    """

    def __init__(
        self,
        spec: EmbodimentSpec,
        config: SafetyConfig | None = None,
        *,
        forward_kinematics: ForwardKinematics | None = None,
    ):
        """
        Args:
            spec: the robot (limits, control rate, gripper, Cartesian speed cap).
            config: extra limits; defaults to :class:`SafetyConfig`'s.
            forward_kinematics: (J,) rad -> (3,) m tool centre point in the base frame; None builds one from
                ``config.model_xml`` with MuJoCo when ``config.check_workspace`` is set.
        """
        if spec.action_space is not ActionSpace.JOINT_POSITION:
            raise ContractError(
                f"SafetyFilter filters joint_position actions; robot {spec.name!r} uses {spec.action_space.value}: "
                "convert end-effector actions to joint targets (IK) before filtering"
            )
        self.spec = spec
        self.config = config or SafetyConfig()
        lower, upper = spec.position_limits
        margin = self.config.position_margin
        if np.any(upper - lower <= 2 * margin):
            raise ContractError(f"position_margin {margin} rad leaves no range for some joint of {spec.name!r}")
        self._lower, self._upper = lower + margin, upper - margin  # (J,) rad
        self._v_max = spec.velocity_limits * self.config.velocity_scale  # (J,) rad/s
        self._a_max = spec.acceleration_limits * self.config.acceleration_scale  # (J,) rad/s²
        self._ee_speed = self.config.max_ee_speed or spec.max_ee_speed  # m/s
        self._box_low = np.asarray(self.config.workspace_low, dtype=np.float64)
        self._box_high = np.asarray(self.config.workspace_high, dtype=np.float64)
        self._fk: ForwardKinematics | None = None
        if self.config.check_workspace:
            self._fk = forward_kinematics or mujoco_tcp_kinematics(spec, self.config.model_xml)
        self._q_prev: NDArray[np.float64] | None = None  # (J,) rad, last safe joint targets
        self._v_prev: NDArray[np.float64] = np.zeros(spec.dof)  # (J,) rad/s, velocity of the last safe step
        self._p_prev: NDArray[np.float64] | None = None  # (3,) m, TCP at _q_prev
        self._gripper_prev = 0.0  # m
        self.counts: Counter[InterventionKind] = Counter()  # interventions since construction, by kind

    # -- state --------------------------------------------------------------------------------------------

    def reset(self, joint_positions: ArrayLike, gripper_opening: float) -> None:
        """Start from the measured state (call before the first tick and after every hold/stop).

        Args:
            joint_positions: (J,) rad, measured; clipped into the (margin-shrunk) limits.
            gripper_opening: m, measured.
        """
        q = np.asarray(joint_positions, dtype=np.float64)
        if q.shape != (self.spec.dof,) or not np.all(np.isfinite(q)):
            raise ContractError(f"reset needs ({self.spec.dof},) finite joint positions in rad, got {q}")
        if not np.isfinite(gripper_opening):
            raise ContractError(f"reset needs a finite gripper opening in m, got {gripper_opening}")
        self._q_prev = np.clip(q, self._lower, self._upper)
        self._v_prev = np.zeros(self.spec.dof)
        self._p_prev = self._fk(self._q_prev) if self._fk is not None else None
        self._gripper_prev = float(np.clip(gripper_opening, 0.0, self.spec.gripper.max_opening))

    @property
    def is_reset(self) -> bool:
        return self._q_prev is not None

    def last_command(self) -> NDArray[np.float64]:
        """(J+1,) the last safe command (what a hold repeats)."""
        q_prev = self._require_reset()
        return np.append(q_prev, self._gripper_prev)

    def hold(self) -> SafetyResult:
        """Repeat the last safe command (velocity becomes zero: braking is always allowed)."""
        self._v_prev = np.zeros(self.spec.dof)
        return SafetyResult(self.last_command(), (), held=True)

    # -- the filter ---------------------------------------------------------------------------------------

    def filter(self, action: ArrayLike, *, measured: ArrayLike | None = None, dt: float | None = None) -> SafetyResult:
        """Make one command safe.

        Args:
            action: (J+1,) requested joint targets in rad, then the gripper opening in m.
            measured: (J,) rad, the measured joint positions, for the deviation band; None skips that check.
                A NaN/Inf in it holds the last safe command (reported as ``non_finite_measured``).
            dt: s since the previous command; None: the robot's control period.

        Returns:
            the safe command and the interventions (see :class:`SafetyResult`).

        Raises:
            ContractError: ``action`` does not have shape (J+1,) or ``measured`` not (J,) (a programming error,
                not a bad value), or :meth:`reset` was never called.
        """
        q_prev = self._require_reset()
        request = np.asarray(action, dtype=np.float64)
        dof = self.spec.dof
        if request.shape != (dof + 1,):
            raise ContractError(
                f"safety filter: action must have shape ({dof + 1},) ({dof} joint targets in rad + gripper "
                f"opening in m), got {request.shape}"
            )
        period = self.spec.control_period if dt is None else float(dt)
        if not period > 0:
            raise ContractError(f"safety filter: dt must be positive seconds, got {dt}")
        events: list[Intervention] = []
        if not np.all(np.isfinite(request)):
            bad = int(np.flatnonzero(~np.isfinite(request))[0])
            name = self.spec.joint_names[bad] if bad < dof else "gripper"
            held = self.hold().action
            events.append(Intervention(InterventionKind.NON_FINITE, name, float(request[bad]), float(held[bad]), 0.0))
            return self._finish(held, events, held=True)

        q = request[:dof].copy()
        if measured is not None:
            band = self.config.max_deviation
            measured_q = np.asarray(measured, dtype=np.float64)
            if measured_q.shape != (dof,):
                raise ContractError(f"safety filter: measured must have shape ({dof},) in rad, got {measured_q.shape}")
            if not np.all(np.isfinite(measured_q)):
                # the band cannot be checked against a broken reading: hold rather than trust the request
                bad = int(np.flatnonzero(~np.isfinite(measured_q))[0])
                held = self.hold().action
                events.append(
                    Intervention(
                        InterventionKind.NON_FINITE_MEASURED,
                        self.spec.joint_names[bad],
                        float(measured_q[bad]),
                        float(held[bad]),
                        0.0,
                    )
                )
                return self._finish(held, events, held=True)
            q = self._clip(q, measured_q - band, measured_q + band, InterventionKind.DEVIATION, band, events)
        q = self._clip(q, self._lower, self._upper, InterventionKind.POSITION_LIMIT, None, events)
        q = self._limit_rates(q, q_prev, period, events)
        q = self._limit_tcp(q, q_prev, period, events)

        opening = float(request[dof])
        safe_opening = float(np.clip(opening, 0.0, self.spec.gripper.max_opening))
        if safe_opening != opening:
            limit = 0.0 if opening < 0 else self.spec.gripper.max_opening
            events.append(Intervention(InterventionKind.GRIPPER_LIMIT, "gripper", opening, safe_opening, limit))

        self._v_prev = (q - q_prev) / period
        self._q_prev = q
        self._gripper_prev = safe_opening
        return self._finish(np.append(q, safe_opening), events, held=False)

    # -- pipeline stages ----------------------------------------------------------------------------------

    def _clip(
        self,
        q: NDArray[np.float64],
        low: NDArray[np.float64],
        high: NDArray[np.float64],
        kind: InterventionKind,
        limit: float | None,
        events: list[Intervention],
    ) -> NDArray[np.float64]:
        clipped = np.clip(q, low, high)
        for j in np.flatnonzero(clipped != q):
            bound = float(limit) if limit is not None else float(low[j] if q[j] < low[j] else high[j])
            events.append(Intervention(kind, self.spec.joint_names[j], float(q[j]), float(clipped[j]), bound))
        return clipped

    def _limit_rates(
        self, q: NDArray[np.float64], q_prev: NDArray[np.float64], dt: float, events: list[Intervention]
    ) -> NDArray[np.float64]:
        """Scale Δq uniformly so that every joint respects max_step, velocity and acceleration (module doc)."""
        delta = q - q_prev  # (J,) rad
        step_bound = self._v_max * dt  # (J,) rad per tick
        kinds = [InterventionKind.VELOCITY] * self.spec.dof  # which bound step_bound[j] is
        if self.config.max_step is not None:
            kinds = [
                InterventionKind.MAX_STEP if self.config.max_step < b else InterventionKind.VELOCITY for b in step_bound
            ]
            step_bound = np.minimum(step_bound, self.config.max_step)
        # acceleration: velocity may change by a_max·dt per tick; the interval is widened to contain 0
        low_v, high_v = self._v_prev - self._a_max * dt, self._v_prev + self._a_max * dt
        low = np.maximum(-step_bound, np.minimum(low_v, 0.0) * dt)  # (J,) rad, ≤ 0
        high = np.minimum(step_bound, np.maximum(high_v, 0.0) * dt)  # (J,) rad, ≥ 0
        with np.errstate(divide="ignore", invalid="ignore"):
            allowed = np.where(delta > 0, high / delta, np.where(delta < 0, low / delta, np.inf))  # (J,)
        scale = float(min(1.0, np.min(allowed)))
        if scale >= 1.0:
            return q
        j = int(np.argmin(allowed))
        bound = high[j] if delta[j] > 0 else low[j]
        kind = kinds[j] if abs(bound) >= step_bound[j] - 1e-12 else InterventionKind.ACCELERATION
        applied = q_prev + scale * delta
        events.append(Intervention(kind, self.spec.joint_names[j], float(q[j]), float(applied[j]), float(bound)))
        return applied

    def _limit_tcp(
        self, q: NDArray[np.float64], q_prev: NDArray[np.float64], dt: float, events: list[Intervention]
    ) -> NDArray[np.float64]:
        """Keep the tool centre point in the box and under the Cartesian speed cap along q_prev → q."""
        if self._fk is None or self._p_prev is None:
            return q
        p_prev = self._p_prev
        max_move = self._ee_speed * dt  # m per tick
        outside_prev = self._outside(p_prev)

        def violation(p: NDArray[np.float64]) -> InterventionKind | None:
            # a TCP already outside (started there) may move, as long as it does not go further out
            outside = self._outside(p)
            if outside > 1e-9 and outside > outside_prev + 1e-9:
                return InterventionKind.WORKSPACE
            if np.linalg.norm(p - p_prev) > max_move + 1e-12:
                return InterventionKind.EE_SPEED
            return None

        p = self._fk(q)
        kind = violation(p)
        if kind is None:
            self._p_prev = p
            return q
        good, bad = 0.0, 1.0  # fractions of the step: 0 always passes (no motion)
        for _ in range(14):  # 2^-14 of a step: far below a micrometre
            middle = (good + bad) / 2
            if violation(self._fk(q_prev + middle * (q - q_prev))) is None:
                good = middle
            else:
                bad = middle
        applied = q_prev + good * (q - q_prev)
        self._p_prev = self._fk(applied)
        if kind is InterventionKind.WORKSPACE:
            events.append(Intervention(kind, "tcp", self._outside(p), self._outside(self._p_prev), 0.0))
        else:
            requested = float(np.linalg.norm(p - p_prev)) / dt
            reached = float(np.linalg.norm(self._p_prev - p_prev)) / dt
            events.append(Intervention(kind, "tcp", requested, reached, self._ee_speed))
        return applied

    def _outside(self, p: NDArray[np.float64]) -> float:
        """m, distance from ``p`` (3,) to the workspace box (0 inside)."""
        return float(np.linalg.norm(np.maximum(self._box_low - p, 0.0) + np.maximum(p - self._box_high, 0.0)))

    def _finish(self, action: NDArray[np.float64], events: list[Intervention], *, held: bool) -> SafetyResult:
        self.counts.update(event.kind for event in events)
        return SafetyResult(action, tuple(events), held=held)

    def _require_reset(self) -> NDArray[np.float64]:
        if self._q_prev is None:
            raise ContractError(
                "SafetyFilter: call reset(joint_positions, gripper_opening) with the measured state first"
            )
        return self._q_prev
