"""Kitchen layouts: seeded, non-overlapping, inside the free counter area, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from tiers.sim.kitchen.layout import (
    FOOTPRINT_RADIUS,
    FREE_AREA_X,
    FREE_AREA_Y,
    MIN_GAP,
    OBJECT_NAMES,
    PALETTE,
    KitchenLayout,
    ObjectPlacement,
    parking_position,
    sample_layout,
)


def _as_tuple(layout: KitchenLayout) -> list[tuple[str, tuple[float, ...], float, str]]:
    return [(p.name, tuple(p.position), p.yaw, p.color) for p in layout.objects.values()]


def test_same_seed_same_layout_and_seeds_differ() -> None:
    assert _as_tuple(sample_layout(42)) == _as_tuple(sample_layout(42))
    assert sample_layout(42).distractors == sample_layout(42).distractors
    assert len({str(_as_tuple(sample_layout(seed))) for seed in range(20)}) == 20


@pytest.mark.parametrize("seed", range(30))
def test_all_nine_objects_fit_without_overlap(seed: int) -> None:
    layout = sample_layout(seed, objects=list(OBJECT_NAMES))
    assert layout.present == OBJECT_NAMES and layout.distractors == ()
    placements = list(layout.objects.values())
    for placement in placements:
        radius = FOOTPRINT_RADIUS[placement.name]
        x, y, z = placement.position
        assert FREE_AREA_X[0] + radius <= x <= FREE_AREA_X[1] - radius
        assert FREE_AREA_Y[0] + radius <= y <= FREE_AREA_Y[1] - radius
        assert z == 0.0
        assert placement.color in PALETTE
    for i, first in enumerate(placements):
        for second in placements[i + 1 :]:
            gap = np.linalg.norm(first.position[:2] - second.position[:2])
            assert gap >= FOOTPRINT_RADIUS[first.name] + FOOTPRINT_RADIUS[second.name] + MIN_GAP - 1e-9
    assert len({p.color for p in placements}) == len(placements), "colours of one layout are distinct"


def test_required_objects_distractors_and_articulations() -> None:
    layout = sample_layout(3, objects=["apple", "bowl"], articulations={"drawer": 0.1}, n_distractors=3)
    assert {"apple", "bowl"} <= set(layout.objects)
    assert len(layout.distractors) == 3 and not {"apple", "bowl"} & set(layout.distractors)
    assert layout.articulations == {"drawer": 0.1, "cabinet": 0.0}
    assert set(layout.absent) == set(OBJECT_NAMES) - set(layout.objects)
    empty = sample_layout(3, objects=[], n_distractors=0)
    assert empty.objects == {} and empty.present == ()


def test_absent_objects_are_parked_apart_and_out_of_reach() -> None:
    spots = np.array([parking_position(name) for name in OBJECT_NAMES])
    assert np.all(spots[:, 0] > 2.0) and np.all(spots[:, 2] < -0.5)
    assert len({tuple(spot) for spot in spots}) == len(OBJECT_NAMES)


def test_bad_input_names_what_is_valid() -> None:
    with pytest.raises(ValueError, match=r"unknown kitchen object 'toaster'.*apple"):
        sample_layout(0, objects=["toaster"])
    with pytest.raises(ValueError, match=r"unknown articulation 'oven'.*drawer"):
        sample_layout(0, articulations={"oven": 0.1})
    with pytest.raises(ValueError, match=r"'drawer'.*outside \[0.0, 0.22\]"):
        sample_layout(0, articulations={"drawer": 0.5})
    with pytest.raises(ValueError, match="unknown colour 'mauve'"):
        ObjectPlacement("cup", np.zeros(3), yaw=0.0, color="mauve")
    with pytest.raises(ValueError, match="not among the present objects"):
        KitchenLayout(objects={}, distractors=("cup",))
