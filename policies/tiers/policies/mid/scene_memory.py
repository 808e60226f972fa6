"""Scene memory of the keypoint mid tier: the last estimate of every object and articulated fixture it has seen.

The arm often hides what the next plan needs: after a correction ("move a bit left") or a stop the hand stands
in front of the drawer's handle, and the robot self-filter removes the handle's points with the hand's. The
memory keeps, per named thing, the points of its last estimate in the base frame and the observation time they
were seen at:

* objects: the points of the object's segment (simulator masks, or clusters named by a detector);
* articulated fixtures (drawer, cabinet door): the cloud points the articulation is measured from
  (:meth:`~tiers.policies.mid.affordances.AffordanceDetector.fixture_mask`: the handle bar's tube of a slide,
  the panel's ring about a hinge), so a recalled fixture measures to the same opening.

When the current cloud lacks a thing a subtask needs, :meth:`SceneMemory.fill` puts its remembered points back
into the cloud (an object as its own segment, a fixture as background), and the plan says so ("the drawer's
handle from memory, 5.2 s old"). Memory only fills gaps: what is in view is always taken from the view and
refreshes the memory, and nothing is added when nothing is missing.

A remembered estimate is not used (and, where the cause is lasting, forgotten) when it would be wrong:

* older than ``max_age`` s of observation time (or from the future: a new episode without ``reset``);
* in the hand: an object whose segment was last seen held (at the TCP, fingers not wide open) is forgotten
  (it moves with the hand; a held object is taken from the view only); a remembered object within
  ``touch_distance`` of the TCP with the fingers not wide open, or a fixture's handle there with the fingers
  closed on its bar (under ``bar_grip_opening``), is not recalled: the hand may be moving it;
* seen gone: a depth camera looks past where it was (the measured depth is beyond the remembered points by
  more than ``see_through_margin`` for most of them): it was moved away, not hidden.

Frames and units: base frame, metres, seconds on the observation clock (``Observation.timestamp``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tiers.commands.vocabulary import FixtureName
from tiers.core.config import Config
from tiers.core.observation import Observation
from tiers.policies.mid.affordances import AffordanceDetector
from tiers.policies.mid.perception import BACKGROUND, SceneCloud

ARTICULATED = (FixtureName.DRAWER.value, FixtureName.CABINET.value)


@dataclass
class SceneMemoryConfig(Config):
    """When the mid tier may plan from what it saw earlier."""

    enabled: bool = True  # keep and recall estimates (False: plan from the current view only)
    max_age: float = 30.0  # s of observation time, oldest estimate recalled
    touch_distance: float = 0.09  # m, a remembered thing this close to the TCP with the fingers shut may be moving
    bar_grip_opening: float = 0.03  # m, fingers under this opening at a handle are closed on its bar
    see_through_margin: float = 0.03  # m, depth beyond a remembered point by this much: the camera sees past it
    see_through_fraction: float = 0.5  # of the points a camera can check: seen past by more -> the thing is gone

    def __post_init__(self) -> None:
        if self.max_age < 0:
            raise ValueError(f"max_age must be >= 0 s, got {self.max_age}")
        if not 0 < self.see_through_fraction <= 1:
            raise ValueError(f"see_through_fraction must be in (0, 1], got {self.see_through_fraction}")


@dataclass(frozen=True)
class Remembered:
    """The last estimate of one thing.

    Attributes:
        name: the object's or fixture's name.
        points: (M, 3) float64 m, base frame.
        colors: (M, 3) float64 RGB in [0, 1].
        timestamp: s, observation time it was seen at.
        fixture: True for an articulated fixture (background points), False for an object (a segment).
    """

    name: str
    points: NDArray[np.float64]
    colors: NDArray[np.float64]
    timestamp: float
    fixture: bool


@dataclass(frozen=True)
class Recall:
    """What :meth:`SceneMemory.fill` did for a plan.

    Attributes:
        cloud: the current cloud with the recalled things added (the same object when nothing was added).
        used: one note per recalled thing, e.g. "the drawer's handle from memory, 5.2 s old".
        refused: one note per missing thing memory could not give, and why (too old, in the hand, gone).
    """

    cloud: SceneCloud
    used: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


class SceneMemory:
    """Per-thing last estimates (see the module docstring); one episode long (:meth:`reset`)."""

    def __init__(self, config: SceneMemoryConfig | None = None, *, max_opening: float = 0.08):
        """
        Args:
            config: settings.
            max_opening: m, the gripper's widest opening (fingers above ``max_opening - 4 mm`` are wide open).
        """
        self.config = config or SceneMemoryConfig()
        self.max_opening = max_opening
        self.things: dict[str, Remembered] = {}

    def reset(self) -> None:
        """Forget everything (a new episode)."""
        self.things.clear()

    def update(
        self, cloud: SceneCloud, observation: Observation, detector: AffordanceDetector, *, held: set[str]
    ) -> None:
        """Remember what ``cloud`` shows: every named object segment with enough points (those in ``held``
        forgotten instead) and every articulated fixture whose opening it measures."""
        if not self.config.enabled:
            return
        now = float(observation.timestamp)
        for name in set(cloud.names.values()):
            if name.startswith("cluster_"):  # anonymous clusters are renumbered every frame
                continue
            if name in held:
                self.things.pop(name, None)
                continue
            ids = [index for index, value in cloud.names.items() if value == name]
            mask = np.isin(cloud.labels, ids)
            if np.count_nonzero(mask) >= detector.config.min_points:
                self.things[name] = Remembered(name, cloud.points[mask], cloud.colors[mask], now, fixture=False)
        for name in ARTICULATED:
            if detector.articulation(name, cloud) is None:
                continue
            mask = detector.fixture_mask(name, cloud)
            self.things[name] = Remembered(name, cloud.points[mask], cloud.colors[mask], now, fixture=True)

    def fill(
        self, cloud: SceneCloud, observation: Observation, detector: AffordanceDetector, needed: list[str]
    ) -> Recall:
        """``cloud`` with the remembered estimates of the ``needed`` things it lacks (see the module docstring)."""
        if not self.config.enabled:
            return Recall(cloud)
        used: list[str] = []
        refused: list[str] = []
        points, colors, labels = [cloud.points], [cloud.colors], [cloud.labels]
        names = dict(cloud.names)
        for name in dict.fromkeys(needed):
            if not self._missing(name, cloud, detector):
                continue
            thing = self.things.get(name)
            if thing is None:
                continue
            what = f"the {name}'s handle" if thing.fixture else f"the {name}"
            age = float(observation.timestamp) - thing.timestamp
            why = self._unusable(thing, age, observation)
            if why:
                refused.append(f"{what} not recalled: {why}")
                if not why.startswith("the hand"):  # too old or gone for good; the hand may let go again
                    self.things.pop(name)
                continue
            points.append(thing.points)
            colors.append(thing.colors)
            if thing.fixture:
                labels.append(np.full(len(thing.points), BACKGROUND, dtype=np.int32))
            else:
                label = max(names, default=-1) + 1
                names[label] = name
                labels.append(np.full(len(thing.points), label, dtype=np.int32))
            used.append(f"{what} from memory, {age:.1f} s old")
        if not used:
            return Recall(cloud, (), tuple(refused))
        filled = SceneCloud(
            np.concatenate(points), np.concatenate(colors), np.concatenate(labels).astype(np.int32), names,
            cloud.source, cloud.support_height, cloud.frame,
        )  # fmt: skip
        return Recall(filled, tuple(used), tuple(refused))

    @staticmethod
    def _missing(name: str, cloud: SceneCloud, detector: AffordanceDetector) -> bool:
        """Whether the current cloud lacks what the detector needs of ``name``."""
        if name in ARTICULATED:
            return detector.articulation(name, cloud) is None
        return len(cloud.segment(name)) < detector.config.min_points

    def _unusable(self, thing: Remembered, age: float, observation: Observation) -> str:
        """Why ``thing`` must not stand in for the view now ("" when it may)."""
        config = self.config
        if age < 0:
            return f"seen at {thing.timestamp:.1f} s, after this observation ({observation.timestamp:.1f} s)"
        if age > config.max_age:
            return f"last seen {age:.1f} s ago, memory keeps {config.max_age:.0f} s"
        # fingers closing at the thing: the hand may be carrying or pulling it
        opening = float(observation.gripper_opening)
        shut = opening < config.bar_grip_opening if thing.fixture else opening <= self.max_opening - 0.004
        if shut and len(thing.points):
            nearest = float(np.min(np.linalg.norm(thing.points - observation.ee_pose[:3], axis=1)))
            if nearest < config.touch_distance:
                return f"the hand is at it with the fingers shut ({nearest * 100:.0f} cm): it may be moving"
        seen_past = self._seen_past(thing.points, observation)
        if seen_past is not None:
            return f"the {seen_past} camera sees past where it was: it has moved"
        return ""

    def _seen_past(self, points: NDArray[np.float64], observation: Observation) -> str | None:
        """The name of a depth camera that sees past most of ``points`` (M, 3), or None."""
        config = self.config
        for name, depth in observation.depths.items():
            camera = observation.cameras.get(name)
            if camera is None or len(points) == 0:
                continue
            camera_from_base = np.linalg.inv(camera.base_from_camera)
            optical = points @ camera_from_base[:3, :3].T + camera_from_base[:3, 3]
            z = optical[:, 2]
            front = z > 1e-3
            k = camera.intrinsics
            u = np.rint(optical[front, 0] / z[front] * k[0, 0] + k[0, 2]).astype(int)
            v = np.rint(optical[front, 1] / z[front] * k[1, 1] + k[1, 2]).astype(int)
            rows, cols = depth.shape
            inside = (u >= 0) & (u < cols) & (v >= 0) & (v < rows)
            if not np.any(inside):
                continue
            measured = depth[v[inside], u[inside]].astype(np.float64)
            expected = z[front][inside]
            valid = np.isfinite(measured) & (measured > 0)
            if np.count_nonzero(valid) < 0.5 * len(expected):
                continue
            # no return counts as seeing past (nothing there within range)
            past = ~valid | (measured > expected + config.see_through_margin)
            if np.count_nonzero(past) > config.see_through_fraction * len(expected):
                return name
        return None
