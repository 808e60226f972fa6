"""Every MJCF model shipped under sim/tiers/sim/assets compiles, steps cleanly and rests without penetration."""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
import pytest

from tiers.core.embodiment import EmbodimentSpec

ASSETS = Path(__file__).resolve().parents[2] / "sim" / "tiers" / "sim" / "assets"
MODELS = sorted(ASSETS.rglob("*.xml"))
MAX_PENETRATION = 0.003  # m, deepest contact allowed once things rest
PANDA = EmbodimentSpec.load("panda")


def _warnings(data: mujoco.MjData) -> dict[str, int]:
    return {
        mujoco.mjtWarning(i).name: int(data.warning[i].number)
        for i in range(len(data.warning))
        if data.warning[i].number > 0
    }


def _hold_arm_at_home(model: mujoco.MjModel, data: mujoco.MjData) -> None:
    """Start a model holding the Panda at its ready pose (the arm, if the model has one), gripper open."""
    for name, value in zip(PANDA.joint_names, PANDA.home, strict=True):
        joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if joint >= 0:
            data.qpos[model.jnt_qposadr[joint]] = value
            on_joint = model.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT
            actuator = np.flatnonzero(on_joint & (model.actuator_trnid[:, 0] == joint))
            data.ctrl[actuator] = value
    for finger in PANDA.gripper.joint_names:
        joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, finger)
        if joint >= 0:
            data.qpos[model.jnt_qposadr[joint]] = PANDA.gripper.max_opening / 2
    gripper = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, "panda_gripper")
    if gripper >= 0:
        data.ctrl[gripper] = PANDA.gripper.max_opening


def test_assets_are_found() -> None:
    names = {path.relative_to(ASSETS).as_posix() for path in MODELS}
    assert {"panda/panda.xml", "kitchen/scene.xml"} <= names


@pytest.mark.parametrize("path", MODELS, ids=[p.relative_to(ASSETS).as_posix() for p in MODELS])
def test_model_compiles_steps_and_rests(path: Path) -> None:
    model = mujoco.MjModel.from_xml_path(str(path))
    data = mujoco.MjData(model)
    _hold_arm_at_home(model, data)
    mujoco.mj_forward(model, data)
    assert not _warnings(data), f"{path.name}: MuJoCo warnings at the initial state: {_warnings(data)}"
    mujoco.mj_step(model, data, nstep=200)
    assert not _warnings(data), f"{path.name}: MuJoCo warnings after 200 steps: {_warnings(data)}"
    assert np.all(np.isfinite(data.qpos)) and np.all(np.isfinite(data.qvel))
    deepest = {
        (
            mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, int(c.geom[0])),
            mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, int(c.geom[1])),
        ): float(c.dist)
        for c in (data.contact[i] for i in range(data.ncon))
        if c.dist < -MAX_PENETRATION
    }
    assert not deepest, f"{path.name}: contacts penetrate deeper than {MAX_PENETRATION} m at rest: {deepest}"
    # at rest: nothing still falling or sliding
    assert np.max(np.abs(data.qvel)) < 0.05, f"{path.name}: not at rest, max |qvel| = {np.max(np.abs(data.qvel))}"
