"""How the kitchen expert grasps things: per-object grasp specs, the fixtures' handle geometry, and top-down
grasp planning scored on finger clearance.

Frames: the robot base frame (x away from the robot over the counter, y left, z up), metres, radians.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.sim.kitchen.motions import nearest_equivalent_yaw, reference_yaw
from tiers.sim.scene_state import Box, ObjectState, SceneState

Vector = NDArray[np.float64]

# --- tuning constants (m) ---------------------------------------------------------------------------------------
FINGER_REACH = 0.024  # m, finger body beyond its pad's inner face, along the closing axis
FINGER_RADIUS = 0.016  # m, radius of a circle holding one finger's footprint
CLEARANCE_GOAL = 0.03  # m, finger clearance from other objects beyond which grasps score the same
HAND_BODY_BELOW = 0.045  # m, from the TCP up to the underside of the hand body
HAND_TOP_CLEARANCE = 0.008  # m, between a grasped object's top and the hand body
HAND_HALF_LENGTH = 0.11  # m, hand body half length along the closing axis, with a margin
FIXTURE_SIDE_Y = 0.29  # m, |y| beyond which the drawer unit (left) and the cabinet (right) stand
MIN_TCP_HEIGHT = 0.016  # m, lowest TCP height: the pads' lower edge stays above the counter


class ExpertGaveUpError(Exception):
    """A routine (or the grasp planning it calls) gave up its subtask; the message says why."""


# --- objects and fixtures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraspSpec:
    """How the expert grasps an upright object from above.

    Attributes:
        height: m above the object's bottom where the TCP closes.
        axes: closing-axis angles in the object's frame (rad; pi/2 = its y axis); empty: any (round objects).
        opening: m, finger opening on the way down.
        rim_radius: m, > 0: grasp the wall or rim at this radius, closing radially (bowl, plate).
        rim_segments: number of wall/rim segments (grasp points) around the object.
        exact: keep ``height`` even if the hand body then touches the object's top (a sphere must be held at its
            equator; its stem may touch the hand).
    """

    height: float
    axes: tuple[float, ...]
    opening: float
    rim_radius: float = 0.0
    rim_segments: int = 0
    exact: bool = False


_Y = (np.pi / 2,)
GRASPS: MappingProxyType[str, GraspSpec] = MappingProxyType(
    {
        "cup": GraspSpec(0.045, _Y, 0.08),  # across the body, away from the handle (+x)
        "bowl": GraspSpec(0.035, (), 0.045, rim_radius=0.06, rim_segments=12),
        "plate": GraspSpec(0.024, (), 0.045, rim_radius=0.075, rim_segments=8),
        "apple": GraspSpec(0.035, (), 0.08, exact=True),
        "banana": GraspSpec(0.017, _Y, 0.06),
        "sponge": GraspSpec(0.018, _Y, 0.08),
        "can": GraspSpec(0.06, (), 0.08),
        "box": GraspSpec(0.05, (np.pi / 2, 0.0), 0.08),
    }
)


@dataclass(frozen=True)
class FixtureGeometry:
    """Where the articulated fixtures' handles are, as functions of their joint values (base frame, m, rad).

    Attributes:
        drawer_grasp: (3,) TCP grasp point on the drawer handle bar with the drawer closed.
        drawer_axis: (3,) unit direction the drawer moves as it opens.
        hinge: (2,) xy of the cabinet door's vertical hinge axis.
        door_grasp: (3,) TCP grasp point on the door handle bar with the door closed.
        cabinet_mouth_x: x of the cabinet's open front face.
        drawer_unit_front_x: x of the drawer unit's front face (the drawer is covered beyond it).
    """

    drawer_grasp: Vector
    drawer_axis: Vector
    hinge: Vector
    door_grasp: Vector
    cabinet_mouth_x: float
    drawer_unit_front_x: float

    def drawer_handle(self, opening: float) -> Vector:
        """(3,) TCP grasp point on the drawer handle with the drawer ``opening`` m open."""
        return self.drawer_grasp + opening * self.drawer_axis

    def door_handle(self, angle: float) -> Vector:
        """(3,) TCP grasp point on the door handle with the door ``angle`` rad open."""
        return rotate_about(self.door_grasp, self.hinge, angle)

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> FixtureGeometry:
        """Read the handle bars and fixture faces from the kitchen model (all joints at 0)."""
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)

        def bar_grasp(geom: str, depth: float) -> Vector:
            index = model.geom(geom).id
            top = data.geom_xpos[index] + data.geom_xmat[index].reshape(3, 3)[:, 2] * model.geom_size[index][1]
            top = top if top[2] > data.geom_xpos[index][2] else 2 * data.geom_xpos[index] - top
            return np.array([top[0], top[1], top[2] - depth])

        slide = model.joint("drawer_slide")
        body_rotation = data.xmat[slide.bodyid[0]].reshape(3, 3)
        hinge = data.xanchor[model.joint("cabinet_hinge").id]
        cabinet_top = model.geom("cabinet_top").id
        drawer_top = model.geom("drawer_unit_top").id
        return cls(
            drawer_grasp=bar_grasp("drawer_handle_bar", DRAWER_GRASP_DEPTH),
            drawer_axis=body_rotation @ slide.axis,
            hinge=hinge[:2].copy(),
            door_grasp=bar_grasp("cabinet_handle_bar", DOOR_GRASP_DEPTH),
            cabinet_mouth_x=float(data.geom_xpos[cabinet_top][0] - model.geom_size[cabinet_top][0]),
            drawer_unit_front_x=float(data.geom_xpos[drawer_top][0] - model.geom_size[drawer_top][0]),
        )


DRAWER_GRASP_DEPTH = 0.010  # m, TCP below the top end of the drawer handle bar's axis
DOOR_GRASP_DEPTH = 0.010  # m, TCP below the top end of the door handle bar's axis

# The kitchen of assets/kitchen/scene.xml (from_model reads the same numbers from a compiled model).
DEFAULT_FIXTURES = FixtureGeometry(
    drawer_grasp=np.array([0.395, 0.44, 0.125 - DRAWER_GRASP_DEPTH]),
    drawer_axis=np.array([-1.0, 0.0, 0.0]),
    hinge=np.array([0.4425, -0.58]),
    door_grasp=np.array([0.3975, -0.33, 0.20 - DOOR_GRASP_DEPTH]),
    cabinet_mouth_x=0.45,
    drawer_unit_front_x=0.45,
)


def rotate_about(point: Vector, pivot: Vector, angle: float) -> Vector:
    """(3,) ``point`` rotated by ``angle`` rad about the vertical axis through ``pivot`` (2,) xy."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = point[0] - pivot[0], point[1] - pivot[1]
    return np.array([pivot[0] + c * dx - s * dy, pivot[1] + s * dx + c * dy, point[2]])


def body_yaw(obj: ObjectState) -> float:
    """Heading (rad) of the object's x axis in the horizontal plane."""
    w, x, y, z = obj.quaternion
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def body_up(obj: ObjectState) -> Vector:
    """(3,) the object's z axis in the base frame."""
    w, x, y, z = obj.quaternion
    return np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])


def box_distance(point: Vector, box: Box) -> float:
    """Horizontal distance (m) from ``point`` (2+,) to the xy footprint of ``box`` (0 inside)."""
    gap = np.maximum(np.maximum(box.low[:2] - point[:2], point[:2] - box.high[:2]), 0.0)
    return float(np.linalg.norm(gap))


def footprint_gap(centre: Vector, half: Vector, box: Box) -> float:
    """Horizontal gap (m) between the footprint ``centre`` ± ``half`` (2,) and ``box`` (negative: overlap)."""
    separation = np.maximum(box.low[:2] - (centre + half), (centre - half) - box.high[:2])
    if np.all(separation < 0):
        return float(np.max(separation))
    return float(np.linalg.norm(np.maximum(separation, 0.0)))


@dataclass(frozen=True)
class Grasp:
    """A planned grasp: TCP ``position`` (3,) m, closing-axis ``yaw`` rad, approach ``opening`` m."""

    position: Vector
    yaw: float
    opening: float


def plan_grasp(state: SceneState, name: str, *, fixture_front_x: float = DEFAULT_FIXTURES.drawer_unit_front_x) -> Grasp:
    """Top-down grasp of object ``name``, scored on finger clearance from the other objects, the hand body
    staying off the cabinet and drawer unit (whose fronts are at ``fixture_front_x``, m), and wrist comfort."""
    if name not in GRASPS:
        raise ExpertGaveUpError(f"the expert has no grasp for the {name}; graspable: {sorted(GRASPS)}")
    obj = state.objects[name]
    spec = GRASPS[name]
    heading = body_yaw(obj)
    centre = obj.position[:2]
    upright = body_up(obj)[2] > np.cos(np.deg2rad(30))
    # the hand body sits HAND_BODY_BELOW above the TCP: tall objects are held high enough to keep it off their top
    height = obj.bounds.low[2] + spec.height
    if not spec.exact:
        height = max(height, obj.bounds.high[2] - HAND_BODY_BELOW + HAND_TOP_CLEARANCE)
    opening = spec.opening
    candidates: list[tuple[Vector, float]] = []
    if not upright:  # fallen over: close across the horizontal projection of its z axis, at mid-height
        axis = body_up(obj)[:2]
        centre = obj.bounds.center[:2]
        height = obj.bounds.center[2]
        opening = 0.08
        along = float(np.arctan2(axis[1], axis[0])) if np.linalg.norm(axis) > 0.3 else heading
        candidates = [(centre, along + np.pi / 2)]
    elif spec.rim_segments:
        for k in range(spec.rim_segments):
            angle = heading + 2 * np.pi * k / spec.rim_segments
            point = centre + spec.rim_radius * np.array([np.cos(angle), np.sin(angle)])
            candidates.append((point, angle))
    elif spec.axes:
        candidates = [(centre, heading + axis) for axis in spec.axes]
    else:
        base = reference_yaw(obj.position)
        candidates = [(centre, base + k * np.pi / 12) for k in range(12)]
    others = [other.bounds for other_name, other in state.objects.items() if other_name != name]
    best: tuple[float, Grasp] | None = None
    for point, yaw in candidates:
        reference = reference_yaw(np.append(point, 0.0))
        yaw = nearest_equivalent_yaw(yaw, reference)
        clearance = finger_clearance(point, yaw, opening, others)
        score = float(10 * min(clearance, CLEARANCE_GOAL) - 0.05 * abs(yaw - reference) - 0.5 * np.linalg.norm(point))
        if hand_over_fixture(point, yaw, fixture_front_x):  # it would come down on the fixture's top or side
            score -= 1.0
        grasp = Grasp(np.array([point[0], point[1], max(height, MIN_TCP_HEIGHT)]), yaw, opening)
        if best is None or score > best[0]:
            best = (score, grasp)
    assert best is not None
    return best[1]


def hand_over_fixture(point: Vector, yaw: float, fixture_front_x: float) -> bool:
    """Whether the hand body (HAND_HALF_LENGTH along the closing axis ``yaw``) at ``point`` (2,) reaches over
    the drawer unit or the cabinet beside the free counter area."""
    closing = np.array([np.cos(yaw), np.sin(yaw)])
    for end in (-HAND_HALF_LENGTH, HAND_HALF_LENGTH):
        x, y = point[:2] + end * closing
        if x > fixture_front_x - 0.02 and abs(y) > FIXTURE_SIDE_Y:
            return True
    return False


def finger_clearance(point: Vector, yaw: float, opening: float, obstacles: Sequence[Box]) -> float:
    """Least horizontal distance (m) from the two open fingers at ``point`` (2,) to ``obstacles``."""
    closing = np.array([np.cos(yaw), np.sin(yaw)])
    reach = opening / 2 + FINGER_REACH / 2
    fingers = [point + reach * closing, point - reach * closing]
    distances = [box_distance(finger, box) - FINGER_RADIUS for finger in fingers for box in obstacles]
    return min(distances, default=CLEARANCE_GOAL)
