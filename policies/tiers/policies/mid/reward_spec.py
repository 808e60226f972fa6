"""Staged VLS rewards as plain data: the reward-building API, its validation, and the one spec -> Guidance builder.

Templates (:mod:`tiers.policies.mid.language_rewards`) and programs written by a language model
(:mod:`tiers.policies.mid.llm_rewards`) describe staged rewards through the same API, a
:class:`RewardRecorder`. Its methods take and return plain data only (numbers, strings, lists), because an LLM
program runs in the shared sandbox (:func:`~tiers.services.sandbox.run_sandboxed`), where a torch
closure cannot exist: each call crosses as JSON, runs here, is validated at once and recorded, and the program
gets back a term id (an int) to list in a stage. Only after the program has finished does
:func:`build_staged` turn the recorded :class:`RewardSpec` into real reward terms of
:mod:`tiers.policies.mid.rewards`, inside a :class:`~tiers.policies.mid.steering.StagedGuidance`::

    api = RewardRecorder(affordance, cloud=cloud, max_opening=0.08)
    down = api.keep_down()                                       # 0
    api.stage("grasp", [api.reach("point"), api.gripper(0.0), down])
    staged = build_staged(api.spec(), fk)                        # StagedGuidance, one stage "grasp"

API (base frame: x away from the robot, y to its left, z up; m):

===============================================  ============================================================
``scene_info()``                                 the affordance (kind, target, keypoints, approach,
                                                 motion, opening), ``max_opening``, ``support_height``,
                                                 the names of the point sets
``keypoint(name)``                               [x, y, z] of a named keypoint (:func:`affordance_keypoints`)
``reach(point, weight, at)``                     -> id: :func:`~tiers.policies.mid.rewards.reach_keypoint`
``keep_clear(what, margin, weight)``             -> id: a point set by name (``keep_clear_of_points``) or
                                                 a box [[x0, y0, z0], [x1, y1, z1]] (``keep_out_of_region``)
``stay_above(height, margin, weight)``           -> id: ``stay_above_surface``
``keep_down(weight)``                            -> id: ``keep_orientation`` (tool axis pointing down)
``gripper(opening, weight)``                     -> id: ``gripper_command``
``stage(name, terms, enter, fallback, target)``  -> index: the next stage; done within ``enter`` m of
                                                 ``target`` (default: the point of its first reach term)
===============================================  ============================================================

Every argument is checked where it arrives; a bad one raises :class:`RewardSpecError` naming the function, the
field and the value (an unknown keypoint or point set lists the valid names). In the sandbox the program sees
it as ``ApiError``; the functions of :meth:`RewardRecorder.api` also keep it in
:attr:`RewardRecorder.failures`, so a program that swallows the error still yields no rewards.
:meth:`RewardRecorder.spec` checks the whole: at least one stage, every term in a stage.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.errors import TiersError
from tiers.core.guidance import Guidance
from tiers.policies.mid.affordances import Affordance, AffordanceKind, rotate_about
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.perception import SceneCloud
from tiers.policies.mid.rewards import (
    gripper_command,
    keep_clear_of_points,
    keep_orientation,
    keep_out_of_region,
    reach_keypoint,
    stay_above_surface,
)
from tiers.policies.mid.steering import Stage, StagedGuidance, distance_to

Vector = NDArray[np.float64]

APPROACH_HEIGHT = 0.08  # m, the approach starts this far back along the approach direction from the keypoint
LIFT_HEIGHT = 0.12  # m, rise after a grasp or a release
ENTER = 0.02  # m, default: a stage is complete within this distance of its target
OBSTACLE_BOX_MARGIN = 0.015  # m, points this close to the target's bounds belong to the target, not obstacles

# defaults of the term kinds (the templates' weights)
REACH_WEIGHT = 10.0
CLEARANCE_WEIGHT = 100.0
ORIENTATION_WEIGHT = 1.0
GRIPPER_WEIGHT = 10.0
POINTS_MARGIN = 0.04  # m, keep_clear of a point set
REGION_MARGIN = 0.02  # m, keep_clear of a box
SURFACE_MARGIN = 0.01  # m, stay_above

# bounds of what a spec may hold: generous for any sensible reward, tight enough to stop runaway programs
MAX_WEIGHT = 1000.0
MAX_MARGIN = 0.2  # m
MAX_ENTER = 0.2  # m
MAX_EXIT = 1.0  # m
WORKSPACE_LIMIT = 2.0  # m, |x|, |y|, |z| of any point or height (the arm reaches under 1 m)
MAX_TERMS = 32
MAX_STAGES = 8
MAX_TERMS_PER_STAGE = 12
MAX_NAME_CHARS = 40

KEYPOINT_MEANING = {
    "point": "the keypoint: the tool centre at contact (grasp, handle, push) or the held object's bottom centre "
    "at release (place)",
    "approach_start": f"{APPROACH_HEIGHT} m back from point along the approach direction (pre-grasp / pre-place)",
    "lifted": f"{LIFT_HEIGHT} m above point (after a grasp or a release)",
    "motion_end": "where point ends after the pull, push or swing of the affordance",
}


class RewardSource(StrEnum):
    """Who writes the staged VLS rewards of a subtask."""

    TEMPLATES = "templates"  # language_rewards: one template per subtask verb (offline, deterministic)
    LLM = "llm"  # llm_rewards: a language model's program, run in the shared sandbox


class RewardSpecError(TiersError):
    """A reward-API call or a whole spec is invalid; the message names the function, the field and the value."""


class TermKind(StrEnum):
    REACH = "reach"
    KEEP_CLEAR = "keep_clear"  # of a point set
    KEEP_OUT = "keep_out"  # of a box (``keep_clear`` with a box)
    STAY_ABOVE = "stay_above"
    KEEP_DOWN = "keep_down"
    GRIPPER = "gripper"


@dataclass(frozen=True)
class TermSpec:
    """One validated reward term as data (base frame, m); the fields its ``kind`` does not use stay None.

    Attributes:
        kind: which library reward it becomes.
        weight: the term's weight, in (0, MAX_WEIGHT].
        point: (3,) REACH target.
        at: REACH: "last" (the chunk's last step) or "closest" (any step).
        points: (M, 3) KEEP_CLEAR obstacle points; ``label`` is the point set's name.
        low, high: (3,) KEEP_OUT box corners.
        margin: m, clearance of KEEP_CLEAR / KEEP_OUT / STAY_ABOVE.
        height: m, STAY_ABOVE surface height.
        opening: m, GRIPPER finger opening.
    """

    kind: TermKind
    weight: float
    point: Vector | None = None
    at: str = "last"
    points: Vector | None = None
    label: str = ""
    low: Vector | None = None
    high: Vector | None = None
    margin: float = 0.0
    height: float = 0.0
    opening: float = 0.0


@dataclass(frozen=True)
class StageSpec:
    """One stage as data: its terms (indices into :attr:`RewardSpec.terms`), completion target (3,) and the
    hysteresis thresholds (m; ``exit`` inf: never fall back), as in :class:`~tiers.policies.mid.steering.Stage`."""

    name: str
    terms: tuple[int, ...]
    target: Vector
    enter: float
    exit: float = math.inf


@dataclass(frozen=True)
class RewardSpec:
    """A validated staged reward: terms (shared between stages by index) and the stages in order."""

    terms: tuple[TermSpec, ...]
    stages: tuple[StageSpec, ...]


def affordance_keypoints(affordance: Affordance) -> dict[str, Vector]:
    """Named keypoints (3,) of an affordance, base frame (meanings in :data:`KEYPOINT_MEANING`).

    ``motion_end`` exists for HANDLE (the end of the pull, or of the swing about the hinge) and PUSH only.
    """
    point = np.asarray(affordance.point, dtype=np.float64)
    keypoints = {
        "point": point,
        "approach_start": point - affordance.approach * APPROACH_HEIGHT,
        "lifted": point + np.array([0.0, 0.0, LIFT_HEIGHT]),
    }
    if affordance.kind is AffordanceKind.HANDLE:
        if affordance.pivot is not None:
            keypoints["motion_end"] = rotate_about(point, affordance.pivot, affordance.sweep)
        else:
            keypoints["motion_end"] = point + affordance.motion
    elif affordance.kind is AffordanceKind.PUSH:
        keypoints["motion_end"] = point + affordance.motion
    return keypoints


def point_sets(affordance: Affordance, cloud: SceneCloud | None) -> dict[str, Vector]:
    """Named (M, 3) point sets of the scene a term may keep clear of: each segment of the cloud, and
    ``"obstacles"``: every point above the support (by 1 cm) outside the target's bounds (grown by
    :data:`OBSTACLE_BOX_MARGIN`). Empty without a cloud."""
    if cloud is None or not len(cloud):
        return {}
    sets = {name: cloud.segment(name) for name in cloud.segment_names}
    low, high = affordance.low - OBSTACLE_BOX_MARGIN, affordance.high + OBSTACLE_BOX_MARGIN
    inside = np.all((cloud.points >= low) & (cloud.points <= high), axis=1)
    sets["obstacles"] = cloud.points[~inside & (cloud.points[:, 2] > cloud.support_height + 0.01)]
    return sets


class RewardRecorder:
    """The reward-building API: validates and records calls into a :class:`RewardSpec` (module docstring).

    Attributes:
        affordance: the subtask's keypoint affordance.
        max_opening: m, the gripper's full opening.
        keypoints: name -> (3,) point (:func:`affordance_keypoints`).
        point_sets: name -> (M, 3) points (:func:`point_sets`).
        support_height: m, z of the support surface, None without a cloud.
        failures: messages of the API calls that raised, in order (also those the program caught).
        calls: API calls made through :meth:`api`.
    """

    def __init__(self, affordance: Affordance, *, cloud: SceneCloud | None = None, max_opening: float = 0.08):
        self.affordance = affordance
        self.max_opening = float(max_opening)
        self.keypoints = affordance_keypoints(affordance)
        self.point_sets = point_sets(affordance, cloud)
        self.support_height = float(cloud.support_height) if cloud is not None and len(cloud) else None
        self.failures: list[str] = []
        self.calls = 0
        self._terms: list[TermSpec] = []
        self._stages: list[StageSpec] = []

    # -- queries ---------------------------------------------------------------------------------------------

    def scene_info(self) -> dict[str, Any]:
        """Plain-data description of the affordance and the scene (what the program may build on)."""
        affordance = self.affordance
        return {
            "kind": affordance.kind.value,
            "target": affordance.target,
            "keypoints": {name: point.tolist() for name, point in self.keypoints.items()},
            "approach": affordance.approach.tolist(),
            "motion": affordance.motion.tolist(),
            "opening": float(affordance.opening),
            "max_opening": self.max_opening,
            "support_height": self.support_height,
            "point_sets": sorted(self.point_sets),
        }

    def keypoint(self, name: str) -> list[float]:
        """[x, y, z] m of the keypoint ``name``."""
        return [float(value) for value in self._keypoint("keypoint", "name", name)]

    # -- terms -----------------------------------------------------------------------------------------------

    def reach(self, point: str | Sequence[float], weight: float = REACH_WEIGHT, at: str = "last") -> int:
        """Term id: bring the tool to ``point`` (a keypoint name or [x, y, z]) at the chunk's last step
        (``at="last"``) or at any step (``at="closest"``)."""
        if at not in ("last", "closest"):
            raise RewardSpecError(f"reach: at must be 'last' or 'closest', got {at!r}")
        target = self._point("reach", "point", point)
        return self._add(TermSpec(TermKind.REACH, _weight("reach", weight), point=target, at=at))

    def keep_clear(
        self, what: str | Sequence[Sequence[float]], margin: float | None = None, weight: float = CLEARANCE_WEIGHT
    ) -> int:
        """Term id: keep the tool ``margin`` m from a point set (its name; default margin 0.04 m) or out of a box
        [[xmin, ymin, zmin], [xmax, ymax, zmax]] grown by ``margin`` (default 0.02 m)."""
        weight = _weight("keep_clear", weight)
        if isinstance(what, str):
            if what not in self.point_sets:
                valid = ", ".join(sorted(self.point_sets)) or "none: there is no scene cloud"
                raise RewardSpecError(f"keep_clear: unknown point set {what!r}; valid names: {valid}")
            margin = _number("keep_clear", "margin", POINTS_MARGIN if margin is None else margin, 0.0, MAX_MARGIN)
            return self._add(
                TermSpec(TermKind.KEEP_CLEAR, weight, points=self.point_sets[what], label=what, margin=margin)
            )
        if not isinstance(what, list | tuple) or len(what) != 2:
            raise RewardSpecError(
                f"keep_clear: what must be a point set name or a box [[xmin, ymin, zmin], [xmax, ymax, zmax]], "
                f"got {what!r}"
            )
        low, high = _xyz("keep_clear", "what[0]", what[0]), _xyz("keep_clear", "what[1]", what[1])
        if np.any(low > high):
            raise RewardSpecError(f"keep_clear: box corner what[0] {low.tolist()} exceeds what[1] {high.tolist()}")
        margin = _number("keep_clear", "margin", REGION_MARGIN if margin is None else margin, 0.0, MAX_MARGIN)
        return self._add(TermSpec(TermKind.KEEP_OUT, weight, low=low, high=high, margin=margin))

    def stay_above(self, height: float, margin: float = SURFACE_MARGIN, weight: float = CLEARANCE_WEIGHT) -> int:
        """Term id: keep the tool ``margin`` m above a horizontal surface at z = ``height`` m."""
        term = TermSpec(
            TermKind.STAY_ABOVE,
            _weight("stay_above", weight),
            height=_number("stay_above", "height", height, -WORKSPACE_LIMIT, WORKSPACE_LIMIT),
            margin=_number("stay_above", "margin", margin, 0.0, MAX_MARGIN),
        )
        return self._add(term)

    def keep_down(self, weight: float = ORIENTATION_WEIGHT) -> int:
        """Term id: keep the tool's approach axis pointing down."""
        return self._add(TermSpec(TermKind.KEEP_DOWN, _weight("keep_down", weight)))

    def gripper(self, opening: float, weight: float = GRIPPER_WEIGHT) -> int:
        """Term id: command the finger opening, m (0: closed, up to ``max_opening``)."""
        opening = _number("gripper", "opening", opening, 0.0, self.max_opening)
        return self._add(TermSpec(TermKind.GRIPPER, _weight("gripper", weight), opening=opening))

    # -- stages ----------------------------------------------------------------------------------------------

    def stage(
        self,
        name: str,
        terms: Sequence[int],
        enter: float = ENTER,
        fallback: float | None = None,
        target: str | Sequence[float] | None = None,
    ) -> int:
        """Index of a new last stage: ``terms`` (ids) steer until the tool is within ``enter`` m of ``target`` (a
        keypoint name or [x, y, z]; default the point of the stage's first reach term); from a later stage,
        fall back here when the tool is farther than ``fallback`` m from it (None: never). The hysteresis threshold
        is not called ``exit`` as in :class:`~tiers.policies.mid.steering.Stage`: the sandbox refuses that name."""
        where = f"stage {name!r}"
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
            raise RewardSpecError(f"stage: name must be a non-empty string of at most {MAX_NAME_CHARS} characters")
        if any(stage.name == name for stage in self._stages):
            raise RewardSpecError(f"{where}: a stage of that name exists already")
        if len(self._stages) >= MAX_STAGES:
            raise RewardSpecError(f"{where}: too many stages, the limit is {MAX_STAGES}")
        if not isinstance(terms, list | tuple) or not terms:
            raise RewardSpecError(f"{where}: terms must be a non-empty list of term ids, got {terms!r}")
        if len(terms) > MAX_TERMS_PER_STAGE:
            raise RewardSpecError(f"{where}: {len(terms)} terms, the limit is {MAX_TERMS_PER_STAGE} per stage")
        for term in terms:
            if isinstance(term, bool) or not isinstance(term, int) or not 0 <= term < len(self._terms):
                raise RewardSpecError(
                    f"{where}: terms holds {term!r}, not a term id (ids so far: 0..{len(self._terms) - 1})"
                )
        if len(set(terms)) != len(terms):
            raise RewardSpecError(f"{where}: terms {list(terms)} lists a term twice")
        enter = _number(where, "enter", enter, 0.0, MAX_ENTER, open_low=True)
        exit_value = (
            math.inf if fallback is None else _number(where, "fallback", fallback, enter, MAX_EXIT, open_low=True)
        )
        if target is not None:
            goal = self._point(where, "target", target)
        else:
            reaches = [self._terms[term].point for term in terms if self._terms[term].kind is TermKind.REACH]
            if not reaches or reaches[0] is None:
                raise RewardSpecError(
                    f"{where}: no reach term and no target; the stage is complete when the tool is within enter "
                    "m of its target, so give target= or a reach term"
                )
            goal = reaches[0]
        self._stages.append(StageSpec(name, tuple(terms), goal, enter, exit_value))
        return len(self._stages) - 1

    # -- the result ------------------------------------------------------------------------------------------

    def spec(self) -> RewardSpec:
        """The recorded spec, checked as a whole.

        Raises:
            RewardSpecError: an API call failed (even if the program caught it), no stage was defined, or a
                term is in no stage.
        """
        if self.failures:
            raise RewardSpecError(f"{len(self.failures)} API call(s) failed, the first: {self.failures[0]}")
        if not self._stages:
            raise RewardSpecError("no stage: call stage(name, terms) at least once")
        used = {term for stage in self._stages for term in stage.terms}
        unused = [index for index in range(len(self._terms)) if index not in used]
        if unused:
            kinds = [f"{index} ({self._terms[index].kind.value})" for index in unused]
            raise RewardSpecError(f"terms {', '.join(kinds)} are in no stage: list them in a stage's terms")
        return RewardSpec(tuple(self._terms), tuple(self._stages))

    def api(self) -> dict[str, Callable[..., Any]]:
        """The functions a sandboxed program gets (name -> callable run here); failures are also recorded."""
        methods: dict[str, Callable[..., Any]] = {
            "scene_info": self.scene_info,
            "keypoint": self.keypoint,
            "reach": self.reach,
            "keep_clear": self.keep_clear,
            "stay_above": self.stay_above,
            "keep_down": self.keep_down,
            "gripper": self.gripper,
            "stage": self.stage,
        }
        return {name: self._recording(method) for name, method in methods.items()}

    def _recording(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            try:
                return method(*args, **kwargs)
            except RewardSpecError as error:
                self.failures.append(str(error))
                raise
            except Exception as error:  # e.g. a wrong argument list: name the function for the program's author
                message = f"{method.__name__}: {type(error).__name__}: {error}"
                self.failures.append(message)
                raise RewardSpecError(message) from None

        return call

    def _add(self, term: TermSpec) -> int:
        if len(self._terms) >= MAX_TERMS:
            raise RewardSpecError(f"{term.kind.value}: too many terms, the limit is {MAX_TERMS}")
        self._terms.append(term)
        return len(self._terms) - 1

    def _keypoint(self, where: str, field: str, name: object) -> Vector:
        if not isinstance(name, str) or name not in self.keypoints:
            valid = ", ".join(sorted(self.keypoints))
            raise RewardSpecError(f"{where}: unknown keypoint {field}={name!r}; valid names: {valid}")
        return self.keypoints[name].copy()

    def _point(self, where: str, field: str, value: object) -> Vector:
        if isinstance(value, str):
            return self._keypoint(where, field, value)
        return _xyz(where, field, value)


def _number(
    where: str, field: str, value: object, low: float, high: float, *, open_low: bool = False
) -> float:  # fmt: skip
    """``value`` as a finite float in [low, high] (or (low, high] with ``open_low``)."""
    interval = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RewardSpecError(f"{where}: {field} must be a finite number in {interval}, got {value!r}")
    number = float(value)
    if number > high or number < low or (open_low and number == low):
        raise RewardSpecError(f"{where}: {field} must be in {interval}, got {value!r}")
    return number


def _weight(where: str, value: object) -> float:
    return _number(where, "weight", value, 0.0, MAX_WEIGHT, open_low=True)


def _xyz(where: str, field: str, value: object) -> Vector:
    """``value`` as a (3,) point with finite coordinates within :data:`WORKSPACE_LIMIT` m."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise RewardSpecError(f"{where}: {field} must be [x, y, z] or a keypoint name, got {value!r}")
    return np.array(
        [_number(where, f"{field}[{i}]", v, -WORKSPACE_LIMIT, WORKSPACE_LIMIT) for i, v in enumerate(value)]
    )


# -- the one builder: spec -> Guidance terms -> StagedGuidance ------------------------------------------------------


def build_term(term: TermSpec, fk: ArmFK, stage: str = "") -> Guidance:
    """The library reward for one term spec; ``stage`` (the one stage that uses it, "" if several) is added to
    the term's name for logs ("reach:grasp")."""
    suffix = f":{stage}" if stage else ""
    kind = term.kind
    if kind is TermKind.REACH:
        assert term.point is not None
        return reach_keypoint(fk, term.point, weight=term.weight, at=term.at, name="reach" + suffix)
    if kind is TermKind.KEEP_CLEAR:
        assert term.points is not None
        return keep_clear_of_points(
            fk, term.points, margin=term.margin, weight=term.weight, name="clear:points" + suffix
        )
    if kind is TermKind.KEEP_OUT:
        assert term.low is not None and term.high is not None
        return keep_out_of_region(
            fk, term.low, term.high, margin=term.margin, weight=term.weight, name="clear:region" + suffix
        )
    if kind is TermKind.STAY_ABOVE:
        return stay_above_surface(
            fk, term.height, margin=term.margin, weight=term.weight, name="above:surface" + suffix
        )
    if kind is TermKind.KEEP_DOWN:
        return keep_orientation(fk, weight=term.weight, name="orientation" + suffix)
    return gripper_command(term.opening, weight=term.weight, name="gripper" + suffix)


def build_staged(spec: RewardSpec, fk: ArmFK) -> StagedGuidance:
    """Staged rewards from a spec: each term is built once (stages that share an id share the Guidance) and each
    stage's progress is the tool's distance to its target (:func:`~tiers.policies.mid.steering.distance_to`)."""
    users = Counter(index for stage in spec.stages for index in stage.terms)
    built: dict[int, Guidance] = {}
    stages = []
    for stage in spec.stages:
        for index in stage.terms:
            if index not in built:
                built[index] = build_term(spec.terms[index], fk, stage.name if users[index] == 1 else "")
        terms = tuple(built[index] for index in stage.terms)
        stages.append(Stage(stage.name, terms, distance_to(stage.target), stage.enter, stage.exit))
    return StagedGuidance(stages)
