"""One observation checked against a low-tier policy and taken apart into numpy arrays: no torch.

Shared by the torch policy (:meth:`tiers.policies.low.policy.GenerativeLowPolicy.batch_from_observation`,
which turns the arrays into tensors and resizes images with torchvision) and the ONNX Runtime policy
(:meth:`tiers.policies.low.onnx_policy.OnnxLowPolicy.batch_from_observation`, which resizes with Pillow), so
both check an observation, choose the language text and label missing conditions alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tiers.core.ee_path import EEPath
from tiers.core.errors import ContractError, EmbodimentMismatchError
from tiers.core.features import FeatureKey
from tiers.core.observation import Observation
from tiers.policies.low.path_tokens import EE_PATH_KEY, GOAL_STATE_KEY, resample_path
from tiers.policies.low.policy_features import PolicyFeatures


class Conditions(Protocol):
    """The conditions a policy reads (its ``config.conditioning``: the torch or the ONNX policy's)."""

    @property
    def language_key(self) -> str | None: ...  # text that conditions the policy, None: no text

    @property
    def goal(self) -> bool: ...  # a goal-state condition

    @property
    def path_waypoints(self) -> int: ...  # K path waypoints, 0: no path condition


@dataclass(frozen=True)
class ObservationArrays:
    """One observation (B = 1) as the policy reads it, before images are resized and arrays become tensors.

    Attributes:
        state: (S,) raw proprioceptive state, in the observation's dtype.
        images: camera key (``observation.images.<name>``) -> (H, W, 3) uint8 RGB as observed, for each camera
            the policy reads, in the policy's camera order; not resized.
        conditions: the condition entries of the batch, in batch order: language key -> [text], ``goal.state``
            -> (1, S) float32 raw state, ``ee_path`` -> (1, K, 8) float32 waypoints (base frame); only those
            the policy reads.
    """

    state: NDArray[Any]
    images: dict[str, NDArray[Any]]
    conditions: dict[str, Any]


def observation_arrays(
    observation: Observation,
    features: PolicyFeatures,
    conditioning: Conditions,
    *,
    command: str | None = None,
    goal_state: NDArray[np.floating[Any]] | None = None,
    path: EEPath | None = None,
) -> ObservationArrays:
    """Check ``observation`` and the given conditions against a policy; the arrays its batch is made of.

    Args:
        observation: proprioception and camera images (RGB (H, W, 3) uint8).
        features: what the policy reads (state size, cameras).
        conditioning: which conditions it reads.
        command: the text for the language condition (subtask, language motion); for the ``task`` key it
            defaults to the observation's instruction.
        goal_state: (S,) raw goal state, for goal-conditioned policies.
        path: end-effector path in the base frame, for path-conditioned policies.

    Raises:
        EmbodimentMismatchError: the state size or a camera does not fit the policy.
        ContractError: a condition the policy needs is not given.
    """
    state = np.asarray(observation.state)
    if state.shape != (features.state_dim,):
        raise EmbodimentMismatchError(
            f"observation state has {state.shape[0]} components; the policy reads {features.state_dim}"
        )
    images: dict[str, NDArray[Any]] = {}
    for key in features.cameras:
        name = key.removeprefix(f"{FeatureKey.IMAGES.value}.")
        if name not in observation.images:
            raise EmbodimentMismatchError(
                f"the policy reads camera {name!r}; the observation has {sorted(observation.images)}"
            )
        images[key] = observation.images[name]
    conditions: dict[str, Any] = {}
    language = conditioning.language_key
    if language is not None:
        text = command if command is not None else observation.instruction if language == FeatureKey.TASK else None
        if text is None:
            raise ContractError(f"the policy is conditioned on {language!r}: pass command=<text>")
        conditions[language] = [text]
    if conditioning.goal:
        if goal_state is None:
            raise ContractError("the policy is goal-conditioned: pass goal_state=(S,) raw state")
        conditions[GOAL_STATE_KEY] = np.asarray(goal_state, dtype=np.float32)[None]
    if conditioning.path_waypoints:
        if path is None:
            raise ContractError("the policy is path-conditioned: pass path=EEPath")
        conditions[EE_PATH_KEY] = resample_path(path, conditioning.path_waypoints)[None]
    return ObservationArrays(state=state, images=images, conditions=conditions)
