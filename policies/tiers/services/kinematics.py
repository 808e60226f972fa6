"""Arm kinematics on a MuJoCo model: forward kinematics of a site and damped-least-squares IK.

Works on a private ``MjData``, so solving never disturbs the simulation. Frames: the model's world frame
(the robot base frame in the kitchen); positions in m, quaternions wxyz, joint values in rad.

The robot's model is named once, by the ``model`` field of its YAML (``configs/robots/<name>.yaml``), and
found by :func:`robot_model_path`; every tier, the safety filter and the simulator build their kinematics
from there (:meth:`ArmKinematics.for_robot`) or from a scene that includes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np
from numpy.typing import ArrayLike, NDArray

import tiers
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError


def robot_model_path(embodiment: EmbodimentSpec) -> Path:
    """The MJCF file named by ``embodiment.model``: an absolute path, or one relative to the ``tiers`` package.

    ``tiers`` is a namespace package spread over several folders in a checkout (one ``tiers/`` tree in a
    wheel), so a relative path is looked up in each of its portions, without importing any subpackage.

    Raises:
        ContractError: the robot names no model, or no such file exists; the message names the robot and the field.
    """
    if not embodiment.model:
        raise ContractError(f"robot {embodiment.name!r}: its YAML sets no `model` (the MJCF used for kinematics)")
    named = Path(embodiment.model)
    candidates = [named] if named.is_absolute() else [Path(portion) / named for portion in tiers.__path__]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ContractError(
        f"robot {embodiment.name!r}: model {embodiment.model!r} not found (looked at {[str(c) for c in candidates]})"
    )


@dataclass(frozen=True)
class IKResult:
    """Outcome of :meth:`ArmKinematics.solve`.

    Attributes:
        qpos: (J,) rad, the arm configuration reached (within joint limits).
        success: both errors are below the tolerances.
        position_error: m, distance from the site to the target position.
        rotation_error: rad, angle between the site orientation and the target (0 if none was asked).
        iterations: iterations used.
    """

    qpos: NDArray[np.float64]
    success: bool
    position_error: float
    rotation_error: float
    iterations: int


class ArmKinematics:
    """Forward and inverse kinematics of one site over a chain of hinge joints."""

    def __init__(self, model: mujoco.MjModel, *, joint_names: list[str], site_name: str):
        """
        Args:
            model: compiled model (not modified).
            joint_names: the arm joints solved for, in the order of ``qpos`` vectors (J names).
            site_name: the controlled site, e.g. ``"panda_hand_tcp"``.
        """
        self._model = model
        self._data = mujoco.MjData(model)
        joint_ids = [int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)) for name in joint_names]
        unknown = [name for name, i in zip(joint_names, joint_ids, strict=True) if i < 0]
        if unknown:
            raise ValueError(f"joints {unknown} are not in the model")
        self._site = int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site_name))
        if self._site < 0:
            raise ValueError(f"site {site_name!r} is not in the model")
        self._qpos_adr = model.jnt_qposadr[joint_ids]
        self._dof_adr = model.jnt_dofadr[joint_ids]
        self.lower = model.jnt_range[joint_ids, 0].copy()  # (J,) rad
        self.upper = model.jnt_range[joint_ids, 1].copy()  # (J,) rad
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    @classmethod
    def for_robot(cls, embodiment: EmbodimentSpec) -> ArmKinematics:
        """Kinematics of ``embodiment.ee_frame`` over its joints, on the model its YAML names."""
        model = mujoco.MjModel.from_xml_path(str(robot_model_path(embodiment)))
        return cls(model, joint_names=embodiment.joint_names, site_name=embodiment.ee_frame)

    def forward(self, q: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Site pose at arm configuration ``q`` (J,) rad -> (position (3,) m, quaternion (4,) wxyz)."""
        self._set(q)
        quaternion = np.empty(4)
        mujoco.mju_mat2Quat(quaternion, self._data.site_xmat[self._site])
        return self._data.site_xpos[self._site].copy(), quaternion

    def solve(
        self,
        target_position: ArrayLike,
        target_quaternion: ArrayLike | None = None,
        *,
        q_init: ArrayLike,
        q_rest: ArrayLike | None = None,
        position_tolerance: float = 1e-3,
        rotation_tolerance: float = 1e-2,
        max_iterations: int = 200,
        damping: float = 1e-2,
        max_step: float = 0.2,
        rest_gain: float = 0.05,
    ) -> IKResult:
        """Damped least squares: dq = Jᵀ (J Jᵀ + λ² I)⁻¹ e, clipped to the joint limits each iteration.

        A joint at a limit that the step would push further out is taken out of that iteration's Jacobian and
        rest pull (the others solve the task without it): otherwise the rest pull, acting through the joint
        that the clip then holds still, balanced the task at a residual error (the wrist turned half a turn
        from home stopped ~4° short at its limit).

        Args:
            target_position: (3,) m.
            target_quaternion: (4,) wxyz, or None to solve for position only.
            q_init: (J,) rad, starting configuration (e.g. the current one).
            q_rest: (J,) rad, a configuration preferred in the null space (e.g. home); None: none.
            position_tolerance: m. rotation_tolerance: rad.
            max_iterations: iterations before giving up (the best effort is returned, success False).
            damping: λ, m; larger is more robust near singularities and slower.
            max_step: rad, largest joint change per iteration.
            rest_gain: fraction of the way toward ``q_rest`` pulled per iteration, in the null space.
        """
        target_position = np.asarray(target_position, dtype=np.float64)
        quaternion = None if target_quaternion is None else np.asarray(target_quaternion, dtype=np.float64)
        rest = None if q_rest is None else np.asarray(q_rest, dtype=np.float64)
        rows = 6 if quaternion is not None else 3
        q = np.clip(np.asarray(q_init, dtype=np.float64), self.lower, self.upper)
        regulariser = damping**2 * np.eye(rows)
        position_error = rotation_error = np.inf
        for iteration in range(1, max_iterations + 1):
            self._set(q)
            error = np.zeros(rows)
            error[:3] = target_position - self._data.site_xpos[self._site]
            position_error = float(np.linalg.norm(error[:3]))
            rotation_error = 0.0
            if quaternion is not None:
                error[3:] = self._rotation_error(quaternion)
                rotation_error = float(np.linalg.norm(error[3:]))
            if position_error < position_tolerance and rotation_error < rotation_tolerance:
                return IKResult(q, True, position_error, rotation_error, iteration)
            mujoco.mj_jacSite(self._model, self._data, self._jacp, self._jacr, self._site)
            jacobian = np.vstack([self._jacp, self._jacr])[:rows, self._dof_adr]  # (rows, J)
            pull = None if rest is None else rest_gain * (rest - q)  # (J,) rad
            dq = self._step(jacobian, error, pull, regulariser)
            blocked = ((q >= self.upper) & (dq > 0)) | ((q <= self.lower) & (dq < 0))
            if np.any(blocked):  # again without the joints held at their limits
                free = ~blocked
                dq = np.zeros_like(q)
                dq[free] = self._step(jacobian[:, free], error, None if pull is None else pull[free], regulariser)
            largest = np.max(np.abs(dq))
            if largest > max_step:
                dq *= max_step / largest
            q = np.clip(q + dq, self.lower, self.upper)
        return IKResult(q, False, position_error, rotation_error, max_iterations)

    @staticmethod
    def _step(
        jacobian: NDArray[np.float64],
        error: NDArray[np.float64],
        pull: NDArray[np.float64] | None,
        regulariser: NDArray[np.float64],
    ) -> NDArray[np.float64]:
        """(J,) rad: the damped-least-squares step for ``error`` (rows,) through ``jacobian`` (rows, J), plus
        ``pull`` (J,) projected onto the null space, I − J⁺ J."""
        gram = jacobian @ jacobian.T + regulariser
        step: NDArray[np.float64] = jacobian.T @ np.linalg.solve(gram, error)
        if pull is not None:  # the exact null space (the damped one, cheaper, changed paths by ~1e-4 rad)
            step += pull - np.linalg.pinv(jacobian) @ (jacobian @ pull)
        return step

    def _set(self, q: ArrayLike) -> None:
        self._data.qpos[self._qpos_adr] = q
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_comPos(self._model, self._data)

    def _rotation_error(self, target_quaternion: NDArray[np.float64]) -> NDArray[np.float64]:
        """(3,) rad rotation vector in the world frame taking the site's orientation to the target."""
        current = np.empty(4)
        mujoco.mju_mat2Quat(current, self._data.site_xmat[self._site])
        inverse = np.empty(4)
        mujoco.mju_negQuat(inverse, current)
        difference = np.empty(4)
        mujoco.mju_mulQuat(difference, target_quaternion, inverse)  # world-frame rotation current -> target
        velocity = np.empty(3)
        mujoco.mju_quat2Vel(velocity, difference, 1.0)
        return velocity
