"""check_motion: every refusal names the component, the value and the limit."""

from __future__ import annotations

import numpy as np
import pytest

from tiers.core.embodiment import EmbodimentSpec
from tiers.policies.high.safety import UnsafeMotionError, Workspace, check_motion
from tiers.services.kinematics import ArmKinematics
from tiers.sim.kitchen.env import KitchenEnv


def test_refuses_unsafe_actions_and_passes_safe_ones(kitchen: KitchenEnv) -> None:
    spec: EmbodimentSpec = kitchen.embodiment
    kinematics = ArmKinematics(kitchen.backend.model, joint_names=spec.joint_names, site_name=spec.ee_frame)

    def forward(q: np.ndarray) -> np.ndarray:
        return kinematics.forward(q)[0]

    home = np.append(np.asarray(spec.home, dtype=np.float64), 0.04)
    check_motion(home, spec, previous=home, forward=forward, workspace=Workspace())
    with pytest.raises(UnsafeMotionError, match="non-finite"):
        check_motion(np.where(np.arange(len(home)) == 2, np.nan, home), spec)
    too_far = home.copy()
    too_far[3] = spec.position_limits[1][3] + 0.1
    with pytest.raises(UnsafeMotionError, match=rf"joint {spec.joint_names[3]} target .* outside its limits"):
        check_motion(too_far, spec)
    jump = home.copy()
    jump[0] += 0.5  # 0.5 rad in one 50 ms step
    with pytest.raises(UnsafeMotionError, match=rf"joint {spec.joint_names[0]} moves 0.5000 rad in one step"):
        check_motion(jump, spec, previous=home)
    with pytest.raises(UnsafeMotionError, match="gripper target"):
        check_motion(np.append(home[:-1], 0.5), spec)
    with pytest.raises(UnsafeMotionError, match="outside the workspace"):
        check_motion(home, spec, forward=forward, workspace=Workspace(low=(0.5, -1, -1), high=(1, 1, 1)))
    with pytest.raises(UnsafeMotionError, match="shape"):
        check_motion(home[:-1], spec)
