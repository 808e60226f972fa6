"""SceneState: a simulator-independent snapshot of the privileged state of a scene.

Success predicates, the scripted expert and the simulated corrector read a ``SceneState``; every
backend (MuJoCo, Isaac Sim) produces one, so task logic is written once. Never available on a real robot.

Frame: the robot base frame (``panda_link0``), which the kitchen places at the world origin, x pointing
away from the robot over the counter, z up. Positions in metres, quaternions (w, x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in the base frame. ``low`` and ``high``: (3,) m corners, low <= high."""

    low: NDArray[np.float64]
    high: NDArray[np.float64]

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float64)
        high = np.asarray(self.high, dtype=np.float64)
        # ndarray.any, not np.any: this runs ~10 times per control step (success check) and np.any's
        # dispatch costs more than the comparison
        if low.shape != (3,) or high.shape != (3,) or (low > high).any():
            raise ValueError(f"Box needs (3,) corners with low <= high, got {low} and {high}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def many(cls, lows: NDArray[np.float64], highs: NDArray[np.float64]) -> list[Box]:
        """Boxes from (N, 3) corner rows, validated all at once (a backend builds ~10 every control step, and
        validating them one by one costs more than building them)."""
        lows, highs = np.asarray(lows, dtype=np.float64), np.asarray(highs, dtype=np.float64)
        if lows.ndim != 2 or lows.shape[1:] != (3,) or highs.shape != lows.shape or (lows > highs).any():
            raise ValueError(f"Box.many needs (N, 3) corners with low <= high, got {lows} and {highs}")
        boxes = []
        for low, high in zip(lows, highs, strict=True):
            box = object.__new__(cls)
            object.__setattr__(box, "low", low)
            object.__setattr__(box, "high", high)
            boxes.append(box)
        return boxes

    @property
    def center(self) -> NDArray[np.float64]:
        center: NDArray[np.float64] = (self.low + self.high) / 2
        return center

    @property
    def size(self) -> NDArray[np.float64]:
        size: NDArray[np.float64] = self.high - self.low
        return size

    def contains(self, point: NDArray[np.float64], margin: float = 0.0) -> bool:
        """Whether ``point`` (3,) lies inside the box grown by ``margin`` m on every side."""
        return bool((point >= self.low - margin).all() and (point <= self.high + margin).all())


@dataclass(frozen=True)
class ObjectState:
    """A movable object.

    Attributes:
        name: unique in the scene ("apple", "cup").
        category: what it is, for language ("apple", "cup", "bowl"); equal to ``name`` unless duplicated.
        color: colour word of this episode's appearance ("red").
        position: (3,) m, centre of the object's body frame.
        quaternion: (4,) wxyz.
        bounds: axis-aligned bounds of the object's collision geometry.
    """

    name: str
    category: str
    color: str
    position: NDArray[np.float64]
    quaternion: NDArray[np.float64]
    bounds: Box


@dataclass(frozen=True)
class ArticulationState:
    """An articulated fixture (drawer: slide joint in m; cabinet door: hinge in rad)."""

    name: str
    joint_position: float
    lower: float
    upper: float

    @property
    def opening(self) -> float:
        """0 = closed, 1 = fully open."""
        return float(np.clip((self.joint_position - self.lower) / (self.upper - self.lower), 0.0, 1.0))


@dataclass(frozen=True)
class SceneState:
    """Privileged snapshot of a scene at ``time`` s.

    Attributes:
        objects: name -> movable object.
        articulations: name -> articulated fixture ("drawer", "cabinet").
        regions: name -> interior volume of a fixture where objects can be put, at its current
            configuration ("drawer" moves with the drawer, "cabinet", "sink", "shelf", "counter" is the slab
            just above the counter top).
        ee_position: (3,) m, tool centre point.
        gripper_opening: m.
        grasped: name of the object held between the fingers, or None.
    """

    time: float
    objects: dict[str, ObjectState]
    articulations: dict[str, ArticulationState]
    regions: dict[str, Box]
    ee_position: NDArray[np.float64]
    gripper_opening: float
    grasped: str | None = None
    extras: dict[str, float] = field(default_factory=dict)
