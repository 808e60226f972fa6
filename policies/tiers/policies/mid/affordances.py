"""Keypoint affordances from a segmented point cloud: where to grasp, pull, push and place.

=====================  ==============================================================================
subtask                affordance (keypoint, base frame)
=====================  ==============================================================================
pick up the X          GRASP: TCP point between the fingers, approach from above (-z), closing-axis yaw
                       across the narrow side of X's footprint (min-area rectangle of its points)
open/close the drawer  HANDLE: TCP point on the handle bar, pull (or push) displacement along the slide
open/close the cabinet HANDLE: TCP point on the door's handle bar, swing about the hinge (``pivot``, ``sweep``)
push the X D           PUSH: TCP contact point behind X, push displacement along D
put the X R the Y      PLACE: where the held X's bottom centre goes at release (a container's centre, a
                       fixture region's free surface, or a spot beside an anchor for spatial relations)
=====================  ==============================================================================

Objects come from the cloud's segments (simulator masks or clusters). Fixtures come from a static
:class:`FixtureMap` of the kitchen (where the handles, slide axis, hinge and regions are with every joint at
zero, read from the compiled MuJoCo model, as a robot would keep a map of its workcell); their *state*
(how far the drawer or door is open) is measured in the cloud: the handle bar is the extreme point of the
cloud along the opening motion inside a tube around the bar's possible positions.

A detector never raises on bad scenes: it returns an :class:`AffordanceResult` whose ``reason`` says why
there is no affordance (object not seen, too wide for the gripper, handle not visible, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.commands.subtasks import Action, Subtask
from tiers.commands.vocabulary import (
    PUSH_VECTORS,
    RELATION_VECTORS,
    FixtureName,
    Relation,
)
from tiers.core.config import Config
from tiers.policies.mid.perception import BACKGROUND, SceneCloud

Vector = NDArray[np.float64]
DOWN = np.array([0.0, 0.0, -1.0])
PUSH_TURNS = (0.26, -0.26, 0.52, -0.52, 0.79, -0.79, 1.05, -1.05)  # rad, other closing-axis turns a push tries


class AffordanceKind(StrEnum):
    GRASP = "grasp"  # close the fingers around an object
    HANDLE = "handle"  # close on a handle bar, then move it along ``motion`` (or swing about ``pivot``)
    PUSH = "push"  # closed fingers against an object, then move along ``motion``
    PLACE = "place"  # release the held object with its bottom centre at ``point``


@dataclass(frozen=True)
class Affordance:
    """One keypoint affordance (base frame, m, rad).

    Attributes:
        kind: what to do there.
        target: the object or fixture it belongs to.
        point: (3,) the keypoint: the TCP position at contact (GRASP, HANDLE, PUSH) or the held object's
            bottom centre at release (PLACE).
        approach: (3,) unit direction the tool moves along on its final approach (from above: -z).
        yaw: rad, closing-axis direction in the horizontal plane (from +x toward +y); for PLACE, the turn of
            the wrist about the vertical while carrying (0: keep the current orientation).
        opening: m, finger opening on the way in.
        motion: (3,) m, displacement of the TCP after contact (pull, push); zero when none.
        pivot: (3,) a point on the vertical hinge axis for a swing, or None for straight motions.
        sweep: rad, signed rotation about ``pivot`` after contact (positive: counter-clockwise from above).
        low, high: (3,) bounds of the target's points, excluded from collision checks near contact.
        alternatives: other closing-axis yaws (rad) that serve as well (round objects), most comfortable
            first; the path planner tries them in order when ``yaw`` collides.
        alternative_points: (3,) keypoints that go with ``alternatives`` one for one (rim grasps move around the
            rim with the yaw); empty: every alternative uses ``point``.
        insertion: (3,) m, PLACE only: a horizontal entry under a fixture's top (the cabinet): the held object
            slides in by this displacement, then goes down to ``point``; the tool keeps ``approach`` (leaning
            into the opening) and closing-axis ``yaw`` (absolute here, not a turn). Zero: set down from above.
    """

    kind: AffordanceKind
    target: str
    point: Vector
    approach: Vector = field(default_factory=lambda: DOWN.copy())
    yaw: float = 0.0
    opening: float = 0.08
    motion: Vector = field(default_factory=lambda: np.zeros(3))
    pivot: Vector | None = None
    sweep: float = 0.0
    low: Vector = field(default_factory=lambda: np.zeros(3))
    high: Vector = field(default_factory=lambda: np.zeros(3))
    alternatives: tuple[float, ...] = ()
    alternative_points: tuple[Vector, ...] = ()
    insertion: Vector = field(default_factory=lambda: np.zeros(3))

    @property
    def inserts(self) -> bool:
        """Whether this is a PLACE by horizontal insertion (:attr:`insertion` non-zero)."""
        return bool(np.any(self.insertion != 0.0))

    def __post_init__(self) -> None:
        if self.alternative_points and len(self.alternative_points) != len(self.alternatives):
            raise ValueError(
                f"alternative_points ({len(self.alternative_points)}) must pair with alternatives "
                f"({len(self.alternatives)}) one for one"
            )

    def options(self) -> list[tuple[float, Vector]]:
        """(yaw rad, keypoint (3,)) of the preferred option, then of each alternative, in order."""
        points = self.alternative_points or (self.point,) * len(self.alternatives)
        return [(self.yaw, self.point), *zip(self.alternatives, points, strict=True)]


@dataclass(frozen=True)
class AffordanceResult:
    """An affordance, or the reason there is none (``affordance`` None, ``reason`` non-empty)."""

    affordance: Affordance | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.affordance is not None


@dataclass(frozen=True)
class Articulated:
    """A prismatic or hinged fixture of the map, at joint value zero.

    Attributes:
        bar_low, bar_high: (3,) lower and upper end of the handle bar's axis, m.
        bar_radius: m.
        lower, upper: joint range (m for a slide, rad for a hinge).
        axis: (3,) unit slide direction of opening (slides) or the hinge axis (hinges).
        pivot: (3,) a point on the hinge axis (hinges), None for slides.
        interior_center, interior_half: (3,) the storage region's box at joint zero (moves with a slide).
    """

    bar_low: Vector
    bar_high: Vector
    bar_radius: float
    lower: float
    upper: float
    axis: Vector
    pivot: Vector | None
    interior_center: Vector
    interior_half: Vector


@dataclass(frozen=True)
class FixtureMap:
    """The kitchen's fixtures as a robot's static map: handles, joints and regions at joint value zero."""

    drawer: Articulated
    cabinet: Articulated
    regions: dict[str, tuple[Vector, Vector]]  # static region name -> (centre (3,), half size (3,)), m

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> FixtureMap:
        """Read the map from the compiled kitchen (``assets/kitchen/scene.xml``), every joint at zero."""
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)

        def bar(name: str) -> tuple[Vector, Vector, float]:
            geom = model.geom(name).id
            axis = data.geom_xmat[geom].reshape(3, 3)[:, 2] * model.geom_size[geom][1]
            ends = sorted([data.geom_xpos[geom] - axis, data.geom_xpos[geom] + axis], key=lambda p: p[2])
            return ends[0].copy(), ends[1].copy(), float(model.geom_size[geom][0])

        def region(site: str) -> tuple[Vector, Vector]:
            index = model.site(site).id
            half = np.abs(data.site_xmat[index].reshape(3, 3)) @ model.site_size[index]
            return data.site_xpos[index].copy(), half

        def articulated(bar_geom: str, joint_name: str, interior: str) -> Articulated:
            joint = model.joint(joint_name)
            body_rotation = data.xmat[joint.bodyid[0]].reshape(3, 3)
            low, high, radius = bar(bar_geom)
            hinge = model.jnt_type[joint.id] == mujoco.mjtJoint.mjJNT_HINGE
            centre, half = region(interior)
            return Articulated(
                bar_low=low,
                bar_high=high,
                bar_radius=radius,
                lower=float(joint.range[0]),
                upper=float(joint.range[1]),
                axis=body_rotation @ joint.axis,
                pivot=data.xanchor[joint.id].copy() if hinge else None,
                interior_center=centre,
                interior_half=half,
            )

        return cls(
            drawer=articulated("drawer_handle_bar", "drawer_slide", "drawer_interior"),
            cabinet=articulated("cabinet_handle_bar", "cabinet_hinge", "cabinet_interior"),
            regions={"sink": region("sink_basin"), "shelf": region("shelf_top")},
        )


@dataclass
class AffordanceConfig(Config):
    """Geometry of the keypoints."""

    max_opening: float = 0.08  # m, widest finger opening (the embodiment's gripper)
    finger_margin: float = 0.025  # m, opening beyond the object's width on the way down
    grasp_height: float = 0.035  # m, preferred TCP height above an object's bottom
    hand_below_tcp: float = 0.037  # m, TCP this far below an object's top at most (hand body stays off it)
    min_tcp_height: float = 0.016  # m, lowest TCP height above the support (fingertips off the counter)
    handle_depth: float = 0.010  # m, TCP below the top end of a handle bar's axis
    handle_opening: float = 0.045  # m, finger opening around a handle bar
    handle_tube: float = 0.03  # m, half width of the search tube around a handle bar's possible positions
    drawer_open_target: float = 0.97  # opening fraction a pull aims at
    door_open_target: float = 0.9  # opening fraction a door swing aims at
    closed_target: float = 0.01  # opening fraction a closing push aims at
    door_bar_standoff: float = 0.045  # m, the door handle bar's distance in front of the door panel
    # rad, approach axis leaned from vertical toward the door panel on its handle: the hand and the wrist's
    # flange lean back from the door's top edge (held vertical, the flange rode on the panel and the bar
    # slipped out of the fingers half way through the swing)
    door_lean: float = 0.26
    # rad, how far past the closed target a door's closing swing is commanded (the hand lags the arc and the bar
    # creeps in the pads: without it the door stayed 6 % open, closed is <= 5 %)
    door_close_overdrive: float = 0.04
    pull_overshoot: float = 0.03  # m, how far past the open target a pull is commanded (hand lag, slip)
    # m, how far past the closed target a drawer push is commanded: the drawer stops at its closed end, while
    # the handle slips ~5 mm in the fingers and an arm over the open drawer hides the bar's front, so the
    # measured opening reads up to ~1 cm short; without it the drawer stayed 7-8 % open (closed: <= 5 %)
    push_overshoot: float = 0.02
    release_gap: float = 0.015  # m, held object's bottom above its support at release
    push_distance: float = 0.12  # m, how far a push moves the tool after contact
    push_standoff: float = 0.025  # m, gap between the fingers and the object before a push
    push_height: float = 0.028  # m, TCP above the object's bottom while pushing (at most half its height)
    wrist_camera_side: float = -1.0  # the wrist camera's housing sticks out on this side of the tool's x axis
    spot_gap: float = 0.045  # m, footprint gap between a spatially placed object and its anchor
    spot_turns: list[float] = field(default_factory=lambda: [0.0, 0.26, -0.26, 0.52, -0.52])  # rad, off the relation
    spot_extra: list[float] = field(default_factory=lambda: [0.0, 0.03, 0.06])  # m, further out than ``spot_gap``
    spot_room: float = 0.02  # m, free room around a held object's footprint at a spot for it to count as free
    spot_level: float = 0.02  # m, a spot's surface within this of the anchor's bottom (the same surface)
    spot_options: int = 3  # spots offered to the path planner (each with every wrist turn)
    min_points: int = 8  # fewest points of a segment to trust it
    round_ratio: float = 0.8  # footprints whose narrow/wide ratio exceeds this are round: any yaw grips them
    round_objects: list[str] = field(default_factory=lambda: ["apple", "can"])  # round whatever their visible part
    support_snap: float = 0.04  # m, a segment whose lowest point is this close to the support stands on it
    # rim grasps of dishes wider than the gripper (bowl, plate), as the scripted expert's: the fingers close
    # radially on the wall or rim, one finger inside the dish, on the side nearest the robot first
    rim_band: float = 0.01  # m, rim points: within this of the segment's top ...
    rim_outer: float = 0.025  # m, ... and within this of its outer radius
    rim_span: float = 0.015  # m, half the arc length of rim a grasp needs under the fingers (pads ~2 cm wide)
    rim_depth: float = 0.02  # m, TCP below the rim's top at most (a quarter of a low dish's height at most)
    rim_opening: float = 0.045  # m, finger opening around the rim
    rim_spacing: float = 0.2  # rad, least angle between two rim grasps offered
    # placing into the cabinet, as the scripted expert does: the tool leans into the open front, the held
    # object slides in under the cabinet's top and is set down on its floor
    cabinet_open_fraction: float = 0.75  # the door must be at least this open (of its range)
    cabinet_depth: float = 0.09  # m, the released object's centre beyond the cabinet's open front
    cabinet_staging: float = 0.13  # m, where the tool lines up in front of the open front before sliding in
    cabinet_tilt: float = 0.6  # rad, approach axis leaned from vertical into the cabinet
    # rad, steeper lean for tall held objects (held high: at 0.6 the wrist rode on the cabinet top)
    cabinet_tilt_tall: float = 0.75
    tall_object: float = 0.11  # m, held objects at least this tall get ``cabinet_tilt_tall``
    # a flat, compact held object (a sponge: lower than ``flat_object`` m, its footprint's narrow side at least
    # ``compact_ratio`` of its wide side) goes into the cabinet with the fingers along the entry, so that the hand
    # leans about the axis across the pads, which hold it as it tilts: leaned about the closing axis (fingers
    # side by side) it pivoted in the pads and slid out of the fingertips on the way. A cup or a banana goes in
    # leaned about the closing axis; with the fingers along the entry they were released 4-5 cm short.
    flat_object: float = 0.045
    compact_ratio: float = 0.5


class AffordanceDetector:
    """Subtask + :class:`SceneCloud` -> :class:`AffordanceResult` (see the module table)."""

    def __init__(self, fixtures: FixtureMap, config: AffordanceConfig | None = None):
        self.fixtures = fixtures
        self.config = config or AffordanceConfig()

    def detect(self, subtask: Subtask, cloud: SceneCloud, *, held_radius: float = 0.04) -> AffordanceResult:
        """The affordance ``subtask`` needs in ``cloud``.

        Args:
            subtask: a canonical subtask (:class:`~tiers.commands.subtasks.Subtask`).
            cloud: the segmented scene.
            held_radius: m, footprint radius of the held object (spatial placements keep it off the anchor).
        """
        if len(cloud) == 0:
            return AffordanceResult(None, "the point cloud is empty (no valid depth in any camera)")
        if subtask.action is Action.PICK:
            return self.grasp(subtask.object, cloud)
        if subtask.action is Action.PUSH:
            assert subtask.direction is not None
            return self.push(subtask.object, PUSH_VECTORS[subtask.direction], cloud)
        if subtask.action in (Action.OPEN, Action.CLOSE):
            return self.handle(subtask.object, subtask.action is Action.OPEN, cloud)
        assert subtask.relation is not None and subtask.target is not None
        return self.place(subtask.object, subtask.relation, subtask.target, cloud, held_radius=held_radius)

    # -- objects ----------------------------------------------------------------------------------------

    def footprint(self, name: str, cloud: SceneCloud) -> tuple[Vector, Vector, float, float, float] | None:
        """(centre (2,), size (2,) along (yaw, yaw+pi/2), yaw rad, bottom m, top m) of a segment, or None.

        The footprint is OpenCV's minimum-area rectangle of the segment's xy points.
        """
        points = cloud.segment(name)
        if len(points) < self.config.min_points:
            return None
        (cx, cy), (w, h), angle = cv2.minAreaRect(points[:, :2].astype(np.float32))
        yaw = float(np.deg2rad(angle))
        bottom = float(points[:, 2].min())
        # near the support: it rests on it (a round object's lowest points are hidden under its own bulge)
        if abs(bottom - cloud.support_height) < self.config.support_snap:
            bottom = cloud.support_height
        return np.array([cx, cy]), np.array([w, h]), yaw, bottom, float(points[:, 2].max())

    def grasp(self, name: str, cloud: SceneCloud) -> AffordanceResult:
        """Top-down grasp: close across the footprint's narrow side, at a height the hand body clears."""
        config = self.config
        found = self.footprint(name, cloud)
        if found is None:
            return AffordanceResult(None, _not_seen(name, cloud))
        centre, size, yaw, bottom, top = found
        narrow = int(np.argmin(size))
        width = float(size[narrow])
        if width > config.max_opening - 0.005:
            too_wide = (
                f"the {name} is {width * 100:.1f} cm across its narrow side, wider than the gripper's "
                f"{config.max_opening * 100:.0f} cm"
            )
            return self.rim_grasp(name, cloud, too_wide)
        closing = yaw + narrow * np.pi / 2  # the fingers close along the narrow side
        here = np.append(centre, 0.0)
        if width > config.round_ratio * float(size.max()) or name in config.round_objects:
            turns = [k * np.pi / 12 for k in range(12)]  # round: any closing direction grips it
        else:
            turns = [0.0, np.pi / 12, -np.pi / 12, np.pi / 6, -np.pi / 6]  # a little off the narrow axis grips too
        candidates = {round(comfortable_yaw(closing + turn, here), 6): turn for turn in turns}
        reference = comfortable_yaw(float(np.arctan2(centre[1], centre[0])) - np.pi / 2, here)
        # the exact narrow axis first for elongated objects, the most comfortable wrist first for round ones
        yaws = sorted(candidates, key=lambda y: abs(candidates[y]) if len(turns) < 12 else abs(y - reference))
        height = max(bottom + min(config.grasp_height, 0.5 * (top - bottom)), top - config.hand_below_tcp)
        height = max(height, bottom + config.min_tcp_height)
        point = np.array([centre[0], centre[1], height])
        points = cloud.segment(name)
        return AffordanceResult(
            Affordance(
                kind=AffordanceKind.GRASP,
                target=name,
                point=point,
                yaw=yaws[0],
                opening=min(config.max_opening, width + config.finger_margin),
                low=points.min(axis=0),
                high=points.max(axis=0),
                alternatives=tuple(yaws[1:]),
            )
        )

    def rim_grasp(self, name: str, cloud: SceneCloud, too_wide: str = "") -> AffordanceResult:
        """Grasp a dish wider than the gripper (bowl, plate) by its wall or rim, closing radially.

        The rim is the segment's outer ring of highest points (within ``rim_band`` of its top and ``rim_outer``
        of its outer radius about the footprint's centre). A grasp goes where rim points cover ``rim_span`` of
        arc on either side of it (a plate's rim is in segments), at the rim's median radius; the TCP is
        ``rim_depth`` below the top (a quarter of the dish's height at most) and the fingers close along the
        radius (one inside the dish). Grasps nearest the robot's base come first, then around the rim.
        """
        config = self.config
        found = self.footprint(name, cloud)
        if found is None:
            return AffordanceResult(None, _not_seen(name, cloud))
        centre, _, _, bottom, top = found
        points = cloud.segment(name)
        offset = points[:, :2] - centre
        radius = np.linalg.norm(offset, axis=1)
        outer = float(np.percentile(radius, 98))
        rim = (points[:, 2] > top - config.rim_band) & (radius > outer - config.rim_outer)
        no_rim = f"{too_wide}, and no rim around its edge to grasp" if too_wide else f"the {name} shows no rim"
        if int(rim.sum()) < 3:
            return AffordanceResult(None, no_rim)
        rim_radius = float(np.median(radius[rim]))
        if rim_radius < 0.5 * config.max_opening:
            return AffordanceResult(None, f"{no_rim} (rim radius {rim_radius * 100:.1f} cm: not a dish)")
        angles = np.arctan2(offset[rim, 1], offset[rim, 0])
        half = config.rim_span / rim_radius  # rad of rim either side of a grasp
        options: list[float] = []
        for angle in angles:  # centre each grasp on the rim points around it, keep those covered on both sides
            near = _wrapped(angles - angle)
            near = near[np.abs(near) < 1.5 * half]
            middle = float(angle + np.arctan2(np.mean(np.sin(near)), np.mean(np.cos(near))))
            around = _wrapped(angles - middle)
            covered = np.any((around > 0.3 * half) & (around < 1.5 * half)) and np.any(
                (around < -0.3 * half) & (around > -1.5 * half)
            )
            if covered and all(abs(_wrapped(np.array(middle - other))) > config.rim_spacing for other in options):
                options.append(middle)
        if not options:
            return AffordanceResult(None, f"{no_rim} wide enough for the fingers")
        height = top - min(config.rim_depth, 0.25 * (top - bottom))
        height = max(height, bottom + config.min_tcp_height)
        grasps = [np.array([*(centre + rim_radius * np.array([np.cos(a), np.sin(a)])), height]) for a in options]
        # nearest the robot's base first (the expert's choice: the arm stays comfortable)
        order = sorted(range(len(options)), key=lambda k: float(np.linalg.norm(grasps[k][:2])))
        yaws = [comfortable_yaw(options[k], grasps[k]) for k in order]
        return AffordanceResult(
            Affordance(
                kind=AffordanceKind.GRASP,
                target=name,
                point=grasps[order[0]],
                yaw=yaws[0],
                opening=min(config.max_opening, config.rim_opening),
                low=points.min(axis=0),
                high=points.max(axis=0),
                alternatives=tuple(yaws[1:]),
                alternative_points=tuple(grasps[k] for k in order[1:]),
            )
        )

    def push(self, name: str, direction: Vector, cloud: SceneCloud) -> AffordanceResult:
        """Closed fingers behind ``name`` (opposite ``direction`` (2,)), then a push along ``direction``."""
        config = self.config
        found = self.footprint(name, cloud)
        if found is None:
            return AffordanceResult(None, _not_seen(name, cloud))
        centre, _, _, bottom, top = found
        unit = np.append(direction / np.linalg.norm(direction), 0.0)
        points = cloud.segment(name)
        # extent of the object along the push direction, from its centre
        reach = float(np.max((points[:, :2] - centre) @ -unit[:2]))
        contact = centre - unit[:2] * (reach + config.push_standoff + 0.011)
        height = bottom + min(config.push_height, 0.5 * (top - bottom))
        point = np.array([contact[0], contact[1], max(height, bottom + config.min_tcp_height)])
        # fingers side by side across the push, the wrist camera's housing (on the tool's -x side, 3.5-7 cm
        # behind the TCP) on the far side from the object: pushing with it in front, the housing ran onto the
        # top of a tall object (can, box) and the hand rode up off the counter (as the scripted expert's)
        closing = float(np.arctan2(config.wrist_camera_side * unit[0], -config.wrist_camera_side * unit[1]))
        reference = comfortable_yaw(closing, point)  # the wrist mid-range yaw (mod pi)
        # a turned hand body reaches over the object: only objects lower than the hand's underside allow turns
        turns = PUSH_TURNS if top - point[2] < config.hand_below_tcp + 0.008 else ()
        away = [_nearest_yaw(closing + turn, reference) for turn in (0.0, *turns)]
        # then the housing turned toward the object (over a low or hollow one; the path planner checks it)
        yaws = away + [yaw + np.pi for yaw in away]
        return AffordanceResult(
            Affordance(
                kind=AffordanceKind.PUSH,
                target=name,
                point=point,
                yaw=yaws[0],
                opening=0.0,
                motion=unit * (config.push_distance + config.push_standoff),
                low=points.min(axis=0),
                high=points.max(axis=0),
                # closed fingers askew still push (the scripted expert turns them up to 60 degrees to keep the hand
                # off the fixtures); last, for a low object, the wrist turned half a turn
                alternatives=tuple(yaws[1:]),
            )
        )

    # -- fixtures ---------------------------------------------------------------------------------------

    def articulation(self, name: str, cloud: SceneCloud) -> float | None:
        """Measured joint value of the drawer (m, from its handle) or cabinet door (rad, from its panel), None
        when that part is not in view."""
        fixture = self.fixtures.drawer if name == FixtureName.DRAWER else self.fixtures.cabinet
        points = cloud.points[self.fixture_mask(name, cloud)]
        if fixture.pivot is None:  # slide: the bar's front is the extreme point along the opening axis
            if len(points) < 3:
                return None
            value = float(np.max((points - fixture.bar_high) @ fixture.axis)) - fixture.bar_radius
            return float(np.clip(value, fixture.lower, fixture.upper))
        # hinge: the door panel is a vertical plane through the hinge axis, so its points share one polar angle
        # about the axis (closed angle + opening); the densest angle in the door's range is the panel
        if len(points) < 10:
            return None
        window = self._door_angles(points)
        counts, edges = np.histogram(window, bins=np.arange(fixture.lower - 0.1, fixture.upper + 0.12, 0.04))
        peak = 0.5 * (edges[np.argmax(counts)] + edges[np.argmax(counts) + 1])
        value = float(np.median(window[np.abs(window - peak) < 0.06]))
        return float(np.clip(value, fixture.lower, fixture.upper))

    def fixture_mask(self, name: str, cloud: SceneCloud) -> NDArray[np.bool_]:
        """(N,) the background points of ``cloud`` the drawer's or door's opening is measured from: the tube
        around the handle bar's possible positions along the slide, or the door panel's ring about the hinge
        within the door's range (what :meth:`articulation` reads; the scene memory keeps these)."""
        config = self.config
        fixture = self.fixtures.drawer if name == FixtureName.DRAWER else self.fixtures.cabinet
        background = cloud.labels == BACKGROUND
        points = cloud.points
        z = points[:, 2]
        if fixture.pivot is None:
            in_height = (z > fixture.bar_low[2] - 0.005) & (z < fixture.bar_high[2] + fixture.bar_radius + 0.005)
            offset = points - fixture.bar_high
            along = offset @ fixture.axis
            lateral = offset - along[:, None] * fixture.axis
            lateral[:, 2] = 0.0
            tube = (np.linalg.norm(lateral, axis=1) < config.handle_tube) & (along > fixture.lower - 0.02)
            tube &= along < fixture.upper + fixture.bar_radius + 0.02
            mask: NDArray[np.bool_] = background & in_height & tube
            return mask
        pivot = fixture.pivot
        radius = float(np.linalg.norm(fixture.bar_high[:2] - pivot[:2]))
        in_height = (z > 0.03) & (z < fixture.bar_high[2] + 0.07)
        distance = np.linalg.norm(points[:, :2] - pivot[:2], axis=1)
        ring = background & in_height & (distance > 0.3 * radius) & (distance < 0.95 * radius)
        angles = self._door_angles(points[ring])
        mask = np.zeros(len(points), dtype=bool)
        mask[np.flatnonzero(ring)] = (angles > fixture.lower - 0.1) & (angles < fixture.upper + 0.1)
        return mask

    def _door_angles(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        """(M,) rad, polar angle of ``points`` (M, 3) about the door's hinge, from the closed panel's direction."""
        fixture = self.fixtures.cabinet
        assert fixture.pivot is not None
        bar = fixture.bar_high[:2] - fixture.pivot[:2]
        radius = float(np.linalg.norm(bar))
        # the panel's closed direction: the bar's direction minus the bar's stand-off from the panel
        closed = float(np.arctan2(bar[1], bar[0])) - float(
            np.arcsin(np.clip(self.config.door_bar_standoff / radius, 0, 1))
        )
        offset = points[:, :2] - fixture.pivot[:2]
        return (np.arctan2(offset[:, 1], offset[:, 0]) - closed + np.pi) % (2 * np.pi) - np.pi

    def handle(self, name: str, opening: bool, cloud: SceneCloud) -> AffordanceResult:
        """Grasp point on the handle bar at its measured position, and the motion that opens or closes it."""
        config = self.config
        if name not in (FixtureName.DRAWER, FixtureName.CABINET):
            return AffordanceResult(None, f"the {name} has no handle; articulated fixtures: drawer, cabinet")
        fixture = self.fixtures.drawer if name == FixtureName.DRAWER else self.fixtures.cabinet
        value = self.articulation(name, cloud)
        if value is None:
            return AffordanceResult(None, f"the {name}'s handle is not in view of any depth camera")
        fraction = (config.drawer_open_target if name == FixtureName.DRAWER else config.door_open_target) if opening \
            else config.closed_target  # fmt: skip
        target = fixture.lower + fraction * (fixture.upper - fixture.lower)
        if (opening and value >= target - 0.02 * (fixture.upper - fixture.lower)) or (
            not opening and value <= fixture.lower + 0.03 * (fixture.upper - fixture.lower)
        ):
            state = "open" if opening else "closed"
            return AffordanceResult(None, f"the {name} is already {state} (measured {value:.3f})")
        grasp_closed = fixture.bar_high - np.array([0.0, 0.0, config.handle_depth])
        if fixture.pivot is None:
            point = grasp_closed + value * fixture.axis
            # aim a little past the target: the hand lags the path and the handle slips a few mm in the fingers
            overshoot = config.pull_overshoot if opening else -config.push_overshoot
            motion = (target - value + overshoot) * fixture.axis
            yaw = comfortable_yaw(float(np.arctan2(fixture.axis[1], fixture.axis[0])) + np.pi / 2, point)
            # the fixture's front moves with the hand: its whole sweep is not an obstacle near contact
            end = point + motion
            # (the drawer's front is ~28 cm wide: the hand body passes just above it while pushing)
            low = np.minimum(point, end) - np.array([0.15, 0.15, 0.06])
            high = np.maximum(point, end) + np.array([0.15, 0.15, 0.1])
            return AffordanceResult(
                Affordance(
                    AffordanceKind.HANDLE,
                    name,
                    point,
                    yaw=yaw,
                    opening=config.handle_opening,
                    motion=motion,
                    low=low,
                    high=high,
                )
            )
        point = rotate_about(grasp_closed, fixture.pivot, value)
        radial = point[:2] - fixture.pivot[:2]
        # the panel lies along the radius from the hinge: closing along it keeps the hand body parallel to the panel
        yaw = comfortable_yaw(float(np.arctan2(radial[1], radial[0])), point)
        # lean the approach toward the panel (its inward normal, at the door's angle from +x when closed)
        inward = np.array([np.cos(value), np.sin(value), 0.0])
        approach = np.sin(config.door_lean) * inward + np.cos(config.door_lean) * DOWN
        if not opening:
            target = max(target - config.door_close_overdrive, fixture.lower - config.door_close_overdrive)
        sweep = np.stack([rotate_about(grasp_closed, fixture.pivot, a) for a in np.linspace(value, target, 12)])
        low, high = sweep.min(axis=0) - 0.06, sweep.max(axis=0) + np.array([0.06, 0.06, 0.1])
        return AffordanceResult(
            Affordance(
                AffordanceKind.HANDLE,
                name,
                point,
                approach=approach,
                yaw=yaw,
                opening=config.handle_opening,
                pivot=fixture.pivot.copy(),
                sweep=target - value,
                low=low,
                high=high,
            )
        )

    # -- placement --------------------------------------------------------------------------------------

    def surface_height(self, xy: Vector, radius: float, cloud: SceneCloud, *, exclude: str = "") -> float:
        """m, the highest cloud point within ``radius`` of ``xy`` (2,) (the support a placed object lands on)."""
        points = cloud.without(exclude) if exclude else cloud.points
        near = np.linalg.norm(points[:, :2] - xy, axis=1) < radius
        return float(points[near, 2].max()) if np.any(near) else cloud.support_height

    def place(
        self, name: str, relation: Relation, target: str, cloud: SceneCloud, *, held_radius: float = 0.04
    ) -> AffordanceResult:
        """Where the held object's bottom centre goes at release for ``put the <name> <relation> the <target>``."""
        config = self.config
        if target == FixtureName.DRAWER:
            value = self.articulation(target, cloud)
            if value is None:
                return AffordanceResult(None, "the drawer's handle is not in view: cannot tell how far it is open")
            drawer = self.fixtures.drawer
            if value < 0.8 * (drawer.upper - drawer.lower):
                return AffordanceResult(None, f"the drawer is only {value * 100:.0f} cm open: open it first")
            centre = drawer.interior_center + value * drawer.axis
            front = centre[0] - drawer.interior_half[0]  # the exposed part of the drawer is its front
            xy = np.array([front + max(held_radius, 0.06) + 0.01, centre[1]])
            floor = centre[2] - drawer.interior_half[2]
            point = np.array([xy[0], xy[1], floor + config.release_gap])
            return AffordanceResult(self._place(name, target, point, drawer.interior_half))
        if target == FixtureName.CABINET:
            return self._cabinet_place(name, cloud)
        if target in self.fixtures.regions:
            centre, half = self.fixtures.regions[target]
            xy = centre[:2].copy()
            height = self.surface_height(xy, held_radius, cloud, exclude=name)
            point = np.array([xy[0], xy[1], height + config.release_gap])
            return AffordanceResult(self._place(name, target, point, half))
        if target == FixtureName.COUNTER:
            return AffordanceResult(None, "the counter is not a placement target (every object starts on it)")
        found = self.footprint(target, cloud)
        if found is None:
            return AffordanceResult(None, _not_seen(target, cloud))
        centre, size, _, bottom, top = found
        if relation in (Relation.IN, Relation.ON):  # drop onto the container's or stack base's top
            point = np.array([centre[0], centre[1], top + config.release_gap])
            return AffordanceResult(self._place(name, target, point, np.append(size / 2, 0.05)))
        directions = [RELATION_VECTORS[relation]] if relation in RELATION_VECTORS else list(RELATION_VECTORS.values())
        anchor_radius = 0.5 * float(np.linalg.norm(size))
        others = cloud.points[cloud.labels != BACKGROUND]
        held_points = cloud.segment(name)
        if len(held_points):  # the held object is not an obstacle to its own spot
            held_centre = held_points[:, :2].mean(axis=0)
            others = others[np.linalg.norm(others[:, :2] - held_centre, axis=1) > held_radius + 0.03]
        # candidate spots: each direction ("next to": all four), turned up to 30 deg inside the relation's 45 deg
        # cone and up to 6 cm further out (the gap stays under the predicate's 15 cm); free ones first, the
        # nominal spot (straight out, nearest) first among them, else the one with the most room
        candidates: list[tuple[float, float, Vector]] = []
        for direction in directions:
            for turn in config.spot_turns:
                c, s = np.cos(turn), np.sin(turn)
                turned = np.array([c * direction[0] - s * direction[1], s * direction[0] + c * direction[1]])
                for extra in config.spot_extra:
                    spot = centre + turned * (anchor_radius + held_radius + config.spot_gap + extra)
                    room = float(np.min(np.linalg.norm(others[:, :2] - spot, axis=1), initial=1.0)) - held_radius
                    # on the anchor's level (not on a fixture, not on top of something)
                    level = self.surface_height(spot, held_radius, cloud, exclude=name) - bottom
                    if abs(level) > config.spot_level:
                        room = min(room, -abs(level))
                    candidates.append((room, abs(turn) + 2.0 * extra, spot))
        free = sorted((c for c in candidates if c[0] >= config.spot_room), key=lambda c: c[1])
        if len(directions) > 1:  # "next to": the side with the most room first
            free = sorted(free, key=lambda c: -c[0])
        ranked = free or sorted(candidates, key=lambda c: -c[0])
        spots = [c[2] for c in ranked[: config.spot_options]]
        points = []
        for spot in spots:
            height = self.surface_height(spot, held_radius, cloud, exclude=name)
            points.append(np.array([spot[0], spot[1], height + config.release_gap]))
        half = np.array([held_radius, held_radius, 0.05])
        return AffordanceResult(self._place(name, target, points[0], half, others=points[1:]))

    def _cabinet_place(self, name: str, cloud: SceneCloud) -> AffordanceResult:
        """Insertion into the open cabinet: the tool leans ``cabinet_tilt`` into its open front (which faces
        the robot, -x), the held object slides in ``cabinet_staging + cabinet_depth`` under the top and is set
        down on the floor ``cabinet_depth`` beyond the front, at the interior's middle across."""
        config = self.config
        cabinet = self.fixtures.cabinet
        value = self.articulation(FixtureName.CABINET, cloud)
        if value is None:
            return AffordanceResult(None, "the cabinet door is not in view: cannot tell whether it is open")
        if value < cabinet.lower + config.cabinet_open_fraction * (cabinet.upper - cabinet.lower):
            fraction = (value - cabinet.lower) / (cabinet.upper - cabinet.lower)
            return AffordanceResult(None, f"the cabinet door is only {fraction * 100:.0f}% open: open it first")
        low = cabinet.interior_center - cabinet.interior_half
        high = cabinet.interior_center + cabinet.interior_half
        point = np.array([low[0] + config.cabinet_depth, cabinet.interior_center[1], low[2] + config.release_gap])
        held = cloud.segment(name)
        tall = len(held) > 0 and float(np.ptp(held[:, 2])) >= config.tall_object
        tilt = config.cabinet_tilt_tall if tall else config.cabinet_tilt
        entry = np.array([1.0, 0.0, 0.0])  # into the cabinet
        across = comfortable_yaw(np.pi / 2, point)  # across the entry, fingers side by side
        along = comfortable_yaw(0.0, point)  # along the entry, one finger in front of the other
        closing, other = (along, across) if self._flat_and_compact(name, cloud) else (across, along)
        return AffordanceResult(
            Affordance(
                AffordanceKind.PLACE,
                FixtureName.CABINET,
                point,
                approach=np.sin(tilt) * entry + np.cos(tilt) * DOWN,
                yaw=closing,
                opening=0.0,
                # not obstacles near contact: the floor and the space the object goes into (the walls and
                # the top, 3 and 5 cm beyond, stay obstacles)
                low=low - np.array([0.05, -0.03, 0.03]),
                high=high - np.array([0.0, 0.03, 0.05]),
                # the wrist half a turn (the same lean), then the other closing axis
                alternatives=(closing + np.pi, other, other + np.pi) if closing == along else (closing + np.pi,),
                insertion=entry * (config.cabinet_depth + config.cabinet_staging),
            )
        )

    def _flat_and_compact(self, name: str, cloud: SceneCloud) -> bool:
        """Whether the held object ``name`` is flat and compact in ``cloud`` (see ``AffordanceConfig.flat_object``):
        its points span less than ``flat_object`` m in height and its footprint is not elongated."""
        found = self.footprint(name, cloud)
        if found is None:
            return False
        _, size, _, bottom, top = found
        flat = top - bottom < self.config.flat_object
        return bool(flat and float(np.min(size)) >= self.config.compact_ratio * float(np.max(size)))

    def _place(
        self, name: str, target: str, point: Vector, half: Vector, *, others: list[Vector] | None = None
    ) -> Affordance:
        """A PLACE at ``point`` (3,); ``others``: further spots tried after every wrist turn at ``point``."""
        # yaw: turn of the wrist while carrying; the alternatives let the planner turn the hand (and what it
        # holds) to clear fixtures near the spot, e.g. the sink's tap
        turns = tuple(k * np.pi / 6 for k in (1, -1, 2, -2, 3, -3))
        alternatives: tuple[float, ...] = turns
        alternative_points: tuple[Vector, ...] = ()
        if others:
            options = [(turn, spot) for spot in (point, *others) for turn in (0.0, *turns)][1:]
            alternatives = tuple(turn for turn, _ in options)
            alternative_points = tuple(spot for _, spot in options)
        box_low = np.min([point, *(others or [])], axis=0) - half
        box_high = np.max([point, *(others or [])], axis=0) + half + np.array([0.0, 0.0, 0.1])
        return Affordance(
            AffordanceKind.PLACE, target, point, yaw=0.0, opening=0.0, low=box_low, high=box_high,
            alternatives=alternatives, alternative_points=alternative_points,
        )  # fmt: skip


def comfortable_yaw(yaw: float, position: Vector) -> float:
    """The closing-axis yaw equivalent to ``yaw`` (a two-finger grasp is symmetric under pi) nearest the one
    the arm reaches at ``position`` by turning its base joint alone from home (keeps the wrist mid-range)."""
    reference = float(np.arctan2(position[1], position[0]) - np.pi / 2)
    return float(reference + (yaw - reference + np.pi / 2) % np.pi - np.pi / 2)


def _nearest_yaw(yaw: float, reference: float) -> float:
    """The angle ``yaw + 2k·pi`` nearest ``reference`` (rad): the same tool orientation, camera side included."""
    return float(reference + (yaw - reference + np.pi) % (2 * np.pi) - np.pi)


def rotate_about(point: Vector, pivot: Vector, angle: float) -> Vector:
    """(3,) ``point`` rotated by ``angle`` rad about the vertical axis through ``pivot``."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = point[0] - pivot[0], point[1] - pivot[1]
    return np.array([pivot[0] + c * dx - s * dy, pivot[1] + s * dx + c * dy, point[2]])


def _wrapped(angles: Vector) -> Vector:
    """``angles`` (rad) wrapped into [-pi, pi)."""
    wrapped: Vector = (np.asarray(angles) + np.pi) % (2 * np.pi) - np.pi
    return wrapped


def _not_seen(name: str, cloud: SceneCloud) -> str:
    seen = ", ".join(cloud.segment_names) or "none"
    return f"the {name} is not in view (segments seen: {seen})"
