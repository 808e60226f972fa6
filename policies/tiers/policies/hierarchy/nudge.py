"""Motion corrections executed directly: "move a bit to the left" becomes a short end-effector nudge.

A motion-level correction overrides whatever the low tier was doing for a moment. Every low tier can be
nudged the same way, learned or not: the end effector moves by the correction's displacement (base frame)
along a straight line at :data:`NUDGE_SPEED`, solved by damped-least-squares IK on the robot's own MJCF
model, while the gripper holds (or opens/closes for gripper corrections). Afterwards the runtime hands
control back to the low tier for the current subtask, re-planned from the new pose. The runtime uses the same
straight move (:meth:`Nudge.move`) to take the arm back to its viewing pose when it hides what a retry must see.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from tiers.core.embodiment import ActionSpace, EmbodimentSpec
from tiers.core.errors import ContractError
from tiers.core.observation import Observation
from tiers.policies.hierarchy.corrections import Correction
from tiers.services.kinematics import ArmKinematics

NUDGE_SPEED = 0.10  # m/s of the tool along a nudge
MIN_NUDGE_S = 0.5  # s, shortest nudge (gripper and rotation corrections take this long)


class Nudge:
    """Executes one motion correction as joint-position actions, one per control tick."""

    def __init__(self, embodiment: EmbodimentSpec) -> None:
        if embodiment.action_space is not ActionSpace.JOINT_POSITION:
            raise ContractError(
                f"motion corrections drive joint-position robots; {embodiment.name!r} uses {embodiment.action_space}"
            )
        self.embodiment = embodiment
        self._kinematics = ArmKinematics.for_robot(embodiment)
        self._start_pose: NDArray[np.float64] | None = None
        self.correction: Correction | None = None  # what asked for the move in progress (None: the runtime)
        self._ticks = 0
        self._total_ticks = 0
        self._joints: NDArray[np.float64] | None = None
        self._gripper = 0.0
        self._displacement = np.zeros(3)
        self._yaw = 0.0
        self._moving = False

    def start(self, correction: Correction, observation: Observation, gripper_target: float) -> None:
        """Begin nudging from the current pose; ``gripper_target`` (m) is held unless the correction moves it."""
        if correction.gripper == "open":
            gripper_target = self.embodiment.gripper.max_opening
        elif correction.gripper == "close":
            gripper_target = 0.0
        self.move(correction.displacement, observation, gripper_target, yaw=correction.yaw, correction=correction)

    def move(
        self,
        displacement: NDArray[np.float64],
        observation: Observation,
        gripper_target: float,
        *,
        yaw: float = 0.0,
        speed: float = NUDGE_SPEED,
        correction: Correction | None = None,
    ) -> None:
        """Begin a straight tool move by ``displacement`` (3,) m in the base frame and ``yaw`` rad about the base
        z axis, at ``speed`` m/s, the gripper going to ``gripper_target`` (m); ``correction`` is what asked for
        it (None: the runtime itself, e.g. a move to the viewing pose before a retry)."""
        self.correction = correction
        self._displacement = np.asarray(displacement, dtype=np.float64).reshape(3)
        self._yaw = float(yaw)
        self._start_pose = np.asarray(observation.ee_pose, dtype=np.float64).copy()
        self._joints = np.asarray(observation.joint_positions, dtype=np.float64).copy()
        distance = float(np.linalg.norm(self._displacement))
        duration = max(distance / speed, MIN_NUDGE_S)
        self._total_ticks = max(1, round(duration * self.embodiment.control_rate_hz))
        self._ticks = 0
        self._gripper = gripper_target
        self._moving = True

    @property
    def active(self) -> bool:
        return self._moving and self._ticks < self._total_ticks

    def act(self) -> NDArray[np.float32]:
        """(J+1,) joint targets (rad) + gripper opening (m) for this tick."""
        if not self._moving or self._start_pose is None or self._joints is None:
            raise ContractError("Nudge.act() before start() or move()")
        self._ticks = min(self._ticks + 1, self._total_ticks)
        fraction = self._ticks / self._total_ticks
        position = self._start_pose[:3] + fraction * self._displacement
        start_rotation = Rotation.from_quat(np.roll(self._start_pose[3:], -1))  # scipy uses xyzw
        rotation = Rotation.from_rotvec([0.0, 0.0, fraction * self._yaw]) * start_rotation
        quaternion = np.roll(rotation.as_quat(), 1)
        result = self._kinematics.solve(position, quaternion, q_init=self._joints, max_iterations=50)
        self._joints = result.qpos
        return np.append(result.qpos, self._gripper).astype(np.float32)
