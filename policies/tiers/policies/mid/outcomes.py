"""Subtask outcomes: did a command achieve its effect, judged from what the robot senses.

After a subtask command ends, the hierarchy runtime asks :class:`OutcomeChecker` whether its effect holds,
from the observation alone (RGB-D + segmentation fused into the mid tier's :class:`SceneCloud`, the gripper
opening, the TCP pose) and never from the simulator's state:

=====================  ===================================================================================
subtask                effect sensed
=====================  ===================================================================================
pick up the X          the fingers are neither shut on nothing nor wide open, X's nearest point is within
                       ``held_distance`` of the TCP (between the fingers) and X's bottom is off the support
open/close the F       F's joint value measured in the cloud (the handle bar for the drawer, the panel for
                       the cabinet door, :meth:`AffordanceDetector.articulation`) as a fraction of its range:
                       at least ``open_fraction`` / at most ``closed_fraction``
put the X R the T      X is out of the hand and its centre lies in T's region (a fixture's interior or
                       region box from the fixture map, the drawer's moved with its measured opening), on
                       or in T's footprint (containers, stacks), or beside T in the relation's direction
push the X D           X's centre moved at least ``push_distance`` along D since the command began
=====================  ===================================================================================

Each check returns a :class:`SubtaskOutcome`: achieved, failed (with the reason, worded like the mid
tier's: a place that left the object elsewhere ends "it is not in the hand: pick it up first"), or unknown when the
cameras cannot tell (the object or the handle is hidden, e.g. by the arm, or the cloud is empty). The
open/closed and push thresholds are the kitchen's success predicates' own (:mod:`tiers.commands.effects`:
open at >= 80 %, closed at <= 5 % of the range, pushed >= 8 cm: a push sensed short of it is pushed again);
the others mirror the predicates with a small margin for perception. The checker uses the mid tier's own
cloud builder and fixture map (:meth:`OutcomeChecker.for_mid`), so it sees exactly what the mid tier plans
from.

Frames and units: base frame, metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tiers.commands.effects import CLOSED_FRACTION, OPEN_FRACTION, PUSH_DISTANCE
from tiers.commands.subtasks import Action, Subtask, SubtaskError
from tiers.commands.vocabulary import (
    FIXTURES,
    OBJECTS,
    PUSH_VECTORS,
    RELATION_TEXT,
    RELATION_VECTORS,
    FixtureName,
    ObjectName,
    Relation,
)
from tiers.core.config import Config
from tiers.core.observation import Observation

if TYPE_CHECKING:  # perception imports torch; the runtime that imports this module stays torch-free
    from tiers.policies.mid.affordances import AffordanceDetector, Articulated
    from tiers.policies.mid.cluster_naming import ClusterNamer
    from tiers.policies.mid.perception import PointCloudBuilder, SceneCloud


class OutcomeStatus(StrEnum):
    ACHIEVED = "achieved"  # the effect is sensed
    FAILED = "failed"  # the effect is sensed not to hold
    UNKNOWN = "unknown"  # the sensors cannot tell (occluded, empty cloud, nothing to measure)


@dataclass(frozen=True)
class SubtaskOutcome:
    """Whether a subtask's effect holds, and why (one line for the runtime's events)."""

    status: OutcomeStatus
    reason: str

    @property
    def achieved(self) -> bool:
        return self.status is OutcomeStatus.ACHIEVED

    @property
    def failed(self) -> bool:
        return self.status is OutcomeStatus.FAILED

    def __str__(self) -> str:
        return f"{self.status.value}: {self.reason}"


@dataclass
class OutcomeConfig(Config):
    """Thresholds of the effect checks (metres unless noted)."""

    held_distance: float = 0.06  # an object whose nearest point is this close to the TCP is between the fingers
    empty_grip: float = 0.004  # a gripper opening at or below this closed on nothing
    open_grip_margin: float = 0.004  # an opening within this of the widest is a released (empty) hand
    lifted: float = 0.015  # a held object's bottom is at least this above the support
    # the kitchen's success predicates (predicates.is_open / is_closed) read the same two numbers: a fixture sensed
    # open or closed here is scored so (no perception margin: a reading a few mm off is retried, not excused)
    open_fraction: float = OPEN_FRACTION  # a fixture at least this open (fraction of its range) is open
    closed_fraction: float = CLOSED_FRACTION  # ... at most this open is closed
    region_margin: float = 0.02  # an object's centre may stick out of a region or footprint by this much
    near_gap: float = 0.15  # max horizontal gap between footprints for "next to" and the directional relations
    push_distance: float = PUSH_DISTANCE  # m, least displacement along the push direction (as the task's)
    min_points: int = 8  # fewest points of a segment to measure it


class PerceivingMid:
    """What :meth:`OutcomeChecker.for_mid` reads of a mid tier (``KeypointPathPlanner``): duck-typed."""

    builder: PointCloudBuilder
    detector: AffordanceDetector
    embodiment: Any


@dataclass
class _Start:
    """An object's centre (3,) when a push began."""

    subtask: str
    centre: NDArray[np.float64] | None = None


class OutcomeChecker:
    """Subtask text + observation -> :class:`SubtaskOutcome` (see the module table)."""

    def __init__(
        self,
        builder: PointCloudBuilder,
        detector: AffordanceDetector,
        *,
        max_opening: float,
        config: OutcomeConfig | None = None,
        namer: ClusterNamer | None = None,
    ) -> None:
        """
        Args:
            builder: the mid tier's cloud builder (same cameras, crop, self-filter and segmentation).
            detector: the mid tier's affordance detector (its fixture map and articulation measurement).
            max_opening: m, the gripper's widest opening.
            config: thresholds.
            namer: the mid tier's cluster namer, which names the clusters of a cloud without masks (None: they stay
                anonymous).
        """
        self.builder = builder
        self.namer = namer
        self.detector = detector
        self.max_opening = float(max_opening)
        self.config = config or OutcomeConfig()
        self._start: _Start | None = None
        self.last_cloud: SceneCloud | None = None  # the cloud of the last check, for reports and tests

    @classmethod
    def for_mid(cls, mid: object, config: OutcomeConfig | None = None) -> OutcomeChecker | None:
        """A checker seeing what ``mid`` sees (a mid tier with ``builder``, ``detector`` and ``embodiment``,
        e.g. ``KeypointPathPlanner``), or None for a mid tier without RGB-D perception (nothing to check with)."""
        builder = getattr(mid, "builder", None)
        detector = getattr(mid, "detector", None)
        embodiment = getattr(mid, "embodiment", None)
        if builder is None or detector is None or embodiment is None:
            return None
        namer = getattr(mid, "namer", None)
        return cls(builder, detector, max_opening=embodiment.gripper.max_opening, config=config, namer=namer)

    def reset(self) -> None:
        self._start = None
        self.last_cloud = None

    def begin(self, text: str, observation: Observation, cloud: SceneCloud | None = None) -> None:
        """Note what a command's check compares against when it starts (a pushed object's start position).

        ``cloud``: the mid tier's cloud of this observation when it has one (saves building it again). A
        command restarted with the same text (a retry, a re-plan) keeps the first start.
        """
        if self._start is not None and self._start.subtask == text:
            return
        self._start = _Start(text)
        subtask = _parse(text)
        if subtask is None or subtask.action is not Action.PUSH:
            return
        cloud = cloud if cloud is not None else self._cloud(observation)
        points = cloud.segment(subtask.object)
        if len(points) >= self.config.min_points:
            self._start.centre = _centre(points)

    def check(self, text: str, observation: Observation) -> SubtaskOutcome:
        """Whether the subtask ``text`` achieved its effect in ``observation``."""
        subtask = _parse(text)
        if subtask is None:
            return SubtaskOutcome(OutcomeStatus.UNKNOWN, f"{text!r} is not a kitchen subtask: no effect to check")
        cloud = self._cloud(observation)
        self.last_cloud = cloud
        if len(cloud) == 0:
            return SubtaskOutcome(OutcomeStatus.UNKNOWN, "the point cloud is empty (no valid depth in any camera)")
        if subtask.action is Action.PICK:
            return self._picked(subtask.object, cloud, observation)
        if subtask.action in (Action.OPEN, Action.CLOSE):
            return self._articulated(subtask.object, subtask.action is Action.OPEN, cloud)
        if subtask.action is Action.PUSH:
            return self._pushed(subtask, cloud)
        return self._placed(subtask, cloud, observation)

    # -- checks -----------------------------------------------------------------------------------------

    def _cloud(self, observation: Observation) -> SceneCloud:
        cloud = self.builder.build(observation)
        if len(cloud) and cloud.source != "masks":  # as the mid tier does without masks: clusters named by class
            cloud = self.builder.cluster(cloud)
            if self.namer is not None:
                cloud = self.namer.name(cloud, observation)
        return cloud

    def held(self, name: str, cloud: SceneCloud, observation: Observation) -> tuple[bool, str]:
        """(whether ``name`` is in the hand, what was measured)."""
        config = self.config
        opening = float(observation.gripper_opening)
        if opening <= config.empty_grip:
            return False, f"the fingers closed on nothing (opening {opening * 1000:.0f} mm)"
        if opening >= self.max_opening - config.open_grip_margin:
            return False, f"the gripper is open ({opening * 1000:.0f} mm)"
        points = cloud.segment(name)
        if len(points) < config.min_points:
            return False, f"the {name} is not in view"
        nearest = float(np.min(np.linalg.norm(points - observation.ee_pose[:3], axis=1)))
        if nearest > config.held_distance:
            return False, f"the {name} is {nearest * 100:.0f} cm from the fingers"
        return (
            True,
            f"the {name} is between the fingers ({nearest * 1000:.0f} mm from the TCP, {opening * 1000:.0f} mm open)",
        )

    def _picked(self, name: str, cloud: SceneCloud, observation: Observation) -> SubtaskOutcome:
        held, measured = self.held(name, cloud, observation)
        if not held:
            if measured.endswith("not in view") and observation.gripper_opening > self.config.empty_grip:
                return SubtaskOutcome(OutcomeStatus.UNKNOWN, f"{measured}: cannot tell whether it is held")
            return SubtaskOutcome(OutcomeStatus.FAILED, f"the {name} is not in the hand: {measured}")
        lift = float(cloud.segment(name)[:, 2].min()) - cloud.support_height
        if lift < self.config.lifted:
            return SubtaskOutcome(OutcomeStatus.FAILED, f"the {name} is not in the hand: {measured} but not lifted")
        return SubtaskOutcome(OutcomeStatus.ACHIEVED, f"{measured}, lifted {lift * 100:.0f} cm")

    def _fixture(self, name: str) -> Articulated:
        fixtures = self.detector.fixtures
        return fixtures.drawer if name == FixtureName.DRAWER else fixtures.cabinet

    def _fraction(self, name: str, cloud: SceneCloud) -> float | None:
        """How far ``name`` is open (0 closed .. 1 fully open) in ``cloud``, None when it cannot be measured."""
        value = self.detector.articulation(name, cloud)
        if value is None:
            return None
        fixture = self._fixture(name)
        return (value - fixture.lower) / (fixture.upper - fixture.lower)

    def _articulated(self, name: str, opening: bool, cloud: SceneCloud) -> SubtaskOutcome:
        if name not in (FixtureName.DRAWER, FixtureName.CABINET):
            return SubtaskOutcome(OutcomeStatus.UNKNOWN, f"the {name} does not open or close")
        fraction = self._fraction(name, cloud)
        if fraction is None:
            return SubtaskOutcome(OutcomeStatus.UNKNOWN, f"the {name}'s handle is not in view of any depth camera")
        measured = f"the {name} is {fraction * 100:.0f}% open"
        if opening:
            ok = fraction >= self.config.open_fraction
            goal = f"at least {self.config.open_fraction * 100:.0f}%"
        else:
            ok = fraction <= self.config.closed_fraction
            goal = f"at most {self.config.closed_fraction * 100:.0f}%"
        if ok:
            return SubtaskOutcome(OutcomeStatus.ACHIEVED, measured)
        return SubtaskOutcome(OutcomeStatus.FAILED, f"{measured} (needs {goal})")

    def _pushed(self, subtask: Subtask, cloud: SceneCloud) -> SubtaskOutcome:
        assert subtask.direction is not None
        name = subtask.object
        points = cloud.segment(name)
        start = self._start.centre if self._start is not None and self._start.subtask == subtask.text else None
        if len(points) < self.config.min_points or start is None:
            return SubtaskOutcome(OutcomeStatus.UNKNOWN, f"the {name} was not in view before and after the push")
        unit = np.asarray(PUSH_VECTORS[subtask.direction], dtype=np.float64)
        unit = unit / np.linalg.norm(unit)
        moved = float((_centre(points) - start)[:2] @ unit[:2])
        measured = f"the {name} moved {moved * 100:.0f} cm {subtask.direction.value}"
        if moved >= self.config.push_distance:
            return SubtaskOutcome(OutcomeStatus.ACHIEVED, measured)
        return SubtaskOutcome(OutcomeStatus.FAILED, f"{measured} (needs {self.config.push_distance * 100:.0f} cm)")

    def _placed(self, subtask: Subtask, cloud: SceneCloud, observation: Observation) -> SubtaskOutcome:
        assert subtask.target is not None and subtask.relation is not None
        name, target, relation = subtask.object, subtask.target, subtask.relation
        held, measured = self.held(name, cloud, observation)
        if held:
            return SubtaskOutcome(OutcomeStatus.FAILED, f"the {name} is still in the hand ({measured})")
        points = cloud.segment(name)
        if len(points) < self.config.min_points:
            return SubtaskOutcome(OutcomeStatus.UNKNOWN, f"the {name} is not in view: cannot tell where it is")
        centre = _centre(points)
        if target in FIXTURES:
            inside = self._in_fixture(centre, target, cloud)
            if inside is None:
                return SubtaskOutcome(OutcomeStatus.UNKNOWN, f"the {target} has no region the cameras can check")
            where, ok = inside
        elif target in OBJECTS:
            found = self._by_object(points, centre, target, relation, cloud)
            if found is None:
                return SubtaskOutcome(OutcomeStatus.UNKNOWN, f"the {target} is not in view: cannot tell")
            where, ok = found
        else:
            return SubtaskOutcome(OutcomeStatus.UNKNOWN, f"no region for {target!r}")
        if ok:
            return SubtaskOutcome(OutcomeStatus.ACHIEVED, f"the {name} is {where}")
        # worded like the mid tier's refusal, so a planner knows the object must be picked up again
        return SubtaskOutcome(OutcomeStatus.FAILED, f"the {name} is {where}; it is not in the hand: pick it up first")

    def _in_fixture(self, centre: NDArray[np.float64], target: str, cloud: SceneCloud) -> tuple[str, bool] | None:
        """(where the centre is relative to ``target``'s region, whether inside) or None without a region."""
        fixtures = self.detector.fixtures
        margin = self.config.region_margin
        if target in (FixtureName.DRAWER, FixtureName.CABINET):
            fixture = self._fixture(target)
            box_centre, half = fixture.interior_center.copy(), fixture.interior_half
            if fixture.pivot is None:  # the drawer's interior slides with it: use its measured opening
                value = self.detector.articulation(target, cloud)
                if value is None:
                    value = fixture.upper  # hidden handle: test the drawer where it is when open
                box_centre = box_centre + value * fixture.axis
        elif target in fixtures.regions:
            box_centre, half = fixtures.regions[target]
        else:
            return None
        outside = np.maximum(np.abs(centre - box_centre) - half, 0.0)
        outside[2] = max(outside[2] - 0.05, 0.0)  # a region's box is thin: an object's centre stands above it
        distance = float(np.max(outside[:2]))
        if distance <= margin and outside[2] <= margin:
            return f"in the {target}'s region", True
        return f"outside the {target}'s region by {max(distance, float(outside[2])) * 100:.0f} cm", False

    def _by_object(
        self,
        points: NDArray[np.float64],
        centre: NDArray[np.float64],
        target: str,
        relation: Relation,
        cloud: SceneCloud,
    ) -> tuple[str, bool] | None:
        """(where the object is relative to the ``target`` object, whether ``relation`` holds) or None."""
        anchor = cloud.segment(target)
        if len(anchor) < self.config.min_points:
            return None
        margin = self.config.region_margin
        low, high = anchor.min(axis=0), anchor.max(axis=0)
        if relation in (Relation.IN, Relation.ON):
            over = bool(np.all(centre[:2] >= low[:2] - margin) and np.all(centre[:2] <= high[:2] + margin))
            above = float(points[:, 2].min()) > low[2] + 0.003
            if over and above:
                word = "in" if OBJECTS[ObjectName(target)].container else "on"
                return f"{word} the {target}", True
            gap = float(np.linalg.norm(np.maximum(np.maximum(low[:2] - centre[:2], centre[:2] - high[:2]), 0.0)))
            return f"{gap * 100:.0f} cm off the {target}'s footprint", False
        offset = (centre - _centre(anchor))[:2]
        gap = _footprint_gap(points, anchor)
        if gap > self.config.near_gap:
            return f"{gap * 100:.0f} cm from the {target}", False
        if relation is Relation.NEXT_TO:
            return f"next to the {target} ({gap * 100:.0f} cm apart)", True
        unit = np.asarray(RELATION_VECTORS[relation], dtype=np.float64)[:2]
        unit = unit / np.linalg.norm(unit)
        along = float(offset @ unit)
        across = abs(float(offset @ np.array([-unit[1], unit[0]])))
        side = RELATION_TEXT[relation]
        if along > 0 and across <= along:
            return f"{side} the {target}", True
        return f"not {side} the {target} ({along * 100:.0f} cm along, {across * 100:.0f} cm across)", False


def _parse(text: str) -> Subtask | None:
    try:
        return Subtask.parse(text)
    except SubtaskError:
        return None


def _centre(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """(3,) the centre of a segment's bounding box (a partly seen object's mean drifts toward the camera)."""
    centre: NDArray[np.float64] = 0.5 * (points.min(axis=0) + points.max(axis=0))
    return centre


def _footprint_gap(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """m, horizontal gap between two segments' axis-aligned footprints (0 when they overlap)."""
    low = np.maximum(a[:, :2].min(axis=0), b[:, :2].min(axis=0))
    high = np.minimum(a[:, :2].max(axis=0), b[:, :2].max(axis=0))
    return float(np.linalg.norm(np.maximum(low - high, 0.0)))
