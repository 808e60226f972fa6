"""The simulator interface every backend implements (MuJoCo now, Isaac Sim later).

A backend owns one kitchen scene and one robot. It speaks only the core contracts: it takes a
:class:`~tiers.sim.kitchen.layout.KitchenLayout` and joint-position actions, and returns
:class:`~tiers.core.observation.Observation` and :class:`~tiers.sim.scene_state.SceneState`, so tasks,
predicates, the expert and the Gymnasium environment are written once for all backends.

Timeline of one episode (control period ``dt = 1 / embodiment.control_rate_hz``, 0.05 s for the Panda)::

    reset(layout) ──▶ obs_0 at t=0        step(a_0) ──▶ obs_1 at t=dt        step(a_1) ──▶ obs_2 at t=2·dt
                     (layout applied,     (a_0 held for dt of physics       (a_1 held for dt ...)
                      arm at home,         substeps, then observed)
                      gripper open)

Action rule (the same in every backend, see :func:`prepare_joint_action`): an action is (J+1,) = J joint
position targets in rad + 1 gripper opening target in m; a wrong shape or any NaN/inf is rejected with
:class:`~tiers.core.errors.ContractError`; finite values outside the joint limits or ``[0, max_opening]``
are clipped and counted. End-effector actions are converted to joint targets above the backend
(inverse kinematics in the environment), so a backend only ever sees joint targets.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError
from tiers.core.observation import Observation
from tiers.sim.kitchen.layout import KitchenLayout
from tiers.sim.scene_state import SceneState


@runtime_checkable
class SimBackend(Protocol):
    """A simulated kitchen with one arm. All poses are in the robot base frame (m, quaternion wxyz)."""

    @property
    def embodiment(self) -> EmbodimentSpec:
        """The robot simulated: joint order, limits, control rate, cameras."""
        ...

    @property
    def time(self) -> float:
        """Simulated seconds since the last :meth:`reset`."""
        ...

    def reset(self, layout: KitchenLayout, *, render: bool = True) -> Observation:
        """Apply ``layout`` (object poses and colours, absent objects parked, fixtures' joints), put the arm
        at ``embodiment.home`` with the gripper open, zero the clock, and observe."""
        ...

    def step(self, action: ArrayLike, *, render: bool = True) -> Observation:
        """Hold ``action`` (J+1,) [joint targets rad, gripper opening m] for one control period, then observe.

        Raises:
            ContractError: wrong shape or non-finite values (see :func:`prepare_joint_action`).
            SimulationError: the physics diverged; the episode must be reset.
        """
        ...

    def observe(self, render: bool = True) -> Observation:
        """Current observation; with ``render=False`` no images (proprioception and camera models only)."""
        ...

    def render_rgb(self, camera: str) -> NDArray[np.uint8]:
        """(H, W, 3) RGB image of one camera at the current state, for videos (cheaper than ``observe``).

        Raises:
            KeyError: ``camera`` is not one of the robot's cameras (the message lists them).
        """
        ...

    def scene_state(self) -> SceneState:
        """Privileged state of the scene (present objects, fixtures, regions, grasp)."""
        ...

    def close(self) -> None:
        """Free renderers and simulator resources; the backend is unusable afterwards."""
        ...


def prepare_joint_action(action: ArrayLike, spec: EmbodimentSpec) -> tuple[NDArray[np.float64], int]:
    """Validate and clip one joint-position action.

    Args:
        action: (J+1,) joint position targets in rad (EmbodimentSpec order), then the gripper opening in m.
        spec: the robot.

    Returns:
        (clipped (J+1,) float64 action, number of components that were clipped).

    Raises:
        ContractError: the shape is not (J+1,) or a value is NaN/inf.
    """
    array = np.asarray(action, dtype=np.float64)
    expected = (spec.dof + 1,)
    if array.shape != expected:
        raise ContractError(
            f"action must have shape {expected} ({spec.dof} joint targets in rad + gripper opening in m), "
            f"got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ContractError(f"action has non-finite values: {array}")
    lower, upper = spec.position_limits
    lower = np.append(lower, 0.0)
    upper = np.append(upper, spec.gripper.max_opening)
    clipped = np.clip(array, lower, upper)
    return clipped, int(np.count_nonzero(clipped != array))
