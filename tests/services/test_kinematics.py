"""Damped-least-squares IK of the Panda's TCP: round trips through FK, and a wrist turned against its limit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tiers.core.ee_path import xyzw_to_wxyz
from tiers.core.embodiment import EmbodimentSpec
from tiers.services.kinematics import ArmKinematics


@pytest.fixture(scope="module")
def arm() -> tuple[ArmKinematics, np.ndarray]:
    spec = EmbodimentSpec.load("panda")
    return ArmKinematics.for_robot(spec), np.asarray(spec.home, dtype=np.float64)


def test_ik_reaches_poses_sampled_by_forward_kinematics(arm: tuple[ArmKinematics, np.ndarray]) -> None:
    kinematics, home = arm
    rng = np.random.default_rng(0)
    for _ in range(40):
        target = np.clip(home + rng.normal(0.0, 0.5, len(home)), kinematics.lower, kinematics.upper)
        position, quaternion = kinematics.forward(target)
        result = kinematics.solve(position, quaternion, q_init=home, q_rest=home, max_iterations=150)
        assert result.success, (target, result)
        reached, turned = kinematics.forward(result.qpos)
        assert np.linalg.norm(reached - position) < 1e-3
        assert 2 * np.arccos(min(1.0, abs(float(np.dot(turned, quaternion))))) < 1e-2
        assert np.all(result.qpos >= kinematics.lower) and np.all(result.qpos <= kinematics.upper)


def test_a_wrist_turned_half_a_turn_from_home_is_reached_past_its_limit(arm: tuple[ArmKinematics, np.ndarray]) -> None:
    # a top-down tool whose closing axis is turned ~pi from home's: the shortest turn drives the last joint into
    # its limit; the other joints must take over (the rest pull through the clipped joint used to stall it)
    kinematics, home = arm
    matrix = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]).T  # columns: tool x, y, z
    quaternion = xyzw_to_wxyz(Rotation.from_matrix(matrix).as_quat())
    result = kinematics.solve([0.382, -0.08, 0.028], quaternion, q_init=home, q_rest=home, max_iterations=150)
    assert result.success, result
