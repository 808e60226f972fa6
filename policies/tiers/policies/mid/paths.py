"""Collision-aware 3D end-effector paths from the current tool pose to keypoint affordances.

A path is a sequence of named segments, each a straight line (or an arc for door swings) with a gripper
command and a speed::

    pick:    [rise] -> transport (at a safe height) -> pre-grasp (above the keypoint) -> approach (down)
             -> grasp (hold while the fingers close) -> lift
    place:   [rise] -> transport -> pre-place -> place (down) -> release (hold) -> retreat (up)
    insert:  [rise] -> transport -> pre-place (in front of the opening) -> insert (slide in, tool leaning)
             -> place (down) -> release (hold) -> retreat (up, back out)
    handle:  [rise] -> transport -> pre-grasp -> approach -> grasp -> pull / push / swing -> release -> retreat
    push:    [rise] -> transport -> pre-push -> approach -> push -> retreat

Collisions are checked against the point cloud with a scipy KD-tree: the tool is a handful of spheres (the
fingers, the hand body, the wrist; plus the held object during transport), each must keep ``clearance`` from
every obstacle point. The counter is a floor (the TCP stays ``min_tcp_height`` above it) rather than points.
Near contact the target's own points are not obstacles (the fingers must close around it). A free-space
segment whose straight line collides is replaced by an RRT-Connect path in 3D (then shortcut).

Reproducibility: every :meth:`PathPlanner.plan` call samples from a fresh generator seeded with
(``PathConfig.seed``, the episode seed given to :meth:`PathPlanner.seed`), and RRT-Connect stops after
``rrt_iterations`` extensions, so a plan is a function of the scene and the seeds alone. A wall-clock limit
(``rrt_time_limit``) is opt-in: with it, how far the search gets depends on the machine's speed and load.

Time parameterisation: each segment runs rest-to-rest with a trapezoidal speed profile whose peak is the
segment's speed (at most the embodiment's ``max_ee_speed``) and whose rotation rate stays under
``angular_speed``; the result is an :class:`~tiers.core.ee_path.EEPath`.

Bad input never crashes the planner and never yields a path outside the workspace: :class:`PathResult`
carries either a path or the reason there is none (empty cloud, keypoint outside the workspace or out of
reach, no IK solution, no collision-free route).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation, Slerp

from tiers.core.config import Config
from tiers.core.ee_path import EEPath, wxyz_to_xyzw, xyzw_to_wxyz
from tiers.policies.mid.affordances import DOWN, Affordance, AffordanceKind, rotate_about
from tiers.policies.mid.perception import BACKGROUND, SceneCloud

Vector = NDArray[np.float64]
Sphere = tuple[Vector, float, str]  # tool-frame centre (3,) m, radius m, kind ("finger", "hand", "wrist", "held")
RAMP_FRACTION = 0.25  # fraction of a segment's duration spent accelerating (and as much braking)
SMOOTH_PEAK = 1.0 / (1.0 - RAMP_FRACTION)  # peak / mean speed of the trapezoidal profile


@dataclass
class WorkspaceConfig(Config):
    """Where the tool may go (base frame)."""

    low: list[float] = field(default_factory=lambda: [-0.15, -0.75, -0.02])  # m, lower corner of the box
    high: list[float] = field(default_factory=lambda: [0.85, 0.75, 0.75])  # m, upper corner of the box
    shoulder: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.333])  # m, centre of the reach sphere
    reach: float = 0.82  # m, farthest TCP distance from the shoulder with the tool pointing down
    min_radius: float = 0.2  # m, nearest TCP horizontal distance from the base axis (clear of the column)

    def __post_init__(self) -> None:
        if any(lo >= hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError(f"workspace low {self.low} must be below high {self.high}")

    def violation(self, position: Vector) -> str:
        """Why ``position`` (3,) is outside the workspace, or "" if it is inside."""
        low, high = np.asarray(self.low), np.asarray(self.high)
        if np.any(position < low) or np.any(position > high):
            return f"outside the workspace box {self.low}..{self.high} m"
        distance = float(np.linalg.norm(position - np.asarray(self.shoulder)))
        if distance > self.reach:
            return f"out of reach: {distance:.2f} m from the shoulder, reach {self.reach:.2f} m"
        if float(np.linalg.norm(position[:2])) < self.min_radius:
            return f"too close to the robot's base axis (< {self.min_radius:.2f} m)"
        return ""

    def contains(self, positions: Vector) -> NDArray[np.bool_]:
        """(N,) whether each of (N, 3) positions is inside."""
        low, high = np.asarray(self.low), np.asarray(self.high)
        inside = np.all((positions >= low) & (positions <= high), axis=1)
        inside &= np.linalg.norm(positions - np.asarray(self.shoulder), axis=1) <= self.reach
        inside &= np.linalg.norm(positions[:, :2], axis=1) >= self.min_radius
        result: NDArray[np.bool_] = inside
        return result


@dataclass
class PathConfig(Config):
    """Segment geometry, collision margins, speeds and the sampling fallback."""

    workspace: WorkspaceConfig = field(default_factory=WorkspaceConfig)
    clearance: float = 0.012  # m, kept between every tool sphere and every obstacle point
    approach_height: float = 0.08  # m, pre-grasp / pre-place offset against the approach direction
    transport_height: float = 0.24  # m, least TCP height of free moves with an empty hand
    carry_clearance: float = 0.19  # m, least height of a carried object's bottom during transport
    carry_raises: list[float] = field(default_factory=lambda: [0.0, 0.06, 0.12])  # m, transport height retries
    lift_height: float = 0.12  # m, rise after a grasp
    retreat_height: float = 0.10  # m, rise after a release
    min_tcp_height: float = 0.014  # m, TCP above the support surface at least (fingertips off the counter)
    free_speed: float = 0.25  # m/s, peak tool speed in free space (capped by the embodiment's max_ee_speed)
    carry_speed: float = 0.18  # m/s, peak tool speed with an object in the hand
    contact_speed: float = 0.08  # m/s, peak tool speed near or in contact
    # m/s, peak tool speed swinging a door by its handle: the bar creeps out of the pads over time (at 0.08 m/s
    # it slipped out half way, at 0.04 m/s a quarter of the way; the scripted expert swings at 0.12 m/s)
    swing_speed: float = 0.12
    angular_speed: float = 1.0  # rad/s, peak tool rotation rate
    grasp_hold: float = 0.7  # s, the fingers close while the tool holds still
    release_hold: float = 0.4  # s, the fingers open while the tool holds still
    release_opening: float = 0.08  # m, finger opening when letting go
    check_step: float = 0.01  # m, spacing of collision checks along a segment
    obstacle_voxel: float = 0.01  # m, obstacle points are thinned to one per voxel of this size before the KD-tree
    waypoint_spacing: float = 0.03  # m, spacing of the path's waypoints along a segment
    rrt_iterations: int = 1500  # RRT-Connect extensions before giving up (the search's budget)
    rrt_step: float = 0.05  # m, RRT-Connect extension length
    # s of wall clock after which RRT-Connect gives up in one plan() call; None: the iteration budget alone
    # (reproducible). A limit makes the path depend on the machine's speed and load.
    rrt_time_limit: float | None = None
    seed: int = 0  # RRT-Connect sampling seed, combined with the episode's (same scene and seeds -> same path)
    default_hang: float = 0.04  # m, TCP height above a held object's bottom when the object is not seen
    # m, least TCP travel of a push after contact (stand-off included): a push whose end has no IK solution is
    # shortened toward it in 1 cm steps (the push predicate needs 8 cm of object motion)
    min_push_travel: float = 0.115
    push_pre_heights: list[float] = field(default_factory=lambda: [0.08, 0.04])  # m, pre-push heights tried
    insert_above: float = 0.015  # m, an insertion slides in this far above its release height
    # m, how deep the wrist camera's housing may overlap a push's target (it pushes a basket's rim along; on a
    # can's top it climbed): its spheres are checked this much higher against the target's points (clearance kept)
    camera_target_overlap: float = 0.03

    def __post_init__(self) -> None:
        speeds = ("free_speed", "carry_speed", "contact_speed", "swing_speed", "angular_speed")
        for name in (*speeds, "check_step", "rrt_step"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.rrt_time_limit is not None and self.rrt_time_limit <= 0:
            raise ValueError(f"rrt_time_limit must be positive or null, got {self.rrt_time_limit}")


class Reachability(Protocol):
    """An IK check: whether the tool can reach a pose (e.g. ``ArmKinematics.solve(...).success``)."""

    def __call__(self, position: Vector, quaternion: Vector) -> bool: ...


@dataclass(frozen=True)
class PathResult:
    """A planned path or the reason there is none.

    Attributes:
        path: the timed path (base frame), None when planning failed.
        reason: why there is no path ("" on success).
        segments: (name, start time s) of each segment, in order.
        fallback: whether a sampling-based detour replaced a colliding straight segment.
        planning_time: s spent planning.
    """

    path: EEPath | None
    reason: str = ""
    segments: tuple[tuple[str, float], ...] = ()
    fallback: bool = False
    planning_time: float = 0.0

    @property
    def ok(self) -> bool:
        return self.path is not None


@dataclass
class _Segment:
    name: str
    positions: Vector  # (K, 3) polyline, K >= 2 (or 1 for a hold)
    quaternions: Vector  # (2, 4) wxyz at the start and end (slerped along), or (K, 4) per polyline vertex
    gripper: float
    speed: float
    hold: float = 0.0  # s, for a hold segment (positions has one row)
    contact: bool = False  # near or in contact with the target: its points are not obstacles
    # "fixtures": a push's moves near the objects, where only the fixtures are obstacles (the other objects may
    # be nudged, as the scripted expert's pushes nudge them; the push affordance keeps the hand off the target)
    movable: str = ""


_PASS = (False, False)  # (check the wrist camera's housing, stop a push short of a fixture) of one pass
_PUSH_PASSES = ((True, False), (False, False), (False, True))  # a push's passes over its yaws, in order


class PlanningError(Exception):
    """Internal: a reason there is no path (turned into a PathResult).

    ``any_height``: the same failure happens at every transport height of ``carry_raises`` (a keypoint without
    an IK solution, a blocked pose every height's route passes through), so no higher transport is tried.
    """

    def __init__(self, message: str, *, any_height: bool = False):
        super().__init__(message)
        self.any_height = any_height


class PathPlanner:
    """Affordance + cloud + current tool pose -> :class:`PathResult` (see the module docstring)."""

    def __init__(
        self, config: PathConfig | None = None, *, max_ee_speed: float = 0.5, reachable: Reachability | None = None
    ):
        """
        Args:
            config: planner settings.
            max_ee_speed: m/s, the embodiment's Cartesian speed cap; every segment's peak speed stays below it.
            reachable: optional IK check of the keypoint poses (None: the workspace's reach sphere only).
        """
        self.config = config or PathConfig()
        self.max_ee_speed = max_ee_speed
        self._reachable = reachable
        self._episode_seed: int | None = None  # set by seed(); None: PathConfig.seed alone
        self._rng = self._fresh_rng()
        self._deadline = np.inf  # perf_counter() time RRT-Connect gives up at (inf: no wall-clock limit)
        self._trees: dict[str, cKDTree | None] = {}
        self._solved: dict[tuple[float, ...], bool] = {}  # IK answers of the current plan() call
        self._camera = False  # a push's segments check the wrist camera's housing against every object
        self._shorten = False  # a push may stop short of a fixture ahead (its last pass over the yaws)

    def seed(self, seed: int | None) -> None:
        """Combine ``seed`` (an episode's) with ``PathConfig.seed`` in every later plan; None: the config's alone."""
        self._episode_seed = None if seed is None else int(seed)

    def _fresh_rng(self) -> np.random.Generator:
        if self._episode_seed is None:
            return np.random.default_rng(self.config.seed)
        return np.random.default_rng([self.config.seed, self._episode_seed])

    def plan(
        self,
        affordance: Affordance,
        cloud: SceneCloud,
        ee_pose: Vector,
        *,
        gripper: float,
        held: str | None = None,
    ) -> PathResult:
        """Plan the segments that use ``affordance`` from the tool pose ``ee_pose`` (7,) (xyz m, wxyz).

        Args:
            affordance: what to do and where.
            cloud: the scene; its points are the obstacles (the held object's and, near contact, the target's
                excepted).
            ee_pose: (7,) current TCP pose, base frame.
            gripper: m, current finger opening.
            held: name of the object in the hand (its points move with the hand), None if empty.
        """
        started = time.perf_counter()
        self._rng = self._fresh_rng()  # per plan: the same scene gives the same path, whatever was planned before
        self._solved = {}
        limit = self.config.rrt_time_limit
        self._deadline = np.inf if limit is None else started + limit
        try:
            if len(cloud) == 0:
                raise PlanningError("the point cloud is empty: no obstacles can be checked, refusing to move")
            if not np.all(np.isfinite(cloud.points)):
                raise PlanningError("the point cloud has non-finite points")
            pose = np.asarray(ee_pose, np.float64)
            self._trees = self._obstacle_trees(affordance, cloud, held)
            failures = []
            # alternatives: other yaws (with their own keypoints around a rim) that grip as well; a push tries
            # every yaw with the wrist camera's housing off the objects, then every yaw without that check (it
            # may nudge a light one), then every yaw stopped short of a fixture ahead
            options = [(yaw, point, _PASS) for yaw, point in affordance.options()]
            if affordance.kind is AffordanceKind.PUSH:
                options = [(yaw, point, way) for way in _PUSH_PASSES for yaw, point, _ in options]
            for index, (yaw, point, way) in enumerate(options):
                self._camera, self._shorten = way
                candidate = replace(affordance, point=point, yaw=yaw, alternatives=(), alternative_points=())
                try:
                    # only the first option's reason is reported: the others may fail early, before their IK
                    if index > 0 and self._blocked(candidate, cloud, pose, held):
                        raise PlanningError("the tool collides at the contact or pre-contact pose")
                    segments, used_fallback = self._segments(candidate, cloud, pose, gripper, held)
                    break
                except PlanningError as error:
                    if way is options[0][2]:
                        failures.append(str(error))
            else:
                if len(failures) == 1:
                    raise PlanningError(failures[0])
                what = "rim grasps" if affordance.alternative_points else "tool yaws"
                raise PlanningError(f"all {len(failures)} {what} failed; the preferred one: {failures[0]}")
            path, starts = self._timed(segments)
            outside = ~self.config.workspace.contains(path.positions)
            if np.any(
                outside
            ):  # the planner keeps to the workspace by construction; never hand out a path that does not
                first = path.positions[np.argmax(outside)]
                raise PlanningError(f"the path would leave the workspace at {np.round(first, 3).tolist()}")
        except PlanningError as error:
            return PathResult(None, str(error), planning_time=time.perf_counter() - started)
        names = tuple((segment.name, start) for segment, start in zip(segments, starts, strict=True))
        return PathResult(path, "", names, used_fallback, time.perf_counter() - started)

    # -- segments ---------------------------------------------------------------------------------------

    def _segments(
        self, affordance: Affordance, cloud: SceneCloud, ee_pose: Vector, gripper: float, held: str | None
    ) -> tuple[list[_Segment], bool]:
        """The segments at the lowest transport height (of ``carry_raises``) whose route is collision free."""
        error: PlanningError | None = None
        for raise_by in self.config.carry_raises:
            try:
                return self._segments_at(affordance, cloud, ee_pose, gripper, held, raise_by)
            except PlanningError as failure:
                error = error or failure
                if failure.any_height:
                    raise error from None  # a higher transport fails the same way (the p95 frames tried 3)
                if "transport" not in str(failure) and "pre-" not in str(failure):
                    raise  # only free-space moves change with the transport height
        assert error is not None
        raise error

    def _blocked(self, affordance: Affordance, cloud: SceneCloud, ee_pose: Vector, held: str | None) -> bool:
        """Whether one option of ``affordance`` (one yaw and keypoint) surely has no route, from two poses that
        every route of it ends a segment in, whatever the transport height: the contact pose (the end of the
        approach, place or insertion), checked as that contact segment is, and, but for a push (whose pre-push
        height depends on IK), the pre-contact pose, checked as a free-space move. A segment whose end
        collides fails, so this is :meth:`_segments` failing without its IK solves (~1 ms each, two per
        option: the slowest frames tried 12 yaws blocked in this way)."""
        hang, offset, radius = self._held_geometry(cloud, held, ee_pose)
        spheres = _tool_spheres(held is not None, hang, offset, radius)
        support = cloud.support_height
        target, quaternion = self._contact_pose(affordance, cloud, ee_pose, held)
        pushing = affordance.kind is AffordanceKind.PUSH
        at_contact = self._checker(spheres, support, contact=True, movable="fixtures" if pushing else "", moving=False)
        if not at_contact(target[None], quaternion[None])[0]:
            return True
        if pushing:
            return False
        if affordance.inserts:  # the staging point in front of the opening
            pre = target + np.array([0.0, 0.0, self.config.insert_above]) - affordance.insertion
        else:
            pre = target - affordance.approach * self.config.approach_height
        at_pre = self._checker(spheres, support, contact=False, movable="", moving=False)
        return not bool(at_pre(pre[None], quaternion[None])[0])

    def _segments_at(
        self,
        affordance: Affordance,
        cloud: SceneCloud,
        ee_pose: Vector,
        gripper: float,
        held: str | None,
        raise_by: float,
    ) -> tuple[list[_Segment], bool]:
        """The segments of ``affordance`` with the transport ``raise_by`` m above its least height, routed.

        Raises:
            PlanningError: with ``any_height`` set where the failure does not depend on ``raise_by``.
        """
        try:
            segments, pre, quaternion = self._unrouted(affordance, cloud, ee_pose, gripper, held, raise_by)
        except PlanningError as failure:  # a keypoint's checks: the transport height plays no part in them
            raise PlanningError(str(failure), any_height=True) from None
        hang, held_offset, held_radius = self._held_geometry(cloud, held, ee_pose)
        spheres = _tool_spheres(held is not None, hang, held_offset, held_radius)
        try:
            return self._route(segments, affordance, cloud, spheres)
        except PlanningError as failure:
            any_height = self._fails_at_any_height(segments, pre, quaternion, spheres, cloud.support_height)
            raise PlanningError(str(failure), any_height=any_height) from None

    def _fails_at_any_height(
        self, segments: list[_Segment], pre: Vector, quaternion: Vector, spheres: list[Sphere], support: float
    ) -> bool:
        """Whether a route that failed fails at every transport height too: it has no transport (only the rise
        and the transport move with the height), or the pre-contact pose collides (``pre`` (3,) m and
        ``quaternion`` (4,) wxyz: where the pre-contact segment of every height ends, checked the same way)."""
        if not any(segment.name in ("rise", "transport") for segment in segments):
            return True
        pre_segment = next(segment for segment in segments if segment.name.startswith("pre-"))
        free = self._segment_checker(pre_segment, spheres, support)
        return not bool(free(pre[None], quaternion[None])[0])

    def _unrouted(
        self,
        affordance: Affordance,
        cloud: SceneCloud,
        ee_pose: Vector,
        gripper: float,
        held: str | None,
        raise_by: float,
    ) -> tuple[list[_Segment], Vector, Vector]:
        """The straight segments of ``affordance`` before collision checking, the pre-contact point (3,) m and
        the tool orientation (4,) wxyz there (the pose every transport height's route passes through)."""
        config = self.config
        start, start_q = ee_pose[:3], ee_pose[3:] / np.linalg.norm(ee_pose[3:])
        support = cloud.support_height
        kind = affordance.kind
        hang = self._held_geometry(cloud, held, ee_pose)[0]
        target, quaternion = self._contact_pose(affordance, cloud, ee_pose, held)
        self._check_keypoint(f"the {kind.value} point of the {affordance.target}", target, quaternion, support)
        if affordance.inserts:  # line up in front of the opening, slightly above the release height
            entry = target + np.array([0.0, 0.0, config.insert_above])
            pre = entry - affordance.insertion
            self._check_keypoint(f"the entry into the {affordance.target}", entry, quaternion, support)
            self._check_keypoint(f"the staging point of the {affordance.target}", pre, quaternion, support)
        else:
            pre = self._pre_point(affordance, target, quaternion, support)
        carrying = held is not None
        carry_z = config.transport_height
        if carrying:
            carry_z = max(carry_z, config.carry_clearance + hang)
        carry_z = max(carry_z, pre[2]) + raise_by
        free_speed = min(config.carry_speed if carrying else config.free_speed, self.max_ee_speed)
        contact_speed = min(config.contact_speed, self.max_ee_speed)
        segments: list[_Segment] = []
        here = start.copy()
        far = float(np.linalg.norm(pre[:2] - here[:2])) > 0.04
        if carrying:  # keep squeezing what is held (commanding the measured opening would let it slip)
            gripper = 0.0
        grip_in = affordance.opening if kind in (AffordanceKind.GRASP, AffordanceKind.HANDLE) else gripper
        if kind is AffordanceKind.PUSH:
            grip_in = 0.0
        if far and here[2] < carry_z - 0.01:
            rise = np.array([here[0], here[1], carry_z])
            segments.append(_Segment("rise", np.stack([here, rise]), np.stack([start_q, start_q]), gripper, free_speed))
            here = rise
        if far:
            above = np.array([pre[0], pre[1], carry_z])
            segments.append(
                _Segment("transport", np.stack([here, above]), np.stack([start_q, quaternion]), grip_in, free_speed)
            )
            here = above
        pushing = kind is AffordanceKind.PUSH
        segments.append(
            _Segment(
                f"pre-{kind.value}",
                np.stack([here, pre]),
                np.stack([start_q if not far else quaternion, quaternion]),
                grip_in,
                free_speed,
                movable="fixtures" if pushing else "",
            )
        )
        both = np.stack([quaternion, quaternion])
        name = {AffordanceKind.PLACE: "place"}.get(kind, "approach")
        if affordance.inserts:  # slide in under the fixture's top, then set down
            segments.append(_Segment("insert", np.stack([pre, entry]), both, grip_in, contact_speed, contact=True))
            pre = entry
        segments.append(
            _Segment(
                name, np.stack([pre, target]), both, grip_in, contact_speed, contact=True,
                movable="fixtures" if pushing else "",
            )
        )  # fmt: skip
        if kind is AffordanceKind.GRASP:
            segments.append(_Segment("grasp", target[None], both, 0.0, contact_speed, config.grasp_hold, True))
            lift = target + np.array([0.0, 0.0, config.lift_height])
            segments.append(_Segment("lift", np.stack([target, lift]), both, 0.0, contact_speed, contact=True))
        elif kind is AffordanceKind.PLACE:
            opening = config.release_opening
            segments.append(_Segment("release", target[None], both, opening, contact_speed, config.release_hold, True))
            up = target + np.array([0.0, 0.0, config.retreat_height])
            retreat, retreat_q = np.stack([target, up]), both
            if affordance.inserts:
                # off the object, straight back out of the opening, then up with the tool turned upright (the
                # next plan starts from the usual posture; a leaning forearm hides behind stale points of itself)
                lifted = target + np.array([0.0, 0.0, config.insert_above])
                out = lifted - affordance.insertion
                retreat = np.stack([target, lifted, out, out + np.array([0.0, 0.0, config.retreat_height])])
                upright = tool_quaternion(DOWN, affordance.yaw)
                retreat_q = np.stack([quaternion, quaternion, quaternion, upright])
            segments.append(_Segment("retreat", retreat, retreat_q, opening, contact_speed, contact=True))
        elif kind is AffordanceKind.HANDLE:
            segments.append(_Segment("grasp", target[None], both, 0.0, contact_speed, config.grasp_hold, True))
            if affordance.pivot is None:
                end = target + affordance.motion
                self._check_keypoint(f"the end of the {affordance.target}'s pull", end, quaternion, support)
                segments.append(_Segment("pull", np.stack([target, end]), both, 0.0, contact_speed, contact=True))
            else:
                angles = np.linspace(0.0, affordance.sweep, max(3, int(abs(affordance.sweep) / 0.05) + 1))
                arc = np.stack([rotate_about(target, affordance.pivot, a) for a in angles])
                turns = np.stack([_yaw_rotated(quaternion, a) for a in angles])
                for point in arc[[0, -1]]:
                    self._check_keypoint(f"the {affordance.target}'s swing", point, quaternion, support)
                swing_speed = min(config.swing_speed, self.max_ee_speed)
                segments.append(_Segment("swing", arc, turns, 0.0, swing_speed, contact=True))
            last = segments[-1].positions[-1]
            last_q = segments[-1].quaternions[-1]
            hold_q = np.stack([last_q, last_q])
            segments.append(
                _Segment("release", last[None], hold_q, affordance.opening, contact_speed, config.release_hold, True)
            )
            up = last + np.array([0.0, 0.0, config.retreat_height])
            segments.append(
                _Segment("retreat", np.stack([last, up]), hold_q, affordance.opening, contact_speed, contact=True)
            )
        else:  # push
            end = self._push_end(affordance, target, quaternion, support)
            segments.append(
                _Segment("push", np.stack([target, end]), both, 0.0, contact_speed, contact=True, movable="fixtures")
            )
            up = end + np.array([0.0, 0.0, config.retreat_height])
            segments.append(
                _Segment("retreat", np.stack([end, up]), both, 0.0, contact_speed, contact=True, movable="fixtures")
            )
        return segments, pre, quaternion

    def _contact_pose(
        self, affordance: Affordance, cloud: SceneCloud, ee_pose: Vector, held: str | None
    ) -> tuple[Vector, Vector]:
        """Where the tool grasps, pushes or releases: TCP position (3,) m and orientation (4,) wxyz, base frame
        (for a place, where the held object's bottom centre lands on the keypoint)."""
        start_q = ee_pose[3:] / np.linalg.norm(ee_pose[3:])
        kind = affordance.kind
        hang, offset, _ = self._held_geometry(cloud, held, ee_pose)
        if kind is AffordanceKind.PLACE and affordance.inserts:
            # an insertion: the tool turns to the affordance's leaning orientation, the held object with it
            quaternion = tool_quaternion(affordance.approach, affordance.yaw)
            target = affordance.point - self._held_bottom(cloud, held, ee_pose, quaternion)
        elif kind is AffordanceKind.PLACE:
            # PLACE's yaw is a turn of the wrist about the vertical while carrying (0: none); the held object
            # turns with the hand, so its offset from the TCP turns too. The TCP goes where it puts the
            # object's bottom centre on the keypoint.
            turn = 0.0 if not np.isfinite(affordance.yaw) else affordance.yaw
            c, s = np.cos(turn), np.sin(turn)
            offset = np.array([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]])
            target = affordance.point + np.array([-offset[0], -offset[1], hang])
            quaternion = _yaw_rotated(start_q, turn)
        else:
            target = affordance.point.copy()
            quaternion = tool_quaternion(affordance.approach, affordance.yaw)
        return target, quaternion

    def _held_geometry(self, cloud: SceneCloud, held: str | None, ee_pose: Vector) -> tuple[float, Vector, float]:
        """(TCP height above the held object's bottom m, object centre minus TCP (2,) m, footprint radius m)."""
        if held is None:
            return 0.0, np.zeros(2), 0.0
        points = cloud.segment(held)
        if len(points) < 5:
            return self.config.default_hang, np.zeros(2), 0.04
        centre = 0.5 * (points[:, :2].min(axis=0) + points[:, :2].max(axis=0))
        radius = 0.5 * float(np.linalg.norm(points[:, :2].max(axis=0) - points[:, :2].min(axis=0)))
        return float(ee_pose[2] - points[:, 2].min()), centre - ee_pose[:2], radius

    def _held_bottom(self, cloud: SceneCloud, held: str | None, ee_pose: Vector, quaternion: Vector) -> Vector:
        """(3,) m, the held object's bottom centre minus the TCP once the tool turns from ``ee_pose`` (7,) to
        ``quaternion`` (wxyz) about the TCP: the object's points turn with the hand; its bottom is their lowest
        point, its centre the middle of their xy extent."""
        tcp = ee_pose[:3]
        turn = Rotation.from_quat(wxyz_to_xyzw(quaternion)) * Rotation.from_quat(wxyz_to_xyzw(ee_pose[3:])).inv()
        points = cloud.segment(held) if held is not None else np.zeros((0, 3))
        if len(points) < 5:  # not seen: a point ``default_hang`` below the TCP
            points = tcp + np.array([[0.0, 0.0, -self.config.default_hang]])
        turned = turn.apply(points - tcp)  # (N, 3) relative to the TCP
        middle = 0.5 * (turned[:, :2].min(axis=0) + turned[:, :2].max(axis=0))
        return np.array([middle[0], middle[1], turned[:, 2].min()])

    def _pre_point(self, affordance: Affordance, target: Vector, quaternion: Vector, support: float) -> Vector:
        """(3,) the pre-contact point against the approach from ``target``; a push tries lower ones where the
        higher has no IK solution (close to the robot's base the folded arm reaches low poses only)."""
        heights = [self.config.approach_height]
        if affordance.kind is AffordanceKind.PUSH:
            heights = [h for h in self.config.push_pre_heights if h <= self.config.approach_height] or heights
        what = f"the pre-{affordance.kind.value} point of the {affordance.target}"
        return self._first_feasible(what, [target - affordance.approach * h for h in heights], quaternion, support)

    def _push_end(self, affordance: Affordance, target: Vector, quaternion: Vector, support: float) -> Vector:
        """(3,) where the push ends: the full motion, or the longest one down to ``min_push_travel`` (1 cm
        steps) whose end has an IK solution (pushes toward the robot end close to its base)."""
        length = float(np.linalg.norm(affordance.motion))
        what = f"the end of the push of the {affordance.target}"
        if length < 1e-9:
            return target.copy()
        unit = affordance.motion / length
        travels = [length, *np.arange(length - 0.01, self.config.min_push_travel - 1e-9, -0.01)]
        return self._first_feasible(what, [target + unit * travel for travel in travels], quaternion, support)

    def _first_feasible(self, what: str, candidates: list[Vector], quaternion: Vector, support: float) -> Vector:
        """The first of ``candidates`` (3,) that passes :meth:`_check_keypoint`; the last one's error if none does."""
        for candidate in candidates[:-1]:
            try:
                self._check_keypoint(what, candidate, quaternion, support)
                return candidate
            except PlanningError:
                continue
        self._check_keypoint(what, candidates[-1], quaternion, support)
        return candidates[-1]

    def _check_keypoint(self, what: str, position: Vector, quaternion: Vector, support: float) -> None:
        problem = self.config.workspace.violation(position)
        if problem:
            raise PlanningError(f"{what} {np.round(position, 3).tolist()} is {problem}")
        if position[2] < support + self.config.min_tcp_height - 1e-6:
            raise PlanningError(f"{what} {np.round(position, 3).tolist()} is below the support surface z={support:.3f}")
        if self._reachable is not None and not self._solvable(position, quaternion):
            raise PlanningError(f"{what} {np.round(position, 3).tolist()} has no inverse-kinematics solution")

    def _solvable(self, position: Vector, quaternion: Vector) -> bool:
        """The IK check, memoised within one plan() call: retries at other transport heights (and a push's
        shorter travels) ask for the same keypoint poses again, and each solve costs ~2 ms."""
        assert self._reachable is not None
        key = (*np.round(position, 6).tolist(), *np.round(quaternion, 6).tolist())
        if key not in self._solved:
            self._solved[key] = bool(self._reachable(position, quaternion))
        return self._solved[key]

    # -- collision checking -----------------------------------------------------------------------------

    def _route(
        self, segments: list[_Segment], affordance: Affordance, cloud: SceneCloud, spheres: list[Sphere]
    ) -> tuple[list[_Segment], bool]:
        """Check every segment with the tool's ``spheres`` (tool frame, the held object's included); replace
        colliding free-space lines by RRT-Connect detours."""
        config = self.config
        used_fallback = False
        routed: list[_Segment] = []
        segments = list(segments)
        for index, segment in enumerate(segments):
            free = self._segment_checker(segment, spheres, cloud.support_height)
            samples, sample_q = _densify(segment, config.check_step)
            clear = free(samples, sample_q)
            if not routed and not clear[0] and np.any(clear):
                # the tool is already there (e.g. beside a neighbour after a grasp): leaving is allowed, so the
                # first segment's leading run in contact counts as clear up to its first free sample
                clear[: int(np.argmax(clear))] = True
            if self._shorten and segment.name == "push" and clear[0] and not np.all(clear):
                # a fixture ahead: stop short of it, where the push is still long enough (then retreat from there)
                end = samples[max(int(np.argmin(clear)) - 1, 0)]
                if float(np.linalg.norm(end - segment.positions[0])) >= config.min_push_travel - 1e-9:
                    segment = replace(segment, positions=np.stack([segment.positions[0], end]))
                    following = segments[index + 1]
                    rise = following.positions[-1] - following.positions[0]
                    segments[index + 1] = replace(following, positions=np.stack([end, end + rise]))
                    clear = np.ones(1, dtype=bool)
            if np.all(clear):
                routed.append(segment)
                continue
            where = np.round(samples[np.argmin(clear)], 3).tolist()
            if not (clear[0] and clear[-1]):
                end = "start" if not clear[0] else "end"
                raise PlanningError(
                    f"the {end} of the {segment.name} segment for the {affordance.target} collides with the scene "
                    f"at {where}"
                )
            if segment.contact or len(segment.positions) != 2:
                raise PlanningError(
                    f"the {segment.name} segment near the {affordance.target} collides with the scene at {where}"
                )
            detour = self._rrt_connect(segment, free)
            if detour is None:
                raise PlanningError(
                    f"no collision-free route for the {segment.name} segment (straight line blocked at {where}, "
                    f"RRT-Connect found none in {config.rrt_iterations} extensions)"
                )
            used_fallback = True
            routed.append(
                _Segment(segment.name, detour, segment.quaternions, segment.gripper, segment.speed, contact=False)
            )
        return routed, used_fallback

    def _checker(
        self, spheres: list[Sphere], support: float, *, contact: bool, movable: str, moving: bool
    ) -> Callable[[Vector, Vector], NDArray[np.bool_]]:
        """The collision check of a segment's poses: (N, 3) positions m, (N, 4) wxyz -> (N,) clear.

        The obstacles (a KD-tree of :meth:`_obstacle_trees`) and which tool ``spheres`` count depend on the
        segment's ``contact`` and ``movable`` (:class:`_Segment`) and on whether it is a push's ``moving`` part
        (the push or its retreat); ``support`` is the counter's height, m.
        """
        tree = self._trees[movable or ("contact" if contact else "free")]
        # fingers close around the target on contact segments: only the hand and wrist spheres count there
        # (a push's fingers stay closed: they count against what its segments keep as obstacles)
        active = [s for s in spheres if movable or not (contact and s[2] == "finger")]
        # a push's moves near the objects: the wrist camera's housing must stay off every object, the target
        # included (against a tall one it levered the hand off the counter; the target moves with the fingers,
        # so its points stay where they are relative to the housing), in the push's first pass over its yaws;
        # once pushing, the target moves on with the hand
        camera_on = bool(movable) and self._camera
        camera = [(centre, radius, "camera") for centre, radius in CAMERA_SPHERES]
        # against the target a shallow overlap only pushes it too (a basket's rim); a deep one climbs it (a can)
        lifted = np.array([0.0, 0.0, -self.config.camera_target_overlap])
        camera_target = [(centre + lifted, radius, "camera") for centre, radius in CAMERA_SPHERES]

        def free(points: Vector, quats: Vector) -> NDArray[np.bool_]:
            clear = self._free(points, quats, tree, active, support)
            if camera_on:
                clear &= self._free(points, quats, self._trees["contact"], camera, support)
            if camera_on and not moving:
                clear &= self._free(points, quats, self._trees["target"], camera_target, support)
            return clear

        return free

    def _segment_checker(
        self, segment: _Segment, spheres: list[Sphere], support: float
    ) -> Callable[[Vector, Vector], NDArray[np.bool_]]:
        """:meth:`_checker` for ``segment``."""
        moving = segment.name in ("push", "retreat")
        return self._checker(spheres, support, contact=segment.contact, movable=segment.movable, moving=moving)

    def _obstacle_trees(self, affordance: Affordance, cloud: SceneCloud, held: str | None) -> dict[str, cKDTree | None]:
        """KD-trees of the obstacle points: "free" (free space), "contact" (contact segments) and, for a push,
        "fixtures" (:attr:`_Segment.movable`).

        The counter's own points are left out (it is the floor constraint), as are the held object's (they move
        with the hand); contact segments also leave out the target's box (the fingers close around it).
        """
        floor = cloud.support_height + 0.008
        above = cloud.points[:, 2] > floor
        obstacles, labels = cloud.points[above], cloud.labels[above]
        if held is not None:
            held_ids = [i for i, name in cloud.names.items() if name == held]
            obstacles = obstacles[~np.isin(labels, held_ids)]
        obstacles = _voxel_thin(obstacles, self.config.obstacle_voxel)
        free_tree = cKDTree(obstacles, balanced_tree=False) if len(obstacles) else None
        margin = 0.015
        outside = ~np.all((obstacles >= affordance.low - margin) & (obstacles <= affordance.high + margin), axis=1)
        contact_tree = cKDTree(obstacles[outside], balanced_tree=False) if np.any(outside) else None
        trees = {"free": free_tree, "contact": contact_tree}
        if affordance.kind is AffordanceKind.PUSH:
            trees["target"] = cKDTree(obstacles[~outside], balanced_tree=False) if np.any(~outside) else None
            fixtures = _voxel_thin(cloud.points[above][labels == BACKGROUND], self.config.obstacle_voxel)
            trees["fixtures"] = cKDTree(fixtures, balanced_tree=False) if len(fixtures) else None
        return trees

    def _free(
        self,
        positions: Vector,
        quaternions: Vector,
        tree: cKDTree | None,
        spheres: list[Sphere],
        support: float,
    ) -> NDArray[np.bool_]:
        """(N,) whether the tool at each (N, 3) position / (N, 4) orientation is clear of the obstacles."""
        clear = positions[:, 2] >= support + self.config.min_tcp_height - 1e-6
        clear &= self.config.workspace.contains(positions)
        if tree is None:
            return clear
        rotations = Rotation.from_quat(wxyz_to_xyzw(quaternions)).as_matrix()  # (N, 3, 3)
        for local, radius, _ in spheres:
            centres = positions + rotations @ local
            distance, _ = tree.query(centres, distance_upper_bound=radius + self.config.clearance)
            clear &= ~np.isfinite(distance)
        return clear

    def _rrt_connect(self, segment: _Segment, free: Callable[[Vector, Vector], NDArray[np.bool_]]) -> Vector | None:
        """A collision-free polyline from the segment's start to its end (3D positions), or None."""
        config = self.config
        start, goal = segment.positions[0], segment.positions[-1]
        q_start, q_goal = segment.quaternions[0], segment.quaternions[-1]

        def edge_free(a: Vector, b: Vector) -> bool:
            n = max(2, int(np.ceil(np.linalg.norm(b - a) / config.check_step)) + 1)
            points: Vector = np.linspace(a, b, n, dtype=np.float64)
            # the orientation along a detour is interpolated later: check both end orientations
            return bool(np.all(free(points, np.repeat(q_start[None], n, 0)))) and bool(
                np.all(free(points, np.repeat(q_goal[None], n, 0)))
            )

        low = np.maximum(np.asarray(config.workspace.low), np.minimum(start, goal) - 0.35)
        high = np.minimum(np.asarray(config.workspace.high), np.maximum(start, goal) + 0.35)
        low[2] = max(low[2], min(start[2], goal[2]) - 0.05)
        capacity = config.rrt_iterations * 4 + 2
        trees = [_Tree(start, capacity), _Tree(goal, capacity)]

        def extend(tree: _Tree, sample: Vector) -> int | None:
            nearest = tree.nearest(sample)
            direction = sample - tree.nodes[nearest]
            length = float(np.linalg.norm(direction))
            new = sample if length <= config.rrt_step else tree.nodes[nearest] + direction * (config.rrt_step / length)
            if not edge_free(tree.nodes[nearest], new):
                return None
            return tree.add(new, nearest)

        for iteration in range(config.rrt_iterations):
            if self._deadline < np.inf and time.perf_counter() > self._deadline:
                return None  # the opt-in wall-clock limit
            a, b = trees[iteration % 2], trees[(iteration + 1) % 2]
            sample = self._rng.uniform(low, high)
            new = extend(a, sample)
            if new is None:
                continue
            target = a.nodes[new]
            # connect: extend b toward the new node until it arrives or is blocked
            while True:
                reached = extend(b, target)
                if reached is None:
                    break
                if np.linalg.norm(b.nodes[reached] - target) < 1e-9:
                    path_a = a.branch(new)
                    path_b = b.branch(reached)
                    path = path_a[::-1] + path_b[1:] if iteration % 2 == 0 else path_b[::-1] + path_a[1:]
                    return _shortcut(np.asarray(path), edge_free)
        return None

    # -- timing -----------------------------------------------------------------------------------------

    def _timed(self, segments: list[_Segment]) -> tuple[EEPath, list[float]]:
        """Trapezoidal-speed time scaling of each segment, concatenated into one EEPath."""
        config = self.config
        waypoints: list[Vector] = []
        times: list[float] = []
        grippers: list[float] = []
        starts: list[float] = []
        clock = 0.0
        for segment in segments:
            starts.append(clock)
            first_q = segment.quaternions[0]
            if segment.hold > 0:
                pose = np.concatenate([segment.positions[0], first_q])
                if not waypoints:
                    waypoints.append(pose)
                    times.append(clock)
                    grippers.append(segment.gripper)
                # the new gripper command starts right away, the pose holds for the hold time
                for t in (clock + 1e-3, clock + segment.hold):
                    waypoints.append(pose)
                    times.append(t)
                    grippers.append(segment.gripper)
                clock += segment.hold
                continue
            cumulative = _arc_lengths(segment.positions)
            total = float(cumulative[-1])
            angle = _quaternion_angle(segment.quaternions[0], segment.quaternions[-1])
            duration = max(SMOOTH_PEAK * total / segment.speed, SMOOTH_PEAK * angle / config.angular_speed, 0.1)
            count = max(2, int(np.ceil(total / config.waypoint_spacing)) + 1, int(np.ceil(duration / 0.1)) + 1)
            ts: Vector = np.linspace(0.0, duration, count, dtype=np.float64)
            s = _smooth_array(ts / duration)
            positions = np.stack([np.interp(s * total, cumulative, segment.positions[:, k]) for k in range(3)], axis=1)
            quats = xyzw_to_wxyz(_orientation_along(segment, cumulative)(np.clip(s, 0.0, 1.0)).as_quat())
            begin = 0 if not waypoints else 1
            if waypoints and segment.gripper != grippers[-1]:  # a gripper change takes effect at the segment start
                waypoints.append(waypoints[-1])
                times.append(clock + 1e-3)
                grippers.append(segment.gripper)
                ts = ts + 1e-3
            for index in range(begin, count):
                waypoints.append(np.concatenate([positions[index], quats[index]]))
                times.append(clock + float(ts[index]))
                grippers.append(segment.gripper)
            clock += float(ts[-1])
        return EEPath(np.asarray(waypoints), np.asarray(times), np.asarray(grippers)), starts


def tool_quaternion(approach: Vector, yaw: float) -> Vector:
    """(4,) wxyz of the tool frame whose z axis is ``approach`` and whose y (closing) axis is at ``yaw``.

    The Panda's tool frame (``panda_hand_tcp``): z out of the palm between the fingers, y along the closing axis.
    """
    z = np.asarray(approach, dtype=np.float64)
    z = z / np.linalg.norm(z)
    y = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    y = y - np.dot(y, z) * z
    if np.linalg.norm(y) < 1e-6:  # approach along the closing direction: any perpendicular will do
        y = np.cross(z, [0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.cross(z, [1.0, 0.0, 0.0])
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)
    quaternion: Vector = xyzw_to_wxyz(Rotation.from_matrix(np.stack([x, y, z], axis=1)).as_quat())
    return quaternion


def _yaw_rotated(quaternion: Vector, angle: float) -> Vector:
    turned = Rotation.from_rotvec([0.0, 0.0, angle]) * Rotation.from_quat(wxyz_to_xyzw(quaternion))
    result: Vector = xyzw_to_wxyz(turned.as_quat())
    return result


# tool-frame centres (3,) m and radii m of two spheres around the wrist camera's housing (panda.xml: a box
# 52 mm on the tool's -x side, 35-71 mm behind the TCP, 6 cm wide along the closing axis)
CAMERA_SPHERES = ((np.array([-0.052, 0.015, -0.053]), 0.02), (np.array([-0.052, -0.015, -0.053]), 0.02))


def _tool_spheres(holding: bool, hang: float, offset: Vector, held_radius: float) -> list[Sphere]:
    """Tool-frame sphere centres (3,) m, radii m and kinds approximating the Panda hand (z: approach axis).

    The fingers sit at the TCP on either side along y; the hand body is a 20 cm bar across y, 4.5-8.5 cm
    behind the TCP; the wrist flange 10 cm behind it. A held object hangs below the TCP (base -z), given in
    the tool frame for a tool pointing down (x, y flipped by the tool's rotation are handled by the caller's
    orientation: the object sphere uses the base-frame offset, valid for top-down carrying).
    """
    spheres: list[Sphere] = [
        (np.array([0.0, 0.03, 0.0]), 0.012, "finger"),
        (np.array([0.0, -0.03, 0.0]), 0.012, "finger"),
        (np.array([0.0, 0.0, -0.065]), 0.035, "hand"),
        (np.array([0.0, 0.07, -0.065]), 0.03, "hand"),
        (np.array([0.0, -0.07, -0.065]), 0.03, "hand"),
        (np.array([0.0, 0.0, -0.16]), 0.05, "wrist"),
    ]
    if holding:
        # object centre below the TCP; a top-down tool's z is base -z, so "down" is +z in the tool frame
        spheres.append((np.array([0.0, 0.0, 0.5 * hang]), max(0.5 * hang, min(held_radius, 0.06)), "held"))
    return spheres


def _densify(segment: _Segment, step: float) -> tuple[Vector, Vector]:
    """Positions (M, 3) every ``step`` m along a segment and their orientations (M, 4)."""
    if len(segment.positions) == 1:
        return segment.positions, segment.quaternions[:1]
    cumulative = _arc_lengths(segment.positions)
    total = max(float(cumulative[-1]), 1e-9)
    count = max(2, int(np.ceil(total / step)) + 1)
    s = np.linspace(0.0, 1.0, count)
    points = np.stack([np.interp(s * total, cumulative, segment.positions[:, k]) for k in range(3)], axis=1)
    quats: Vector = xyzw_to_wxyz(_orientation_along(segment, cumulative)(s).as_quat())
    return np.asarray(points), quats


def _arc_lengths(positions: Vector) -> Vector:
    """(K,) m: arc length from the first vertex of a (K, 3) polyline to each vertex (0 first, non-decreasing)."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(positions, axis=0), axis=1))])


def _orientation_along(segment: _Segment, cumulative: Vector) -> Slerp:
    """The tool orientation along a segment as a function of the arc-length fraction s in [0, 1].

    Per-vertex orientations are keyed at each vertex's fraction of the arc length. The keys are divided by the
    last cumulative length itself, and the last key is set to exactly 1: dividing by a separately summed length
    can round the last key to 0.9999999999999999, and Slerp then refuses s = 1. Vertices that add no length
    (repeated points) are dropped, since Slerp needs strictly increasing keys. Otherwise, and when the segment
    has no length at all, the start and end orientations are slerped.
    """
    total = float(cumulative[-1])
    if len(segment.quaternions) == len(segment.positions) and len(segment.positions) > 2 and total > 1e-9:
        keys = cumulative / total
        keys[-1] = 1.0
        keep = np.concatenate([[True], np.diff(keys) > 0.0])
        if int(keep.sum()) >= 2:
            return Slerp(keys[keep], Rotation.from_quat(wxyz_to_xyzw(segment.quaternions[keep])))
    return Slerp([0.0, 1.0], Rotation.from_quat(wxyz_to_xyzw(segment.quaternions[[0, -1]])))


def _smooth_array(t: Vector) -> Vector:
    """Vectorised :func:`_smooth`."""
    t = np.clip(t, 0.0, 1.0)
    ramp = RAMP_FRACTION
    result: Vector = np.where(
        t < ramp,
        SMOOTH_PEAK * t * t / (2 * ramp),
        np.where(t > 1 - ramp, 1.0 - SMOOTH_PEAK * (1 - t) ** 2 / (2 * ramp), SMOOTH_PEAK * (t - ramp / 2)),
    )
    return result


def _voxel_thin(points: Vector, voxel: float) -> Vector:
    """(M, 3) one point per occupied voxel of size ``voxel`` m (the first met), for fast KD-tree builds."""
    if len(points) == 0 or voxel <= 0:
        return points
    keys = np.floor(points / voxel).astype(np.int64)
    keys -= keys.min(axis=0)
    span = keys.max(axis=0) + 1
    flat = (keys[:, 0] * span[1] + keys[:, 1]) * span[2] + keys[:, 2]  # one integer per voxel: a 1-D unique
    _, first = np.unique(flat, return_index=True)
    thinned: Vector = points[np.sort(first)]
    return thinned


def _quaternion_angle(a: Vector, b: Vector) -> float:
    return float(2 * np.arccos(np.clip(abs(float(np.dot(a, b))), 0.0, 1.0)))


class _Tree:
    """An RRT tree in preallocated arrays (nearest-neighbour search is one vectorised pass)."""

    def __init__(self, root: Vector, capacity: int):
        self._nodes = np.zeros((capacity, 3))
        self._parents = np.full(capacity, -1, dtype=np.int64)
        self._nodes[0] = root
        self._size = 1

    @property
    def nodes(self) -> Vector:
        return self._nodes[: self._size]

    def nearest(self, point: Vector) -> int:
        return int(np.argmin(np.sum((self.nodes - point) ** 2, axis=1)))

    def add(self, point: Vector, parent: int) -> int:
        self._nodes[self._size] = point
        self._parents[self._size] = parent
        self._size += 1
        return self._size - 1

    def branch(self, index: int) -> list[Vector]:
        """Nodes from ``index`` back to the root."""
        branch = []
        while index >= 0:
            branch.append(self._nodes[index].copy())
            index = int(self._parents[index])
        return branch


def _shortcut(path: Vector, edge_free: Callable[[Vector, Vector], bool]) -> Vector:
    """Greedy shortcutting: from each kept vertex jump to the farthest vertex with a free straight edge."""
    kept = [path[0]]
    index = 0
    while index < len(path) - 1:
        for candidate in range(len(path) - 1, index, -1):
            if candidate == index + 1 or edge_free(path[index], path[candidate]):
                kept.append(path[candidate])
                index = candidate
                break
    return np.asarray(kept)
