"""The reward library: each term's gradient, followed through the torch FK, improves what it claims to."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from tiers.core.ee_path import EEPath
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.guidance import Guidance, guidance_gradient
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.rewards import (
    follow_path,
    gripper_command,
    keep_clear_of_points,
    keep_orientation,
    keep_out_of_region,
    reach_keypoint,
    stay_above_surface,
    tool_trajectory,
)
from tiers.sim.mujoco import SCENE_XML

SPEC = EmbodimentSpec.load("panda")


@pytest.fixture(scope="module")
def fk() -> ArmFK:
    model = mujoco.MjModel.from_xml_path(str(SCENE_XML))
    return ArmFK.from_model(model, joint_names=SPEC.joint_names, site_name=SPEC.ee_frame)


def home_chunk(batch: int = 2, steps: int = 6) -> torch.Tensor:
    action = torch.tensor([*SPEC.home, 0.04], dtype=torch.float32)
    return action.expand(batch, steps, -1).clone()


def ascend(term: Guidance, actions: torch.Tensor, *, rate: float = 0.05, iterations: int = 60) -> torch.Tensor:
    for _ in range(iterations):
        _, gradient = guidance_gradient([term], actions)
        actions = actions + rate * gradient
    return actions


def test_reach_keypoint_moves_the_tool_to_the_point(fk: ArmFK) -> None:
    point = np.array([0.45, 0.1, 0.25])
    term = reach_keypoint(fk, point, weight=1.0)
    start = home_chunk()
    before, after = term(start), term(ascend(term, start, rate=0.5))
    assert float(after.mean()) > float(before.mean()) + 0.1
    assert float(-after.max()) < 0.06  # from 29 cm away to within 6 cm in 60 plain gradient steps
    with pytest.raises(ValueError, match="at must be"):
        reach_keypoint(fk, point, at="first")


def test_clearance_surface_and_region_terms(fk: ArmFK) -> None:
    start = home_chunk()
    position = tool_trajectory(fk, start)[0][0, 0].detach().numpy()
    # a point cloud right at the tool: the keep-clear gradient pushes the tool away from it
    cloud = position + np.random.default_rng(0).normal(0, 0.005, size=(50, 3))
    clear = keep_clear_of_points(fk, cloud, margin=0.06)
    assert float(clear(start).max()) < 0
    moved = ascend(clear, start, rate=20.0, iterations=20)
    assert float(clear(moved).min()) > float(clear(start).min())
    assert float(keep_clear_of_points(fk, np.zeros((0, 3)))(start).abs().max()) == 0.0
    above = stay_above_surface(fk, height=position[2] + 0.05)
    lifted = tool_trajectory(fk, ascend(above, start, rate=20.0, iterations=30))[0]
    assert float(lifted[..., 2].min()) > position[2] + 0.02
    region = keep_out_of_region(fk, position - 0.05, position + 0.05)
    assert float(region(start).max()) < 0 and float(
        region(ascend(region, start, rate=20.0, iterations=20)).min()
    ) > float(region(start).min())


def test_orientation_and_gripper_terms(fk: ArmFK) -> None:
    start = home_chunk()
    down = keep_orientation(fk)
    assert float(down(start).max()) > -1e-3  # home points the tool down already
    sideways = keep_orientation(fk, (1.0, 0.0, 0.0))
    assert float(sideways(ascend(sideways, start, rate=2.0)).mean()) > float(sideways(start).mean()) + 0.2
    shut = gripper_command(0.0)
    assert float(shut(ascend(shut, start, rate=5.0)).max()) > float(shut(start).max())


def test_path_tracking_is_best_on_the_path(fk: ArmFK) -> None:
    home = torch.tensor(SPEC.home, dtype=torch.float32)
    position, rotation = fk(home)
    from tiers.policies.mid.kinematics import rotation_to_quaternion

    quaternion = rotation_to_quaternion(rotation.double().numpy())
    start = np.concatenate([position.double().numpy(), quaternion])
    end = start.copy()
    end[2] -= 0.1
    path = EEPath(np.stack([start, end]), np.array([0.0, 2.0]), np.array([0.04, 0.04]))
    track = follow_path(fk, path, start_time=0.0, dt=0.05)
    chunk = home_chunk(1, 8)
    on_path = float(track(chunk))  # the path starts at home and moves 1 cm in 8 steps: home is near it
    away = chunk.clone()
    away[..., 0] += 0.3
    assert on_path > float(track(away))
    improved = ascend(track, away, rate=10.0, iterations=30)
    assert float(track(improved)) > float(track(away))


def test_terms_of_one_evaluation_share_one_forward_kinematics(fk: ArmFK) -> None:
    calls: list[int] = []
    point = np.array([0.45, 0.1, 0.25])
    terms = [reach_keypoint(fk, point), keep_orientation(fk), stay_above_surface(fk, 0.1)]
    actions = home_chunk() + 0.05 * torch.randn(2, 6, SPEC.dof + 1)
    expected = [guidance_gradient([term], actions) for term in terms]  # one term at a time
    handle = fk.register_forward_hook(lambda *_: calls.append(1))
    try:
        reward, gradient = guidance_gradient(terms, actions)
        assert len(calls) == 1  # one FK (and one autograd graph) for the three terms
        guidance_gradient(terms, actions)  # a new evaluation (a new leaf tensor): the FK runs again
        assert len(calls) == 2
    finally:
        handle.remove()
    torch.testing.assert_close(reward, sum(r for r, _ in expected))
    torch.testing.assert_close(gradient, sum(g for _, g in expected))
