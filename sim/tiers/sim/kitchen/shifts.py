"""Test-time-shift scenes of the kitchen: the layouts a demonstration did not show.

* ``obstacle``: a tall object (the can, 12 cm) stands on the straight line from the picked object to its
  target, where a demonstrated transport would pass;
* ``shifted``: the target container is moved to a corner of the free counter area, far from where the
  layout sampler usually puts it;
* ``clutter``: every other object of the kitchen is added as a distractor.

Each builder takes a pick-and-place task's objects and a seed, and returns a :class:`KitchenLayout` (or None
when that seed cannot host the shift: no room for the obstacle). Layouts are plain data, so the same scenes
serve the mid tier's IK execution (:mod:`tiers.apps.ik_execution`, ``tiers bench steering --ik-episodes``) and
a frozen learned policy (:mod:`tiers.apps.bench.shifts`).
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from tiers.sim.kitchen.layout import (
    FOOTPRINT_RADIUS,
    FREE_AREA_X,
    FREE_AREA_Y,
    MIN_GAP,
    OBJECT_NAMES,
    KitchenLayout,
    ObjectPlacement,
    sample_layout,
)


class Shift(StrEnum):
    OBSTACLE = "obstacle"
    SHIFTED = "shifted"
    CLUTTER = "clutter"


OBSTACLE = "can"  # the tallest small object: a real obstacle for the hand and a carried object


def shifted_layout(shift: Shift | str, *, held: str, target: str, seed: int) -> KitchenLayout | None:
    """A layout with ``held`` (to be picked) and ``target`` (a container object) under ``shift``.

    Returns None when the shift does not fit this seed (e.g. no room for the obstacle between the two).
    """
    shift = Shift(shift)
    if shift is Shift.CLUTTER:
        return sample_layout(seed, objects=[held, target], n_distractors=len(OBJECT_NAMES))
    if shift is Shift.SHIFTED:
        base = sample_layout(seed, objects=[held, target], n_distractors=1)
        rng = np.random.default_rng(seed)
        radius = FOOTPRINT_RADIUS[target]
        corner = np.array(
            [FREE_AREA_X[1] - radius, (FREE_AREA_Y[0] + radius) if rng.random() < 0.5 else (FREE_AREA_Y[1] - radius)]
        )
        placements = {name: p for name, p in base.objects.items() if not _overlaps(name, p, target, corner)}
        placements[target] = replace(base.objects[target], position=np.array([corner[0], corner[1], 0.0]))
        if held not in placements:
            return None
        return replace(base, objects=placements, distractors=tuple(d for d in base.distractors if d in placements))
    if OBSTACLE in (held, target):
        raise ValueError(f"the obstacle is the {OBSTACLE}: pick another held object or target")
    base = sample_layout(seed, objects=[held, target], n_distractors=0)
    start, end = base.objects[held].position[:2], base.objects[target].position[:2]
    middle = 0.5 * (start + end)
    gap = float(np.linalg.norm(end - start)) - FOOTPRINT_RADIUS[held] - FOOTPRINT_RADIUS[target]
    if gap < 2 * FOOTPRINT_RADIUS[OBSTACLE] + 2 * MIN_GAP:
        return None
    placements = dict(base.objects)
    placements[OBSTACLE] = ObjectPlacement(OBSTACLE, np.array([middle[0], middle[1], 0.0]), 0.0, "red")
    return replace(base, objects=placements, distractors=(OBSTACLE,))


def _overlaps(name: str, placement: ObjectPlacement, target: str, corner: NDArray[np.float64]) -> bool:
    """Whether ``name`` (not the target) would overlap the target moved to ``corner`` (2,)."""
    if name == target:
        return False
    distance = float(np.linalg.norm(placement.position[:2] - corner))
    return distance < FOOTPRINT_RADIUS[name] + FOOTPRINT_RADIUS[target] + MIN_GAP
