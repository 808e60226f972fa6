"""Rewards from language by template: a template per subtask verb turns a subtask and its affordance into staged
VLS rewards (:class:`~tiers.policies.mid.steering.StagedGuidance`), offline and deterministically.

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

A template is a sequence of calls to the reward-building API of :mod:`tiers.policies.mid.reward_spec` (the
keypoints ``point``, ``approach_start``, ``lifted``, ``motion_end`` of the affordance, the ``obstacles`` point
set, term ids listed in stages), the very API a language model's program calls from the shared sandbox in
:mod:`tiers.policies.mid.llm_rewards`; both end in the same builder, :func:`~tiers.policies.mid.reward_spec.
build_staged`. The prompt's few-shot examples there are these templates written as programs, and the LLM path
falls back to :func:`subtask_rewards` when the model's program is refused, fails or is invalid.
"""

from __future__ import annotations

from tiers.policies.mid.affordances import Affordance, AffordanceKind
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.perception import SceneCloud
from tiers.policies.mid.reward_spec import (
    CLEARANCE_WEIGHT,
    GRIPPER_WEIGHT,
    ORIENTATION_WEIGHT,
    POINTS_MARGIN,
    REACH_WEIGHT,
    SURFACE_MARGIN,
    RewardRecorder,
    RewardSpec,
    build_staged,
)
from tiers.policies.mid.steering import StagedGuidance

EXIT = 0.06  # m, a falling-back stage is re-entered beyond this distance

# subtask kind -> stages as (name, keypoint, gripper opening: "open" (max), "affordance" (its opening) or 0.0,
# falls back); the keypoint names are those of reward_spec.affordance_keypoints
TEMPLATES: dict[AffordanceKind, tuple[tuple[str, str, str | float, bool], ...]] = {
    AffordanceKind.GRASP: (
        ("pre-grasp", "approach_start", "open", False),
        ("grasp", "point", 0.0, False),
        ("lift", "lifted", 0.0, False),
    ),
    AffordanceKind.PLACE: (
        ("carry", "approach_start", 0.0, True),
        ("lower", "point", 0.0, True),
        ("release", "lifted", "open", False),
    ),
    AffordanceKind.HANDLE: (
        ("pre-grasp", "approach_start", "affordance", False),
        ("grasp", "point", 0.0, False),
        ("pull", "motion_end", 0.0, False),
    ),
    AffordanceKind.PUSH: (
        ("pre-push", "approach_start", 0.0, False),
        ("contact", "point", 0.0, False),
        ("push", "motion_end", 0.0, False),
    ),
}


def template_spec(
    affordance: Affordance,
    *,
    cloud: SceneCloud | None = None,
    max_opening: float = 0.08,
    reach_weight: float = REACH_WEIGHT,
    clearance_weight: float = CLEARANCE_WEIGHT,
    orientation_weight: float = ORIENTATION_WEIGHT,
    gripper_weight: float = GRIPPER_WEIGHT,
) -> RewardSpec:
    """The template's reward spec for the subtask an affordance serves (arguments as :func:`subtask_rewards`)."""
    api = RewardRecorder(affordance, cloud=cloud, max_opening=max_opening)
    common = [api.keep_down(weight=orientation_weight)]
    if api.support_height is not None:  # a scene cloud: keep clear of what is not the target, stay above the support
        common.append(api.keep_clear("obstacles", margin=POINTS_MARGIN, weight=clearance_weight))
        common.append(api.stay_above(api.support_height, margin=SURFACE_MARGIN, weight=clearance_weight))
    openings = {"open": max_opening, "affordance": affordance.opening}
    for name, keypoint, opening, falls_back in TEMPLATES[affordance.kind]:
        # an affordance's opening may come from a detector configured for a wider hand than this one
        width = min(openings[opening] if isinstance(opening, str) else opening, max_opening)
        terms = [api.reach(keypoint, weight=reach_weight), api.gripper(width, weight=gripper_weight), *common]
        api.stage(name, terms, fallback=EXIT if falls_back else None)
    return api.spec()


def subtask_rewards(
    affordance: Affordance,
    fk: ArmFK,
    *,
    cloud: SceneCloud | None = None,
    max_opening: float = 0.08,
    reach_weight: float = REACH_WEIGHT,
    clearance_weight: float = CLEARANCE_WEIGHT,
    orientation_weight: float = ORIENTATION_WEIGHT,
    gripper_weight: float = GRIPPER_WEIGHT,
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
    spec = template_spec(
        affordance, cloud=cloud, max_opening=max_opening, reach_weight=reach_weight,
        clearance_weight=clearance_weight, orientation_weight=orientation_weight, gripper_weight=gripper_weight,
    )  # fmt: skip
    return build_staged(spec, fk)
