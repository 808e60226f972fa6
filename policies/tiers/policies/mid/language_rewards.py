"""Rewards from language, offline: a template per subtask verb turns a subtask and its affordance into
staged VLS rewards (:class:`~tiers.policies.mid.steering.StagedGuidance`).

============  ========================================================================================
subtask       stages (each: reach its keypoint + keep the tool pointing down + keep clear of the other
              points + stay above the support; the stage ends within ``enter`` m of its keypoint)
============  ========================================================================================
pick          pre-grasp (above the grasp point, fingers open) -> grasp (at it, then fingers shut) -> lift
place         carry (above the spot) -> lower (at the release point) -> release (fingers open, rise)
open / close  pre-grasp -> grasp the handle -> pull (or push) along the motion
push          pre-push (behind the object, fingers shut) -> contact -> push along the direction
============  ========================================================================================

Falling back: the carry and lower stages of a place fall back (hysteresis ``exit``) when the tool is pushed
away from their keypoint; approach stages do not (they are left behind on purpose).

LLM-written reward code (the high tier's sandbox) is not used here: templates cover the benchmark's grammar
offline and deterministically.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tiers.core.guidance import Guidance
from tiers.policies.mid.affordances import Affordance, AffordanceKind
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.perception import SceneCloud
from tiers.policies.mid.rewards import (
    gripper_command,
    keep_clear_of_points,
    keep_orientation,
    reach_keypoint,
    stay_above_surface,
)
from tiers.policies.mid.steering import Stage, StagedGuidance, distance_to

APPROACH_HEIGHT = 0.08  # m, pre-grasp / pre-place offset above the keypoint
LIFT_HEIGHT = 0.12  # m, rise after a grasp or a release
ENTER = 0.02  # m, a stage is complete within this distance of its keypoint
EXIT = 0.06  # m, a falling-back stage is re-entered beyond this distance


def subtask_rewards(
    affordance: Affordance,
    fk: ArmFK,
    *,
    cloud: SceneCloud | None = None,
    max_opening: float = 0.08,
    reach_weight: float = 10.0,
    clearance_weight: float = 100.0,
    orientation_weight: float = 1.0,
    gripper_weight: float = 10.0,
) -> StagedGuidance:
    """Staged rewards for the subtask an affordance serves (see the module table).

    Args:
        affordance: the keypoint (from :class:`~tiers.policies.mid.affordances.AffordanceDetector`).
        fk: torch forward kinematics of the arm.
        cloud: the scene; its points other than the target's become a keep-clear term, its support height a
            stay-above term. None: no obstacle terms.
        max_opening: m, the gripper's full opening.
        reach_weight, clearance_weight, orientation_weight, gripper_weight: weights of the term kinds.
    """
    point = affordance.point
    above = point - affordance.approach * APPROACH_HEIGHT
    common: list[Guidance] = [keep_orientation(fk, weight=orientation_weight)]
    if cloud is not None and len(cloud):
        margin = 0.015
        inside = np.all((cloud.points >= affordance.low - margin) & (cloud.points <= affordance.high + margin), axis=1)
        obstacles = cloud.points[~inside & (cloud.points[:, 2] > cloud.support_height + 0.01)]
        common.append(keep_clear_of_points(fk, obstacles, margin=0.04, weight=clearance_weight))
        common.append(stay_above_surface(fk, cloud.support_height, margin=0.01, weight=clearance_weight))

    def stage(
        name: str, target: NDArray[np.float64], opening: float, *, enter: float = ENTER, exit: float = math.inf
    ) -> Stage:
        terms = (
            reach_keypoint(fk, target, weight=reach_weight, name=f"reach:{name}"),
            gripper_command(opening, weight=gripper_weight, name=f"gripper:{name}"),
            *common,
        )
        return Stage(name, terms, distance_to(target), enter, exit)

    kind = affordance.kind
    if kind is AffordanceKind.GRASP:
        stages = [
            stage("pre-grasp", above, max_opening),
            stage("grasp", point, 0.0),
            stage("lift", point + np.array([0.0, 0.0, LIFT_HEIGHT]), 0.0),
        ]
    elif kind is AffordanceKind.PLACE:
        stages = [
            stage("carry", above, 0.0, exit=EXIT),
            stage("lower", point, 0.0, exit=EXIT),
            stage("release", point + np.array([0.0, 0.0, LIFT_HEIGHT]), max_opening),
        ]
    elif kind is AffordanceKind.HANDLE:
        end = point + affordance.motion
        if affordance.pivot is not None:
            from tiers.policies.mid.affordances import rotate_about

            end = rotate_about(point, affordance.pivot, affordance.sweep)
        stages = [
            stage("pre-grasp", above, affordance.opening),
            stage("grasp", point, 0.0),
            stage("pull", end, 0.0),
        ]
    else:
        stages = [
            stage("pre-push", above, 0.0),
            stage("contact", point, 0.0),
            stage("push", point + affordance.motion, 0.0),
        ]
    return StagedGuidance(stages)
