"""EmbodimentSpec: what a robot is, as far as policies are concerned.

Loaded from YAML under ``configs/robots/`` and checked whenever a policy, an observation or an action
chunk meets a robot or a simulator, so a policy trained for one arm cannot silently drive another.

Conventions (all tiers):
    - joint order is the order of ``joints`` in the YAML; positions in rad, velocities in rad/s;
    - the proprioceptive state vector is ``[joint positions (J), gripper opening (1)]``, shape (J+1,);
    - the gripper opening is the distance between the fingertips in metres, 0 = closed;
    - poses are in ``base_frame``: position in metres, orientation as a unit quaternion (w, x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tiers.core.config import Config, load_config
from tiers.core.errors import EmbodimentMismatchError
from tiers.core.locations import preset_path

if TYPE_CHECKING:
    from tiers.core.actions import ActionChunk
    from tiers.core.observation import Observation


class ActionSpace(StrEnum):
    """How the last axis of an action is read."""

    # [joint position targets (J) in rad, gripper opening target (1) in m] -> A = J + 1
    JOINT_POSITION = "joint_position"
    # [end-effector translation (3) in m, rotation vector (3) in rad, both in the base frame, per step;
    #  gripper opening target (1) in m] -> A = 7
    EE_DELTA = "ee_delta"


@dataclass
class JointSpec(Config):
    """One actuated revolute joint of the arm."""

    name: str  # joint name in the robot model (URDF/MJCF), e.g. "panda_joint1"
    lower: float  # position lower limit, rad
    upper: float  # position upper limit, rad
    max_velocity: float  # rad/s
    max_acceleration: float  # rad/s^2
    max_effort: float  # N*m

    def __post_init__(self) -> None:
        if not self.lower < self.upper:
            raise ValueError(f"joint {self.name!r}: lower limit {self.lower} must be below upper limit {self.upper}")
        for name in ("max_velocity", "max_acceleration", "max_effort"):
            if getattr(self, name) <= 0:
                raise ValueError(f"joint {self.name!r}: {name} must be positive, got {getattr(self, name)}")


@dataclass
class GripperSpec(Config):
    """A parallel gripper driven by one opening command."""

    joint_names: list[str]  # finger joints in the robot model
    max_opening: float  # m, fingertip distance when fully open
    max_speed: float  # m/s, opening/closing speed

    def __post_init__(self) -> None:
        if self.max_opening <= 0 or self.max_speed <= 0:
            raise ValueError(
                f"gripper max_opening and max_speed must be positive, got {self.max_opening}, {self.max_speed}"
            )


@dataclass
class CameraSpec(Config):
    """A camera the policies may read."""

    name: str  # key in Observation.images / dataset feature observation.images.<name>
    width: int  # pixels
    height: int  # pixels
    fovy_deg: float  # vertical field of view, degrees
    mount: str = "world"  # "world" for a fixed camera, else the body it rides on (e.g. "panda_hand")
    depth: bool = False  # whether a depth image (metres) comes with the RGB one

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera {self.name!r}: size must be positive, got {self.width}x{self.height}")
        if not 0 < self.fovy_deg < 180:
            raise ValueError(f"camera {self.name!r}: fovy_deg must be in (0, 180), got {self.fovy_deg}")


@dataclass
class EmbodimentSpec(Config):
    """A robot: joints and their limits, gripper, control rate, cameras and action space."""

    name: str  # e.g. "panda"
    joints: list[JointSpec]  # actuated arm joints, in command order
    gripper: GripperSpec
    control_rate_hz: float  # rate at which the low tier's actions are applied, Hz
    base_frame: str  # frame of every pose (body name in the model)
    ee_frame: str  # tool centre point frame (site/body name in the model)
    home: list[float]  # rad, a safe ready configuration, one value per joint
    max_ee_speed: float = 0.5  # m/s, Cartesian speed cap enforced by the safety filter
    action_space: ActionSpace = ActionSpace.JOINT_POSITION
    cameras: list[CameraSpec] = field(default_factory=list)
    # kinematic model (MJCF) of the arm: a path relative to the tiers package ("sim/assets/panda/panda.xml")
    # or an absolute path; "" when the robot has none (kinematics then refuses to build, naming this field)
    model: str = ""

    def __post_init__(self) -> None:
        if not self.joints:
            raise ValueError("joints must list at least one joint")
        names = [joint.name for joint in self.joints]
        if len(set(names)) != len(names):
            raise ValueError(f"joint names must be unique, got {names}")
        if self.control_rate_hz <= 0:
            raise ValueError(f"control_rate_hz must be positive, got {self.control_rate_hz}")
        if len(self.home) != len(self.joints):
            raise ValueError(f"home has {len(self.home)} values for {len(self.joints)} joints")
        for joint, q in zip(self.joints, self.home, strict=True):
            if not joint.lower <= q <= joint.upper:
                raise ValueError(f"home value {q} of {joint.name!r} is outside [{joint.lower}, {joint.upper}]")
        cameras = [camera.name for camera in self.cameras]
        if len(set(cameras)) != len(cameras):
            raise ValueError(f"camera names must be unique, got {cameras}")

    @classmethod
    def load(cls, name_or_path: str | Path, overrides: list[str] | None = None) -> EmbodimentSpec:
        """Load a preset by name (``"panda"`` -> ``configs/robots/panda.yaml``) or a YAML path."""
        return load_config(cls, preset_path("robots", name_or_path), overrides=overrides or [])

    @property
    def joint_names(self) -> list[str]:
        return [joint.name for joint in self.joints]

    @property
    def dof(self) -> int:
        """Number of actuated arm joints J (the gripper not included)."""
        return len(self.joints)

    @property
    def state_dim(self) -> int:
        """Length of the proprioceptive state vector: J joint positions + 1 gripper opening."""
        return self.dof + 1

    @property
    def action_dim(self) -> int:
        """Length A of one action in :attr:`action_space`."""
        return self.dof + 1 if self.action_space is ActionSpace.JOINT_POSITION else 7

    @property
    def control_period(self) -> float:
        """Seconds between two actions."""
        return 1.0 / self.control_rate_hz

    @property
    def position_limits(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(lower, upper), each (J,) rad."""
        return (np.array([j.lower for j in self.joints]), np.array([j.upper for j in self.joints]))

    @property
    def velocity_limits(self) -> NDArray[np.float64]:
        """(J,) rad/s."""
        return np.array([j.max_velocity for j in self.joints])

    @property
    def acceleration_limits(self) -> NDArray[np.float64]:
        """(J,) rad/s^2."""
        return np.array([j.max_acceleration for j in self.joints])

    def camera(self, name: str) -> CameraSpec:
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise EmbodimentMismatchError(
            f"robot {self.name!r} has no camera {name!r}; it has {[c.name for c in self.cameras]}"
        )

    def check_observation(self, observation: Observation) -> None:
        """Raise :class:`EmbodimentMismatchError` naming the first field that does not fit this robot."""
        if observation.joint_positions.shape != (self.dof,):
            raise EmbodimentMismatchError(
                f"observation.joint_positions has shape {observation.joint_positions.shape}, "
                f"robot {self.name!r} has {self.dof} joints {self.joint_names}"
            )
        for name, image in observation.images.items():
            spec = self.camera(name)
            if image.shape != (spec.height, spec.width, 3):
                raise EmbodimentMismatchError(
                    f"observation.images[{name!r}] has shape {image.shape}, "
                    f"camera {name!r} of {self.name!r} is {spec.height}x{spec.width}x3"
                )
        for name, depth in observation.depths.items():
            spec = self.camera(name)
            if depth.shape != (spec.height, spec.width):
                raise EmbodimentMismatchError(
                    f"observation.depths[{name!r}] has shape {depth.shape}, camera is {spec.height}x{spec.width}"
                )

    def check_action_chunk(self, chunk: ActionChunk) -> None:
        """Raise :class:`EmbodimentMismatchError` if the chunk's action size or rate differs from this robot's."""
        if chunk.action_dim != self.action_dim:
            raise EmbodimentMismatchError(
                f"action chunk has A={chunk.action_dim}, robot {self.name!r} takes A={self.action_dim} "
                f"({self.action_space.value})"
            )
        if not np.isclose(chunk.dt, self.control_period, rtol=1e-6):
            raise EmbodimentMismatchError(
                f"action chunk dt={chunk.dt} s, robot {self.name!r} runs at {self.control_rate_hz} Hz "
                f"(dt={self.control_period} s)"
            )
