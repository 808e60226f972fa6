"""Success predicates: pure functions of privileged scene state, each returning a :class:`Verdict`.

Two layers:

* functions (``inside_region``, ``in_container``, ``stacked_on``, ``spatial_relation``, ``is_open``,
  ``is_closed``, ``pushed``, ``held``) that read one :class:`~tiers.sim.scene_state.SceneState` (``pushed``
  also reads the episode's initial state);
* goal terms (frozen dataclasses: :class:`Placed`, :class:`Opened`, :class:`Closed`, :class:`Pushed`,
  :class:`Held`, :class:`AllOf`), the declarative form a task stores (``describe()`` prints it). Every
  term is called as
  ``term(initial, current) -> Verdict``.

All positions are in the base frame (x away from the robot, y left, z up), in metres; see
:mod:`tiers.commands.vocabulary` for what left/right/front/behind mean. Placement predicates read an
object's geometric centre (the centre of ``ObjectState.bounds``, whatever its body frame) and bottom
(``bounds.low[2]``). A placed object counts only once released: an object still between the fingers is never
"in" or "on" anything.

Thresholds (metres unless noted):

======================  =======  ==============================================================
constant                value    meaning
======================  =======  ==============================================================
REGION_MARGIN           0.01     an object's centre may stick out of a fixture region by this much
CONTAINER_BELOW         0.01     bottom of an object in a container may be this far below its floor
CONTAINER_ABOVE         0.02     ... and this far above its top (resting on the rim or the load)
STACK_Z_TOLERANCE       0.025    bottom of a stacked object within this of the base's top
NEAR_GAP                0.15     max horizontal gap between footprints for spatial relations
SAME_LEVEL              0.05     max height difference of bottoms for spatial relations (same surface)
FOOTPRINT_OVERLAP       0.005    footprints may overlap by this much (contact) and still be "apart"
OPEN_FRACTION           0.8      opening (0 closed .. 1 fully open) at or above which a fixture is open
CLOSED_FRACTION         0.05     opening at or below which a fixture is closed
                                 (both from :mod:`tiers.commands.effects`, shared with the mid tier's outcome checks)
PUSH_DISTANCE           0.08     min displacement along the push direction
PUSH_LIFT               0.03     max rise of the pushed object (it was slid, not carried)
======================  =======  ==============================================================

A directional relation (left of, right of, in front of, behind) also needs the object within a 45° cone
around the direction as seen from the anchor's centre (|off-axis offset| <= on-axis offset).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tiers.commands.effects import CLOSED_FRACTION, OPEN_FRACTION, PUSH_DISTANCE
from tiers.commands.vocabulary import (
    FIXTURES,
    OBJECTS,
    PUSH_VECTORS,
    RELATION_TEXT,
    RELATION_VECTORS,
    SPATIAL_RELATIONS,
    FixtureName,
    ObjectName,
    PushDirection,
    Relation,
)
from tiers.core.errors import TiersError
from tiers.sim.scene_state import Box, ObjectState, SceneState

REGION_MARGIN = 0.01
CONTAINER_BELOW = 0.01
CONTAINER_ABOVE = 0.02
STACK_Z_TOLERANCE = 0.025
NEAR_GAP = 0.15
SAME_LEVEL = 0.05
FOOTPRINT_OVERLAP = 0.005
PUSH_LIFT = 0.03


class PredicateError(TiersError, LookupError):
    """A predicate names an object, region or articulation the scene state does not have."""


@dataclass(frozen=True)
class Verdict:
    """Outcome of a predicate: ``success`` and a short human-readable ``reason`` for reports.

    Truthiness is ``success`` (``if inside_region(...)`` works); unpack with ``ok, why = verdict.pair``.
    """

    success: bool
    reason: str

    def __bool__(self) -> bool:
        return self.success

    @property
    def pair(self) -> tuple[bool, str]:
        return self.success, self.reason


# --- state readers --------------------------------------------------------------------------------------


def _object(state: SceneState, name: str) -> ObjectState:
    try:
        return state.objects[name]
    except KeyError:
        raise PredicateError(f"no object {name!r} in the scene; present: {sorted(state.objects)}") from None


def _region(state: SceneState, name: str) -> Box:
    try:
        return state.regions[name]
    except KeyError:
        raise PredicateError(f"no region {name!r} in the scene; present: {sorted(state.regions)}") from None


def _opening(state: SceneState, name: str) -> float:
    try:
        return state.articulations[name].opening
    except KeyError:
        raise PredicateError(f"no articulation {name!r} in the scene; present: {sorted(state.articulations)}") from None


def _released(state: SceneState, name: str) -> Verdict | None:
    """A failing verdict if ``name`` is still held, else None."""
    return Verdict(False, f"{name} is still held") if state.grasped == name else None


def _footprint_gap(a: Box, b: Box) -> float:
    """Horizontal distance between two boxes' xy footprints; negative = overlap depth (m)."""
    separation = np.maximum(a.low[:2] - b.high[:2], b.low[:2] - a.high[:2])  # (2,) per-axis gap
    if np.all(separation < 0):
        return float(np.max(separation))
    return float(np.linalg.norm(np.maximum(separation, 0.0)))


def _within_footprint(point: NDArray[np.float64], box: Box) -> bool:
    return bool(np.all(point[:2] >= box.low[:2]) and np.all(point[:2] <= box.high[:2]))


# --- predicates on one state -----------------------------------------------------------------------------


def held(state: SceneState, obj: str) -> Verdict:
    """``obj`` is between the fingers."""
    _object(state, obj)
    if state.grasped == obj:
        return Verdict(True, f"{obj} is held")
    return Verdict(False, f"{obj} is not held (holding {state.grasped or 'nothing'})")


def inside_region(state: SceneState, obj: str, region: str) -> Verdict:
    """``obj``'s centre lies in fixture ``region`` (grown by REGION_MARGIN) and it is released."""
    item, box = _object(state, obj), _region(state, region)
    if (failed := _released(state, obj)) is not None:
        return failed
    centre = item.bounds.center
    if box.contains(centre, margin=REGION_MARGIN):
        return Verdict(True, f"{obj} is in the {region}")
    outside = np.maximum(box.low - REGION_MARGIN - centre, centre - box.high - REGION_MARGIN)
    axis = int(np.argmax(outside))
    return Verdict(False, f"{obj} is outside the {region} by {outside[axis]:.3f} m along {'xyz'[axis]}")


def in_container(state: SceneState, obj: str, container: str) -> Verdict:
    """``obj`` rests in/on container object ``container`` (bowl, plate, basket), judged from its bounds.

    The object's centre must be over the container's footprint and its bottom between the container's
    floor (less CONTAINER_BELOW) and top (plus CONTAINER_ABOVE), and it must be released.
    """
    item, base = _object(state, obj), _object(state, container)
    if (failed := _released(state, obj)) is not None:
        return failed
    if not _within_footprint(item.bounds.center, base.bounds):
        return Verdict(False, f"{obj} is not over the {container}")
    bottom = item.bounds.low[2]
    if bottom < base.bounds.low[2] - CONTAINER_BELOW:
        return Verdict(False, f"{obj} is below the {container} ({bottom:.3f} m < floor {base.bounds.low[2]:.3f} m)")
    if bottom > base.bounds.high[2] + CONTAINER_ABOVE:
        return Verdict(False, f"{obj} is {bottom - base.bounds.high[2]:.3f} m above the {container}, not in it")
    return Verdict(True, f"{obj} is in the {container}")


def stacked_on(state: SceneState, obj: str, base: str) -> Verdict:
    """``obj`` rests on top of ``base``: centre over its footprint, bottom within STACK_Z_TOLERANCE of its top."""
    item, under = _object(state, obj), _object(state, base)
    if (failed := _released(state, obj)) is not None:
        return failed
    if not _within_footprint(item.bounds.center, under.bounds):
        return Verdict(False, f"{obj} is not over the {base}")
    offset = item.bounds.low[2] - under.bounds.high[2]
    if abs(offset) > STACK_Z_TOLERANCE:
        return Verdict(
            False, f"{obj}'s bottom is {offset:+.3f} m from the {base}'s top (tolerance {STACK_Z_TOLERANCE})"
        )
    return Verdict(True, f"{obj} is stacked on the {base}")


def spatial_relation(state: SceneState, obj: str, relation: Relation, anchor: str) -> Verdict:
    """``obj`` lies ``relation`` of object ``anchor`` (base frame; see the module thresholds).

    Every spatial relation needs: released, footprints apart (overlap <= FOOTPRINT_OVERLAP), gap <= NEAR_GAP,
    bottoms within SAME_LEVEL in height. A directional relation also needs the centre offset inside the
    45° cone around its direction (:data:`~tiers.commands.vocabulary.RELATION_VECTORS`).
    """
    if relation not in SPATIAL_RELATIONS:
        raise ValueError(f"{relation!r} is not a spatial relation; spatial: {sorted(SPATIAL_RELATIONS)}")
    item, ref = _object(state, obj), _object(state, anchor)
    phrase = f"{RELATION_TEXT[relation]} the {anchor}"
    if (failed := _released(state, obj)) is not None:
        return failed
    gap = _footprint_gap(item.bounds, ref.bounds)
    if gap < -FOOTPRINT_OVERLAP:
        return Verdict(False, f"{obj} overlaps the {anchor} ({-gap:.3f} m), not {phrase}")
    if gap > NEAR_GAP:
        return Verdict(False, f"{obj} is {gap:.3f} m from the {anchor} (max {NEAR_GAP}), too far to be {phrase}")
    height = abs(item.bounds.low[2] - ref.bounds.low[2])
    if height > SAME_LEVEL:
        return Verdict(False, f"{obj} is {height:.3f} m above/below the {anchor} (max {SAME_LEVEL})")
    if relation is not Relation.NEXT_TO:
        offset = item.bounds.center[:2] - ref.bounds.center[:2]  # (2,) xy, anchor -> object
        direction = RELATION_VECTORS[relation]
        along = float(offset @ direction)
        across = abs(float(offset[0] * direction[1] - offset[1] * direction[0]))
        if along <= 0 or across > along:
            return Verdict(False, f"{obj} is not {phrase} (offset {along:+.3f} m along, {across:.3f} m across)")
    return Verdict(True, f"{obj} is {phrase}")


def is_open(state: SceneState, fixture: str) -> Verdict:
    """Articulation ``fixture`` has opening >= OPEN_FRACTION."""
    opening = _opening(state, fixture)
    if opening >= OPEN_FRACTION:
        return Verdict(True, f"{fixture} is open ({opening:.2f})")
    return Verdict(False, f"{fixture} is only {opening:.2f} open (needs {OPEN_FRACTION})")


def is_closed(state: SceneState, fixture: str) -> Verdict:
    """Articulation ``fixture`` has opening <= CLOSED_FRACTION."""
    opening = _opening(state, fixture)
    if opening <= CLOSED_FRACTION:
        return Verdict(True, f"{fixture} is closed ({opening:.2f})")
    return Verdict(False, f"{fixture} is still {opening:.2f} open (closed at <= {CLOSED_FRACTION})")


def pushed(
    initial: SceneState,
    current: SceneState,
    obj: str,
    direction: PushDirection,
    min_distance: float = PUSH_DISTANCE,
) -> Verdict:
    """``obj`` moved at least ``min_distance`` m along ``direction`` since ``initial``, without being lifted.

    Only the component along the push direction of the body-frame position change counts; "lifted" means
    its bottom rose more than PUSH_LIFT or it is held now.
    """
    start, end = _object(initial, obj), _object(current, obj)
    if (failed := _released(current, obj)) is not None:
        return failed
    rise = end.bounds.low[2] - start.bounds.low[2]
    if rise > PUSH_LIFT:
        return Verdict(False, f"{obj} was lifted {rise:.3f} m, not pushed")
    moved = float((end.position[:2] - start.position[:2]) @ PUSH_VECTORS[direction])
    if moved >= min_distance:
        return Verdict(True, f"{obj} was pushed {moved:.3f} m {direction.value}")
    return Verdict(False, f"{obj} moved {moved:+.3f} m {direction.value} (needs {min_distance})")


# --- goal terms -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """Goal: ``object`` is held (the effect of a pick that nothing follows)."""

    object: str

    def __call__(self, initial: SceneState, current: SceneState) -> Verdict:
        return held(current, self.object)

    def describe(self) -> str:
        return f"holding the {self.object}"


@dataclass(frozen=True)
class Placed:
    """Goal: ``object`` ends ``relation`` ``target``; the predicate is picked from the target's kind.

    Fixture target → :func:`inside_region` (region named like the fixture); container object (bowl, plate,
    basket) with in/on → :func:`in_container`; other object with on → :func:`stacked_on`; spatial relation →
    :func:`spatial_relation`.
    """

    object: str
    relation: Relation
    target: str

    def __call__(self, initial: SceneState, current: SceneState) -> Verdict:
        if self.relation in SPATIAL_RELATIONS:
            return spatial_relation(current, self.object, self.relation, self.target)
        if self.target in FIXTURES:
            return inside_region(current, self.object, self.target)
        if OBJECTS[ObjectName(self.target)].container:
            return in_container(current, self.object, self.target)
        return stacked_on(current, self.object, self.target)

    def describe(self) -> str:
        return f"the {self.object} {RELATION_TEXT[self.relation]} the {self.target}"


@dataclass(frozen=True)
class Opened:
    """Goal: articulated ``fixture`` is open."""

    fixture: FixtureName

    def __call__(self, initial: SceneState, current: SceneState) -> Verdict:
        return is_open(current, self.fixture)

    def describe(self) -> str:
        return f"the {self.fixture} open"


@dataclass(frozen=True)
class Closed:
    """Goal: articulated ``fixture`` is closed."""

    fixture: FixtureName

    def __call__(self, initial: SceneState, current: SceneState) -> Verdict:
        return is_closed(current, self.fixture)

    def describe(self) -> str:
        return f"the {self.fixture} closed"


@dataclass(frozen=True)
class Pushed:
    """Goal: ``object`` pushed at least ``min_distance`` m ``direction`` since the episode start."""

    object: str
    direction: PushDirection
    min_distance: float = PUSH_DISTANCE

    def __call__(self, initial: SceneState, current: SceneState) -> Verdict:
        return pushed(initial, current, self.object, self.direction, self.min_distance)

    def describe(self) -> str:
        return f"the {self.object} pushed {self.direction.value} by {self.min_distance} m"


Goal = Held | Placed | Opened | Closed | Pushed


@dataclass(frozen=True)
class AllOf:
    """Conjunction of goal terms, evaluated on the final state; the reason lists every failed part."""

    terms: tuple[Goal, ...]

    def __post_init__(self) -> None:
        if not self.terms:
            raise ValueError("AllOf needs at least one term")

    def __iter__(self) -> Iterator[Goal]:
        return iter(self.terms)

    def __call__(self, initial: SceneState, current: SceneState) -> Verdict:
        verdicts = [term(initial, current) for term in self.terms]
        failed = [verdict.reason for verdict in verdicts if not verdict]
        if failed:
            return Verdict(False, "; ".join(failed))
        return Verdict(True, "; ".join(verdict.reason for verdict in verdicts))

    def describe(self) -> str:
        return " and ".join(term.describe() for term in self.terms)
