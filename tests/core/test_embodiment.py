"""EmbodimentSpec: the shipped Panda, and mismatches named when policies, observations and robots meet."""

from __future__ import annotations

import numpy as np
import pytest

from tiers.core import (
    ActionChunk,
    ActionSpace,
    CameraModel,
    ConfigError,
    EmbodimentMismatchError,
    EmbodimentSpec,
    MissingExtraError,
    Observation,
)
from tiers.core.extras import EXTRA_OF_MODULE, is_available, require
from tiers.sim.isaac.preflight import check_isaac_requirements


@pytest.fixture(scope="module")
def panda() -> EmbodimentSpec:
    return EmbodimentSpec.load("panda")


def test_panda_has_frankas_joints_and_limits(panda: EmbodimentSpec) -> None:
    assert panda.joint_names == [f"panda_joint{i}" for i in range(1, 8)]
    lower, upper = panda.position_limits
    # Franka's published limits (rad, rad/s)
    np.testing.assert_allclose(upper, [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973])
    np.testing.assert_allclose(lower, [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973])
    np.testing.assert_allclose(panda.velocity_limits, [2.175] * 4 + [2.61] * 3)
    assert panda.gripper.joint_names == ["panda_finger_joint1", "panda_finger_joint2"]
    assert panda.gripper.max_opening == pytest.approx(0.08)
    assert (panda.dof, panda.state_dim, panda.action_dim) == (7, 8, 8)
    assert panda.action_space is ActionSpace.JOINT_POSITION
    assert panda.control_period == pytest.approx(0.05)
    assert {camera.name for camera in panda.cameras} == {"front", "wrist", "top"}
    assert panda.camera("front").depth


def test_ee_delta_action_space_is_seven_wide(panda: EmbodimentSpec) -> None:
    assert EmbodimentSpec.load("panda", overrides=["action_space=ee_delta"]).action_dim == 7


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("home=[0, 0, 0]", "home has 3 values for 7 joints"),
        ("home.3=0.5", r"home value 0.5 of 'panda_joint4' is outside \[-3.0718, -0.0698\]"),
        ("joints.1.lower=2.0", "lower limit 2.0 must be below upper limit 1.7628"),
        ("joints.2.max_velocity=0", "max_velocity must be positive"),
        ("joints.1.name=panda_joint1", "joint names must be unique"),
        ("control_rate_hz=0", "control_rate_hz must be positive"),
        ("action_space=torque", "action_space"),
        ("cameras.0.fovy_deg=200", r"fovy_deg must be in \(0, 180\)"),
    ],
)
def test_bad_robot_configs_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EmbodimentSpec.load("panda", overrides=[override])


def _observation(
    panda: EmbodimentSpec, joints: int = 7, image_shape: tuple[int, int, int] = (128, 128, 3)
) -> Observation:
    camera = CameraModel.from_fovy(
        width=image_shape[1], height=image_shape[0], fovy_deg=58.0, base_from_camera=np.eye(4)
    )
    return Observation(
        joint_positions=np.zeros(joints),
        joint_velocities=np.zeros(joints),
        ee_pose=np.array([0.3, 0, 0.5, 1, 0, 0, 0]),
        gripper_opening=0.04,
        timestamp=0.0,
        images={"front": np.zeros(image_shape, np.uint8)},
        cameras={"front": camera},
    )


def test_observation_must_fit_the_robot(panda: EmbodimentSpec) -> None:
    panda.check_observation(_observation(panda))
    with pytest.raises(EmbodimentMismatchError, match="has 7 joints"):
        panda.check_observation(_observation(panda, joints=6))
    with pytest.raises(EmbodimentMismatchError, match=r"images\['front'\] has shape \(64, 64, 3\).*128x128x3"):
        panda.check_observation(_observation(panda, image_shape=(64, 64, 3)))


def test_action_chunk_must_fit_the_robot(panda: EmbodimentSpec) -> None:
    panda.check_action_chunk(ActionChunk(np.zeros((1, 4, 8)), start_time=0.0, dt=0.05))
    with pytest.raises(EmbodimentMismatchError, match="A=7, robot 'panda' takes A=8"):
        panda.check_action_chunk(ActionChunk(np.zeros((1, 4, 7)), start_time=0.0, dt=0.05))
    with pytest.raises(EmbodimentMismatchError, match=r"runs at 20\.0 Hz"):
        panda.check_action_chunk(ActionChunk(np.zeros((1, 4, 8)), start_time=0.0, dt=0.1))
    with pytest.raises(EmbodimentMismatchError, match="has no camera 'side'"):
        panda.camera("side")


def test_missing_optional_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_available("mujoco")
    # a module that is never installed, mapped to an extra: the message names the extra wherever this runs
    monkeypatch.setitem(EXTRA_OF_MODULE, "tiers_absent_extra_module", "isaacsim")
    assert not is_available("tiers_absent_extra_module")
    with pytest.raises(MissingExtraError, match=r"the Isaac Sim backend needs .*pip install 'tiers\[isaacsim\]'"):
        require("tiers_absent_extra_module", purpose="the Isaac Sim backend")
    # Isaac Sim itself: unavailable here only where the preflight says its package is missing (never imported:
    # importing isaacsim can end the process)
    package_missing = any("isaacsim package is not installed" in item for item in check_isaac_requirements())
    assert is_available("isaacsim") == (not package_missing)
    if package_missing:
        with pytest.raises(
            MissingExtraError, match=r"the Isaac Sim backend needs .*'isaacsim'.*pip install 'tiers\[isaacsim\]'"
        ):
            require("isaacsim", purpose="the Isaac Sim backend")
    assert require("rclpy", purpose="the ROS nodes").__name__ == "rclpy"
