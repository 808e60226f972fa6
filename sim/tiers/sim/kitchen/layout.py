"""Kitchen layouts: where each movable object starts, in which colour, and how the fixtures start.

A :class:`KitchenLayout` is plain data, independent of any simulator: the MuJoCo backend applies it to
``assets/kitchen/scene.xml`` and an Isaac Sim backend applies the same numbers to its stage. It is
sampled from a seed with its own ``numpy.random.Generator`` (same seed and arguments -> same layout).

Frame: the robot base frame (``panda_link0`` at the world origin), x away from the robot over the
counter, y to the robot's left, z up; the counter top is the plane z = 0. An object's pose is the pose of
its base frame: the centre of the face it stands on, so an object standing on the counter has z = 0.

The model always holds all nine objects; those not in a layout are parked on the floor out of every
camera's view (:func:`parking_position`), so one compiled model serves every episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from tiers.commands.palette import PALETTE

# Movable objects of the scene, in a fixed order: the order defines segmentation ids.
OBJECT_NAMES: tuple[str, ...] = ("cup", "bowl", "plate", "apple", "banana", "sponge", "can", "box", "basket")
# Movable objects other objects can be put in or on.
CONTAINER_OBJECTS: frozenset[str] = frozenset({"bowl", "plate", "basket"})
# Radius (m) of a vertical cylinder around the base frame holding the object's footprint, at any yaw.
FOOTPRINT_RADIUS: MappingProxyType[str, float] = MappingProxyType(
    {
        "cup": 0.053,
        "bowl": 0.068,
        "plate": 0.082,
        "apple": 0.036,
        "banana": 0.087,
        "sponge": 0.055,
        "can": 0.034,
        "box": 0.040,
        "basket": 0.089,
    }
)

COUNTER_HEIGHT = 0.0  # m, z of the counter top in the base frame
# Free counter area the objects' footprints must lie in (m, base frame): in reach of the arm, clear of
# the fixtures and of the drawer's and the door's sweep.
FREE_AREA_X: tuple[float, float] = (0.24, 0.64)
FREE_AREA_Y: tuple[float, float] = (-0.29, 0.29)
MIN_GAP = 0.01  # m, least clearance between two objects' footprints

# Articulated fixtures: name -> (joint name in the scene, lower, upper); drawer in m, cabinet door in rad.
ARTICULATIONS: MappingProxyType[str, tuple[str, float, float]] = MappingProxyType(
    {"drawer": ("drawer_slide", 0.0, 0.22), "cabinet": ("cabinet_hinge", 0.0, 1.75)}
)

_PARKING_X = 3.0  # m, far beyond the front camera, on the floor
_FLOOR_Z = -0.9  # m


def parking_position(name: str) -> NDArray[np.float64]:
    """(3,) m: where an object absent from the layout waits, standing on the floor out of view."""
    index = _object_index(name)
    return np.array([_PARKING_X, -2.0 + 0.5 * index, _FLOOR_Z])


def _object_index(name: str) -> int:
    if name not in OBJECT_NAMES:
        raise ValueError(f"unknown kitchen object {name!r}; the objects are {', '.join(OBJECT_NAMES)}")
    return OBJECT_NAMES.index(name)


def yaw_quaternion(yaw: float) -> NDArray[np.float64]:
    """(4,) wxyz quaternion of a rotation by ``yaw`` rad about +z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


@dataclass(frozen=True)
class ObjectPlacement:
    """One present object.

    Attributes:
        name: object name, one of :data:`OBJECT_NAMES`.
        position: (3,) m, base frame position of the object's base frame (z = 0: on the counter).
        yaw: rad about +z.
        color: colour word, a key of :data:`PALETTE`.
    """

    name: str
    position: NDArray[np.float64]
    yaw: float
    color: str

    def __post_init__(self) -> None:
        _object_index(self.name)
        position = np.asarray(self.position, dtype=np.float64)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"object {self.name!r}: position must be 3 finite numbers, got {self.position}")
        if self.color not in PALETTE:
            raise ValueError(
                f"object {self.name!r}: unknown colour {self.color!r}; the palette is {', '.join(PALETTE)}"
            )
        object.__setattr__(self, "position", position)
        object.__setattr__(self, "yaw", float(self.yaw))

    @property
    def quaternion(self) -> NDArray[np.float64]:
        """(4,) wxyz orientation."""
        return yaw_quaternion(self.yaw)

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        return PALETTE[self.color]


@dataclass(frozen=True)
class KitchenLayout:
    """Initial state of a kitchen episode.

    Attributes:
        objects: name -> placement, for the objects present (the others are parked out of view).
        articulations: fixture name -> initial joint value ("drawer": m open, "cabinet": rad open);
            every fixture of :data:`ARTICULATIONS` has a value.
        distractors: present objects the caller did not ask for (clutter), a subset of ``objects``.
        seed: the seed it was sampled from, None when built by hand.
    """

    objects: dict[str, ObjectPlacement]
    articulations: dict[str, float] = field(default_factory=lambda: {name: 0.0 for name in ARTICULATIONS})
    distractors: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        for name, placement in self.objects.items():
            if placement.name != name:
                raise ValueError(f"layout key {name!r} holds the placement of {placement.name!r}")
        articulations = {name: 0.0 for name in ARTICULATIONS}
        articulations.update(self.articulations)
        for name, value in articulations.items():
            if name not in ARTICULATIONS:
                raise ValueError(f"unknown articulation {name!r}; the fixtures are {', '.join(ARTICULATIONS)}")
            _, lower, upper = ARTICULATIONS[name]
            if not lower <= value <= upper:
                raise ValueError(f"articulation {name!r}: initial value {value} outside [{lower}, {upper}]")
        object.__setattr__(self, "articulations", articulations)
        missing = [name for name in self.distractors if name not in self.objects]
        if missing:
            raise ValueError(f"distractors {missing} are not among the present objects {sorted(self.objects)}")

    @property
    def present(self) -> tuple[str, ...]:
        """Present object names in :data:`OBJECT_NAMES` order."""
        return tuple(name for name in OBJECT_NAMES if name in self.objects)

    @property
    def absent(self) -> tuple[str, ...]:
        return tuple(name for name in OBJECT_NAMES if name not in self.objects)


def sample_layout(
    seed: int,
    *,
    objects: list[str] | tuple[str, ...] | None = None,
    articulations: dict[str, float] | None = None,
    n_distractors: int | None = None,
) -> KitchenLayout:
    """Sample a layout: non-overlapping poses in the free counter area, colours, distractors.

    Args:
        seed: seeds this call's own ``numpy.random.Generator``; same arguments -> same layout.
        objects: objects that must be present (a task's objects); None: 2 random ones.
        articulations: initial fixture values (drawer m, cabinet rad); fixtures not given start closed.
        n_distractors: extra random objects to add; None: 2 to 4 (as many as there are left).

    Raises:
        ValueError: an unknown object or articulation (the message lists the valid ones), a value out
            of range, or objects that do not fit in the free area.
    """
    rng = np.random.default_rng(seed)
    if objects is None:
        required = [str(name) for name in rng.choice(OBJECT_NAMES, size=2, replace=False)]
    else:
        required = list(dict.fromkeys(objects))
        for name in required:
            _object_index(name)
    others = [name for name in OBJECT_NAMES if name not in required]
    if n_distractors is None:
        n_distractors = int(rng.integers(2, 5))
    if n_distractors < 0:
        raise ValueError(f"n_distractors must be >= 0, got {n_distractors}")
    n_distractors = min(n_distractors, len(others))
    distractors = [str(name) for name in rng.choice(others, size=n_distractors, replace=False)] if others else []
    present = required + distractors
    colors = rng.choice(list(PALETTE), size=len(present), replace=len(present) > len(PALETTE))
    positions = _place(present, rng)
    placements = {
        name: ObjectPlacement(
            name=name, position=positions[name], yaw=float(rng.uniform(-np.pi, np.pi)), color=str(color)
        )
        for name, color in zip(present, colors, strict=True)
    }
    return KitchenLayout(
        objects=placements,
        articulations=dict(articulations or {}),
        distractors=tuple(name for name in OBJECT_NAMES if name in distractors),
        seed=seed,
    )


def _place(
    names: list[str], rng: np.random.Generator, attempts: int = 300, candidates: int = 256
) -> dict[str, NDArray[np.float64]]:
    """Rejection-sample footprint centres, largest objects first; restart when one does not fit."""
    order = sorted(names, key=lambda name: -FOOTPRINT_RADIUS[name])
    for _ in range(attempts):
        centres: NDArray[np.float64] = np.zeros((0, 2))  # (K, 2) m, placed so far
        radii: NDArray[np.float64] = np.zeros(0)  # (K,) m
        for name in order:
            radius = FOOTPRINT_RADIUS[name]
            xy = rng.uniform(  # (candidates, 2)
                [FREE_AREA_X[0] + radius, FREE_AREA_Y[0] + radius],
                [FREE_AREA_X[1] - radius, FREE_AREA_Y[1] - radius],
                size=(candidates, 2),
            )
            clearance = np.linalg.norm(xy[:, None] - centres[None], axis=-1) - radii - radius  # (candidates, K)
            valid = np.flatnonzero(np.all(clearance >= MIN_GAP, axis=1))
            if valid.size == 0:
                break
            centres = np.vstack([centres, xy[valid[0]]])
            radii = np.append(radii, radius)
        else:
            return {name: np.array([x, y, COUNTER_HEIGHT]) for name, (x, y) in zip(order, centres, strict=True)}
    raise ValueError(f"could not fit {names} in the free counter area x {FREE_AREA_X} m, y {FREE_AREA_Y} m")
