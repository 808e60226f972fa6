"""Message conversions round-trip, and the hierarchy node's lifecycle refuses bad or unconfirmed parameters."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 tests need rclpy: pip install 'tiers[ros]'")

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError
from tiers.deploy.ros import messages as rm

SPEC = EmbodimentSpec.load("panda")
ACTION = np.array([0.1, -0.7, 0.2, -2.3, 0.0, 1.6, 0.8, 0.06])


def test_both_command_conventions_round_trip() -> None:
    trajectory = rm.joint_trajectory_message(SPEC, ACTION, 0.05, 12.5)
    assert list(trajectory.joint_names) == [*SPEC.joint_names, "panda_finger_joint1"]
    assert trajectory.points[0].positions[-1] == pytest.approx(0.03)  # one finger: half the opening
    assert trajectory.points[0].time_from_start.nanosec == 50_000_000
    np.testing.assert_allclose(rm.action_from_joint_trajectory(SPEC, trajectory), ACTION)
    np.testing.assert_allclose(rm.action_from_float64_array(SPEC, rm.float64_array_message(SPEC, ACTION)), ACTION)
    short = rm.float64_array_message(SPEC, ACTION)
    short.data = short.data[:5]
    with pytest.raises(ContractError, match="expected 8"):
        rm.action_from_float64_array(SPEC, short)


def test_images_depth_camera_info_and_pose_round_trip() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rm.image_from_message(rm.image_message(image, 1.0, "cam")), image)
    bgr = rm.image_message(image[..., ::-1].copy(), 1.0, "cam")
    bgr.encoding = "bgr8"
    np.testing.assert_array_equal(rm.image_from_message(bgr), image)
    depth = rng.uniform(0.2, 3.0, (24, 32)).astype(np.float32)
    np.testing.assert_array_equal(rm.depth_from_message(rm.depth_message(depth, 1.0, "cam")), depth)
    intrinsics = np.array([[100.0, 0, 15.5], [0, 100.0, 11.5], [0, 0, 1]])
    k, width, height = rm.intrinsics_from_camera_info(rm.camera_info_message(intrinsics, 32, 24, 1.0, "cam"))
    np.testing.assert_allclose(k, intrinsics)
    assert (width, height) == (32, 24)
    pose = np.eye(4)
    pose[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    pose[:3, 3] = [0.5, -0.2, 1.0]
    np.testing.assert_allclose(rm.matrix_from_pose(rm.pose_message(pose, 1.0, "panda_link0")), pose, atol=1e-12)
    mono = rm.image_message(image, 1.0, "cam")
    mono.encoding = "mono8"
    with pytest.raises(ContractError, match="mono8"):
        rm.image_from_message(mono)


@pytest.mark.ros
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"profile": "real"}, "confirm_real_robot"),
        ({"command_interface": "velocity"}, "command_interface='velocity'"),
        ({"cameras": ["back"]}, "no camera 'back'"),
        ({"profile": "real", "confirm_real_robot": True, "controller": "probe:1"}, "simulation only"),
    ],
)
def test_configure_refuses_bad_parameters_naming_them(overrides: dict[str, object], message: str) -> None:
    import rclpy
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from tiers.deploy.ros.hierarchy_node import HierarchyNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=100)
    try:
        node = HierarchyNode(
            context=context, parameter_overrides=[Parameter(key, value=value) for key, value in overrides.items()]
        )
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.configure_error is not None and message in node.configure_error, node.configure_error
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
