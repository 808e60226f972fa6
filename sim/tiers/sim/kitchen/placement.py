"""Where the kitchen expert puts things down: place goals and the search for free spots on the counter and in
fixtures.

:func:`spatial_room` is the same search run on a whole plan at the start of an episode:
:class:`~tiers.sim.kitchen.env.KitchenEnv` resamples a layout that leaves no room for a spatial placement.
Frames: the robot base frame (x away from the robot over the counter, y left, z up), metres, radians.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tiers.commands.subtasks import Action, Subtask
from tiers.commands.vocabulary import RELATION_TEXT, RELATION_VECTORS, Relation
from tiers.sim.kitchen.grasps import footprint_gap
from tiers.sim.kitchen.layout import FREE_AREA_X, FREE_AREA_Y
from tiers.sim.scene_state import Box, ObjectState, SceneState

Vector = NDArray[np.float64]

# --- tuning constants (m) ---------------------------------------------------------------------------------------
SPOT_MAX_SHIFT = 0.16  # m, largest sideways shift of a spatial spot off the anchor's axis
SPOT_SHIFT_STEP = 0.02  # m
SPOT_CONE = 0.8  # sideways shift at most this fraction of the on-axis offset (the predicate allows 1.0)
SPOT_GAP = 0.045  # m, preferred footprint gap between a spatially placed object and its anchor
SPOT_CLEARANCE = 0.015  # m, least footprint gap to every other object at a spatial spot
RELAXED_SPOT_CONE = 0.95  # SPOT_CONE when no spot is free otherwise
RELAXED_SPOT_CLEARANCE = 0.006  # m, SPOT_CLEARANCE when no spot is free otherwise
SPOT_AREA_X = (FREE_AREA_X[0] - 0.06, FREE_AREA_X[1] + 0.03)
SPOT_AREA_Y = (FREE_AREA_Y[0] - 0.01, FREE_AREA_Y[1] + 0.01)
SIDE_AREA_X = (0.17, 0.41)  # m, counter strip beside the robot between the sink/shelf and the cabinet/drawer
SIDE_AREA_Y = 0.55  # m, |y| bound of that strip
FIXTURE_SPOT_STEP = 0.01  # m, grid of candidate spots in a fixture that already holds an object
FIXTURE_SPOT_MARGIN = 0.005  # m, a placed footprint kept this far inside the fixture's region
FIXTURE_SPOT_CLEARANCE = 0.03  # m, footprint gap to the objects already in a fixture beyond which spots score the same


@dataclass(frozen=True)
class PlaceGoal:
    """Where a held object goes.

    Attributes:
        centre: (2,) m, the object's footprint centre (bounds centre) at release.
        bottom: m, the object's bottom height at release.
        yaw: closing-axis yaw (rad) of the tool at release; None: keep the current one.
        tilt: rad, lean of the approach axis from vertical (toward +x), for reaching into the cabinet.
        from_front: enter horizontally along +x (cabinet) instead of from above.
    """

    centre: Vector
    bottom: float
    yaw: float | None = None
    tilt: float = 0.0
    from_front: bool = False


# --- free spots ------------------------------------------------------------------------------------------------


def spatial_room(plan: Sequence[Subtask], state: SceneState) -> str | None:
    """Why layout ``state`` leaves no room for a spatial placement of ``plan``; None when each has some.

    The most permissive form of the expert's own search (:func:`spatial_spot` relaxed, either footprint
    orientation, no hand-clearance gap) on the initial layout: where it finds nothing, the counter has no
    free spot of the object's size in the relation's cone, so no robot could succeed without clearing the
    counter first. :class:`~tiers.sim.kitchen.env.KitchenEnv` resamples such layouts.
    """
    for subtask in plan:
        relation, anchor = subtask.relation, subtask.target
        if subtask.action is not Action.PLACE or anchor is None or anchor not in state.objects:
            continue
        if relation not in RELATION_VECTORS and relation is not Relation.NEXT_TO:
            continue
        obj, ref = state.objects[subtask.object], state.objects[anchor]
        directions = [RELATION_VECTORS[relation]] if relation in RELATION_VECTORS else list(RELATION_VECTORS.values())
        others = [o.bounds for n, o in state.objects.items() if n not in (subtask.object, anchor)]
        half = obj.bounds.size[:2] / 2
        if all(
            spatial_spot(ref.bounds, footprint, direction, others, state, relaxed=True) is None
            for direction in directions
            for footprint in (half, half[::-1])
        ):
            return f"no free counter spot {RELATION_TEXT[relation]} the {anchor} for the {subtask.object}"
    return None


def spatial_spot(
    anchor: Box,
    half: Vector,
    direction: Vector,
    others: Sequence[Box],
    state: SceneState,
    min_gap: float = 0.0,
    *,
    relaxed: bool = False,
) -> tuple[float, Vector] | None:
    """Best free footprint centre (2,) m for an object of half extents ``half`` (2,) placed ``direction``
    (2,) unit, axis-aligned) of ``anchor``, with its score; None when no candidate is free.

    Candidates: footprint gaps to the anchor around SPOT_GAP and lateral shifts within the relation's 45°
    cone; each must stay on the free counter area and SPOT_CLEARANCE away from ``others``. ``relaxed``: the
    fallback when nothing is free: shifts nearly to the cone's edge and RELAXED_SPOT_CLEARANCE from others.
    """
    cone, least_clearance = (RELAXED_SPOT_CONE, RELAXED_SPOT_CLEARANCE) if relaxed else (SPOT_CONE, SPOT_CLEARANCE)
    axis = int(np.argmax(np.abs(direction)))
    across = np.array([-direction[1], direction[0]])
    best: tuple[float, Vector] | None = None
    gaps = [gap for gap in (SPOT_GAP, 0.03, 0.06, 0.08, 0.1, 0.12) if gap >= min_gap] + [max(min_gap, 0.0) + 0.01]
    for gap in gaps:
        along = anchor.size[axis] / 2 + half[axis] + gap
        for shift in np.arange(-SPOT_MAX_SHIFT, SPOT_MAX_SHIFT + 1e-9, SPOT_SHIFT_STEP):
            if abs(shift) > cone * along:  # stay well inside the relation's 45° cone
                continue
            centre = anchor.center[:2] + direction * along + across * shift
            if not _on_free_counter(centre, half, state):
                continue
            clearance = min((footprint_gap(centre, half, box) for box in others), default=1.0)
            if clearance < least_clearance:
                continue
            score = float(
                min(clearance, 0.06)
                - 0.5 * abs(gap - max(SPOT_GAP, min_gap))
                - 0.2 * abs(shift)
                - 0.1 * np.linalg.norm(centre)
            )
            if best is None or score > best[0]:
                best = (score, centre)
    return best


def free_spot_in(
    region: Box, preferred: Vector, obj: ObjectState, state: SceneState, *, along_x: bool = True
) -> Vector:
    """Footprint centre (2,) m for ``obj`` in fixture ``region`` beside the objects already in it.

    ``preferred`` when nothing else is in the region; otherwise the spot on a FIXTURE_SPOT_STEP grid that keeps
    ``obj``'s footprint inside the region (less FIXTURE_SPOT_MARGIN) and farthest from the others' footprints,
    nearest ``preferred`` among equals: a second object set down on the first one in a drawer or the sink
    ends up leaning on it, with its centre above the region. ``along_x=False`` keeps ``preferred``'s x.
    When no spot is free of the others, ``preferred``: a long object (the banana) across a cup settles
    beside it more often than one pushed against the wall.
    """
    occupants = [
        other.bounds
        for name, other in state.objects.items()
        if name != obj.name and region.contains(other.bounds.center, margin=0.02)
    ]
    if not occupants:
        return preferred
    half = obj.bounds.size[:2] / 2  # (2,) m, as carried: its yaw changes little on the way down
    low = region.low[:2] + half + FIXTURE_SPOT_MARGIN
    high = region.high[:2] - half - FIXTURE_SPOT_MARGIN
    if low[1] > high[1] or (along_x and low[0] > high[0]):
        return preferred
    best: tuple[float, float, Vector] | None = None
    xs = np.arange(low[0], high[0] + 1e-9, FIXTURE_SPOT_STEP) if along_x else [preferred[0]]
    for x in xs:
        for y in np.arange(low[1], high[1] + 1e-9, FIXTURE_SPOT_STEP):
            spot = np.array([x, y])
            gap = min(footprint_gap(spot, half, box) for box in occupants)
            key = (min(gap, FIXTURE_SPOT_CLEARANCE), -float(np.linalg.norm(spot - preferred)))
            if best is None or key > best[:2]:
                best = (*key, spot)
    assert best is not None
    if best[0] < 0.0:  # it overlaps the others wherever it goes: keep the usual spot (it settles against them)
        return preferred
    return best[2]


def _on_free_counter(centre: Vector, half: Vector, state: SceneState) -> bool:
    """Whether a footprint lies on the counter where the arm places things, clear of every fixture.

    Two areas: the band in front of the robot (SPOT_AREA), and the strip beside it between the sink or shelf
    and the cabinet or drawer unit (SIDE_AREA), on each side only while that side's fixture is closed.
    """
    low, high = centre - half, centre + half
    if (
        low[0] >= SPOT_AREA_X[0]
        and high[0] <= SPOT_AREA_X[1]
        and low[1] >= SPOT_AREA_Y[0]
        and high[1] <= SPOT_AREA_Y[1]
    ):
        return True
    if not (low[0] >= SIDE_AREA_X[0] and high[0] <= SIDE_AREA_X[1] and abs(centre[1]) + half[1] <= SIDE_AREA_Y):
        return False
    fixture = "drawer" if centre[1] > 0 else "cabinet"
    return state.articulations[fixture].opening < 0.05
