"""Motion primitives of the scripted expert: Cartesian tool-pose segments tracked with IK at control rate.

A :class:`Segment` is one phase of a primitive ("approach", "grasp", "lift", ...): a tool pose to reach
(along a straight line or a custom path), a gripper opening to command meanwhile, a speed, and when it is
over (settled at the goal, held for some steps, or stopped early by a predicate on the scene state).
:class:`MotionTracker` turns the active segment into one joint-position action per control step:

    step k:  s_k = profile(k·dt / T)          time-scaling in [0, 1] (trapezoidal speed or constant speed)
             pose_k = path(s_k)                  Cartesian tool pose, base frame
             q_k = IK(pose_k, warm start q_{k-1}) damped least squares, null space pulled to home
             q_k = q_{k-1} + clip(q_k - q_{k-1}, ±JOINT_SPEED_FRACTION · v_max · dt)
             action_k = [q_k, gripper]           (J+1,) rad + m

Frames: every pose is the tool centre point (``panda_hand_tcp``) in the robot base frame, position in m,
quaternion wxyz. Tool axes: z is the approach axis (out of the palm, between the fingertips), y is the
closing axis (the fingers move along it); "yaw" of a tool pose is the angle of its closing axis in the
horizontal plane, rad from +x toward +y.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.commands.phases import Motion
from tiers.core.embodiment import EmbodimentSpec
from tiers.sim.scene_state import SceneState

Vector = NDArray[np.float64]

CARTESIAN_SPEED = 0.3  # m/s, peak tool speed of free-space moves (the brief's cap: 0.25-0.3 m/s)
CONTACT_SPEED = 0.12  # m/s, peak tool speed near or in contact (final descent, placing, articulations)
ANGULAR_SPEED = 1.2  # rad/s, peak tool rotation speed
JOINT_SPEED_FRACTION = 0.9  # fraction of each joint's velocity limit a step may use
POSITION_TOLERANCE = 0.006  # m, a settling segment ends once the measured TCP is this close to the goal
MAX_SETTLE_STEPS = 12  # control steps a segment may wait for the arm to settle before moving on
IK_ITERATIONS = 40  # damped-least-squares iterations per control step (warm-started)
RAMP_FRACTION = 0.25  # fraction of a smooth segment's duration spent accelerating (and as much braking)
SMOOTH_PEAK = 1.0 / (1.0 - RAMP_FRACTION)  # peak/mean speed ratio of the smooth (trapezoidal-speed) profile


class Profile(StrEnum):
    """Time scaling of a segment."""

    SMOOTH = "smooth"  # rest to rest: constant acceleration, cruise, constant braking
    LINEAR = "linear"  # constant speed (pushing, pulling: keeps contact moving)


@dataclass(frozen=True)
class Pose:
    """Tool pose in the base frame: ``position`` (3,) m, ``quaternion`` (4,) wxyz."""

    position: Vector
    quaternion: Vector

    def moved(self, offset: Vector | tuple[float, float, float]) -> Pose:
        """The same orientation, translated by ``offset`` (3,) m."""
        return Pose(self.position + np.asarray(offset, dtype=np.float64), self.quaternion)

    def interpolate(self, other: Pose, s: float) -> Pose:
        """Straight line and slerp from ``self`` (s = 0) to ``other`` (s = 1)."""
        position = self.position + s * (other.position - self.position)
        return Pose(position, slerp(self.quaternion, other.quaternion, s))


PathFunction = Callable[[Pose, float], Pose]  # (start pose, s in [0, 1]) -> pose


@dataclass(frozen=True)
class Segment:
    """One phase of a primitive.

    Attributes:
        motion: the phase label of every step spent in this segment.
        goal: tool pose at the end (base frame).
        gripper: m, opening target commanded throughout (0: squeeze).
        speed: m/s, peak tool speed.
        path: custom path ``(start, s) -> pose`` ending at ``goal``; None: straight line and slerp.
        length: m, length of a custom path (sets its duration); ignored for straight lines.
        profile: time scaling.
        settle: m, wait (up to MAX_SETTLE_STEPS) until the measured TCP is this close to ``goal``; None: no wait.
        hold: control steps to keep commanding ``goal`` after the path ends (e.g. while the fingers close).
        until: stop the segment as soon as this predicate of the scene state holds.
    """

    motion: Motion
    goal: Pose
    gripper: float
    speed: float = CARTESIAN_SPEED
    path: PathFunction | None = None
    length: float = 0.0
    profile: Profile = Profile.SMOOTH
    settle: float | None = POSITION_TOLERANCE
    hold: int = 0
    until: Callable[[SceneState], bool] | None = None


class IKSolution(Protocol):
    """What the tracker reads of an IK result (:class:`tiers.services.kinematics.IKResult`)."""

    @property
    def qpos(self) -> NDArray[Any]: ...

    @property
    def success(self) -> bool: ...


class InverseKinematics(Protocol):
    """What the tracker needs of :class:`tiers.services.kinematics.ArmKinematics`."""

    def forward(self, q: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]: ...

    def solve(
        self,
        target_position: NDArray[Any],
        target_quaternion: NDArray[Any] | None = None,
        *,
        q_init: NDArray[Any],
        q_rest: NDArray[Any] | None = None,
        max_iterations: int = 200,
    ) -> IKSolution: ...


# --- orientation helpers -----------------------------------------------------------------------------------


def slerp(q0: Vector, q1: Vector, s: float) -> Vector:
    """Spherical interpolation of unit quaternions (wxyz), shortest way."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        linear: Vector = q0 + s * (q1 - q0)
        return linear / np.linalg.norm(linear)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    result: Vector = (np.sin((1 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)
    return result / np.linalg.norm(result)


def quaternion_angle(q0: Vector, q1: Vector) -> float:
    """Rotation angle (rad) between two unit quaternions."""
    return float(2 * np.arccos(np.clip(abs(np.dot(q0, q1)), 0.0, 1.0)))


def tool_quaternion(approach: Vector, closing: Vector) -> Vector:
    """Quaternion (wxyz) of the tool frame whose z is ``approach`` and y is ``closing`` (base frame).

    ``closing`` is made orthogonal to ``approach`` first; both need not be unit vectors.
    """
    z = np.asarray(approach, dtype=np.float64)
    z = z / np.linalg.norm(z)
    y = np.asarray(closing, dtype=np.float64)
    y = y - np.dot(y, z) * z
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)
    matrix = np.stack([x, y, z], axis=1)  # (3, 3) columns: tool axes in the base frame
    quaternion = np.empty(4)
    mujoco.mju_mat2Quat(quaternion, matrix.ravel())
    return quaternion


def down_quaternion(yaw: float, tilt: float = 0.0, lean: float | None = None) -> Vector:
    """Tool pointing down with its closing axis at ``yaw`` rad.

    ``tilt`` rad leans the approach axis away from vertical toward the horizontal direction ``lean`` rad
    (default ``yaw - pi/2``; it should be perpendicular to the closing axis).
    """
    closing = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    heading = yaw - np.pi / 2 if lean is None else lean
    horizontal = np.array([np.cos(heading), np.sin(heading), 0.0])
    approach = np.sin(tilt) * horizontal + np.array([0.0, 0.0, -np.cos(tilt)])
    return tool_quaternion(approach, closing)


def tool_yaw(quaternion: Vector) -> float:
    """Angle (rad) of the tool's closing axis projected on the horizontal plane."""
    matrix = np.empty(9)
    mujoco.mju_quat2Mat(matrix, quaternion)
    closing = matrix.reshape(3, 3)[:, 1]
    return float(np.arctan2(closing[1], closing[0]))


def wrap_angle(angle: float) -> float:
    """Angle wrapped to (-pi, pi]."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def reference_yaw(position: Vector) -> float:
    """Closing-axis yaw (rad) the arm reaches at ``position`` by turning its base joint alone from home.

    At home the closing axis points along -y; yaws near this one keep the wrist joint far from its limits.
    """
    return float(np.arctan2(position[1], position[0]) - np.pi / 2)


def nearest_equivalent_yaw(yaw: float, reference: float, period: float = np.pi) -> float:
    """The angle ``yaw + k·period`` closest to ``reference`` (a two-finger grasp is symmetric under pi)."""
    return float(reference + (yaw - reference + period / 2) % period - period / 2)


# --- time scaling ------------------------------------------------------------------------------------------


def smooth_scaling(t: float) -> float:
    """Rest-to-rest scaling s(t) for t in [0, 1] with a trapezoidal speed (RAMP_FRACTION ramps, C1)."""
    t = float(np.clip(t, 0.0, 1.0))
    ramp = RAMP_FRACTION
    if t < ramp:
        return SMOOTH_PEAK * t * t / (2 * ramp)
    if t > 1 - ramp:
        return 1.0 - SMOOTH_PEAK * (1 - t) ** 2 / (2 * ramp)
    return SMOOTH_PEAK * (t - ramp / 2)


def duration(distance: float, angle: float, speed: float, profile: Profile, dt: float) -> float:
    """Seconds a segment takes so that the peak tool speed is ``speed`` m/s and rotation ANGULAR_SPEED rad/s."""
    peak = SMOOTH_PEAK if profile is Profile.SMOOTH else 1.0
    return max(peak * distance / speed, peak * angle / ANGULAR_SPEED, 2 * dt)


# --- tracking ----------------------------------------------------------------------------------------------


class MotionTracker:
    """Turns segments into joint-position actions, one control step at a time (see the module timeline)."""

    def __init__(self, kinematics: InverseKinematics, embodiment: EmbodimentSpec):
        self._kinematics = kinematics
        self._dt = embodiment.control_period
        self._max_dq = JOINT_SPEED_FRACTION * embodiment.velocity_limits * self._dt  # (J,) rad per step
        self._home = np.asarray(embodiment.home, dtype=np.float64)
        self._lower, self._upper = embodiment.position_limits
        self._q = self._home.copy()  # (J,) rad, last commanded joint targets
        self._pose = Pose(*self._forward(self._home))  # last commanded tool pose
        self._gripper = embodiment.gripper.max_opening
        self._segment: Segment | None = None
        self._start = self._pose
        self._elapsed = 0  # control steps into the segment
        self._steps = 1  # control steps of the path
        self._settling = 0

    @property
    def pose(self) -> Pose:
        """The tool pose commanded last (base frame)."""
        return self._pose

    @property
    def joint_targets(self) -> Vector:
        """(J,) rad, the joint targets commanded last."""
        return self._q.copy()

    def reset(self, joint_positions: Vector, gripper: float) -> None:
        """Start from the measured configuration (J,) rad and gripper opening (m); no segment is active."""
        self._q = np.asarray(joint_positions, dtype=np.float64).copy()
        self._pose = Pose(*self._forward(self._q))
        self._gripper = float(gripper)
        self._segment = None

    def begin(self, segment: Segment, measured_position: Vector) -> None:
        """Make ``segment`` the active one, starting from the commanded pose (or the measured one when the
        arm lags more than 2 cm behind it, e.g. after being blocked)."""
        if np.linalg.norm(measured_position - self._pose.position) > 0.02:
            self._pose = Pose(np.asarray(measured_position, dtype=np.float64).copy(), self._pose.quaternion)
        self._segment = segment
        self._start = self._pose
        self._elapsed = 0
        self._settling = 0
        if segment.path is None:
            distance = float(np.linalg.norm(segment.goal.position - self._start.position))
        else:
            distance = segment.length
        angle = quaternion_angle(self._start.quaternion, segment.goal.quaternion)
        seconds = duration(distance, angle, segment.speed, segment.profile, self._dt)
        self._steps = max(1, int(np.ceil(seconds / self._dt)))

    def step(self, measured_position: Vector, state: SceneState) -> tuple[Vector, bool]:
        """One control step of the active segment.

        Args:
            measured_position: (3,) m, the measured TCP position.
            state: privileged scene state now (for the segment's ``until``).

        Returns:
            ((J+1,) action: joint targets rad + gripper opening m, whether the segment is over).
        """
        segment = self._segment
        if segment is None:
            return self.hold_action(), True
        if segment.until is not None and segment.until(state):
            return self.hold_action(), True
        self._gripper = segment.gripper
        self._elapsed += 1
        t = min(self._elapsed / self._steps, 1.0)
        s = smooth_scaling(t) if segment.profile is Profile.SMOOTH else t
        target = segment.path(self._start, s) if segment.path is not None else self._start.interpolate(segment.goal, s)
        self._track(target)
        finished = False
        if self._elapsed >= self._steps + segment.hold:
            error = float(np.linalg.norm(measured_position - segment.goal.position))
            close = segment.settle is None or error < segment.settle
            self._settling += 1
            finished = close or self._settling > MAX_SETTLE_STEPS
        return self.hold_action(), finished

    def hold_action(self) -> Vector:
        """(J+1,) action repeating the last commanded joint targets and gripper opening."""
        return np.append(self._q, self._gripper)

    def reachable(self, pose: Pose, q_init: Vector | None = None) -> tuple[bool, Vector]:
        """Whether IK reaches ``pose`` (from ``q_init``, default the commanded configuration), and the solution."""
        start = self._q if q_init is None else q_init
        result = self._kinematics.solve(pose.position, pose.quaternion, q_init=start, q_rest=self._home)
        q = np.asarray(result.qpos, dtype=np.float64)
        return bool(result.success), q

    def _track(self, target: Pose) -> None:
        result = self._kinematics.solve(
            target.position, target.quaternion, q_init=self._q, q_rest=self._home, max_iterations=IK_ITERATIONS
        )
        q = np.asarray(result.qpos, dtype=np.float64)
        self._q = np.clip(self._q + np.clip(q - self._q, -self._max_dq, self._max_dq), self._lower, self._upper)
        self._pose = target

    def _forward(self, q: Vector) -> tuple[Vector, Vector]:
        position, quaternion = self._kinematics.forward(q)
        return np.asarray(position, dtype=np.float64), np.asarray(quaternion, dtype=np.float64)
