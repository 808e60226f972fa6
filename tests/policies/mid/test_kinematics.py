"""Torch forward kinematics against MuJoCo's own, and its gradients."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from tiers.core.embodiment import EmbodimentSpec
from tiers.policies.mid.kinematics import ArmFK
from tiers.sim.mujoco import SCENE_XML


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_path(str(SCENE_XML))


def test_fk_matches_mujoco_at_random_configurations(model: mujoco.MjModel) -> None:
    spec = EmbodimentSpec.load("panda")
    fk = ArmFK.from_model(model, joint_names=spec.joint_names, site_name=spec.ee_frame).double()
    lower, upper = spec.position_limits
    q = np.random.default_rng(0).uniform(lower, upper, size=(50, spec.dof))
    positions, rotations = fk(torch.from_numpy(q))
    data = mujoco.MjData(model)
    address = [model.jnt_qposadr[model.joint(name).id] for name in spec.joint_names]
    site = model.site(spec.ee_frame).id
    for row, values in enumerate(q):
        data.qpos[address] = values
        mujoco.mj_kinematics(model, data)
        np.testing.assert_allclose(positions[row].numpy(), data.site_xpos[site], atol=1e-6)
        np.testing.assert_allclose(rotations[row].numpy(), data.site_xmat[site].reshape(3, 3), atol=1e-6)
    # every link frame too (used to strip the robot from point clouds)
    link_positions, _ = fk.link_frames(torch.from_numpy(q[-1]))
    for index, name in enumerate(fk.link_names):
        np.testing.assert_allclose(link_positions[index].numpy(), data.xpos[model.body(name).id], atol=1e-6)


def test_fk_gradients_are_exact(model: mujoco.MjModel) -> None:
    spec = EmbodimentSpec.load("panda")
    fk = ArmFK.from_model(model, joint_names=spec.joint_names, site_name=spec.ee_frame).double()
    q = torch.tensor([spec.home], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: fk(x)[0], (q,))
    assert torch.autograd.gradcheck(lambda x: fk(x)[1], (q,))


def test_fk_batches_float32_and_rejects_bad_input(model: mujoco.MjModel) -> None:
    spec = EmbodimentSpec.load("panda")
    fk = ArmFK.from_model(model, joint_names=spec.joint_names, site_name=spec.ee_frame)
    position, rotation = fk(torch.zeros(4, 16, spec.dof))
    assert position.shape == (4, 16, 3) and rotation.shape == (4, 16, 3, 3) and position.dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(\.\.\., 7\)"):
        fk(torch.zeros(3, 6))
    with pytest.raises(ValueError, match="not in the model"):
        ArmFK.from_model(model, joint_names=["nope", *spec.joint_names[1:]], site_name=spec.ee_frame)
    with pytest.raises(ValueError, match="not among"):
        ArmFK.from_model(model, joint_names=spec.joint_names[:-1], site_name=spec.ee_frame)
