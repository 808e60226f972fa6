"""The kitchen exported to USD: every body, joint, limit, drive and camera of the MuJoCo model has its
counterpart with the same name, frame and value, read back with pxr."""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np
import pytest

pxr = pytest.importorskip("pxr", reason="USD export needs usd-core: pip install 'tiers[usd]'")
from pxr import Usd, UsdGeom, UsdPhysics  # noqa: E402

from tiers.core import EmbodimentSpec  # noqa: E402
from tiers.sim.kitchen.layout import sample_layout  # noqa: E402
from tiers.sim.mujoco.kitchen import MujocoKitchen  # noqa: E402
from tiers.sim.usd.export import export_kitchen_stage  # noqa: E402

LAYOUT = sample_layout(7, objects=["apple", "bowl"], articulations={"drawer": 0.15, "cabinet": 1.0})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Usd.Stage, MujocoKitchen]:
    path = export_kitchen_stage(tmp_path_factory.mktemp("usd") / "kitchen.usda", layout=LAYOUT)
    kitchen = MujocoKitchen("panda", segmentation=False)
    kitchen.reset(LAYOUT, render=False)  # the same initial state, to compare with
    yield Usd.Stage.Open(str(path)), kitchen
    kitchen.close()


def _world_pose(prim: Usd.Prim) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), rotation matrix (3, 3)) of a prim in the world."""
    matrix = np.array(UsdGeom.XformCache().GetLocalToWorldTransform(prim)).T  # Gf is row-vector convention
    return matrix[:3, 3], matrix[:3, :3]


def _rotation(quaternion: object) -> np.ndarray:
    real, imaginary = quaternion.GetReal(), quaternion.GetImaginary()  # type: ignore[attr-defined]
    result = np.empty(9)
    mujoco.mju_quat2Mat(result, np.array([real, *imaginary]))
    return result.reshape(3, 3)


def test_stage_conventions(exported: tuple[Usd.Stage, MujocoKitchen]) -> None:
    stage, _ = exported
    assert stage.GetDefaultPrim().GetPath() == "/World"
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    scene = UsdPhysics.Scene(stage.GetPrimAtPath("/World/physicsScene"))
    assert scene.GetGravityMagnitudeAttr().Get() == pytest.approx(9.81)


def test_every_body_is_there_where_mujoco_has_it(exported: tuple[Usd.Stage, MujocoKitchen]) -> None:
    stage, kitchen = exported
    model, data = kitchen.model, kitchen.data
    for body in range(1, model.nbody):
        name = model.body(body).name
        prim = stage.GetPrimAtPath(f"/World/{name}")
        assert prim.IsValid(), name
        position, rotation = _world_pose(prim)
        np.testing.assert_allclose(position, data.xpos[body], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(rotation, data.xmat[body].reshape(3, 3), atol=1e-5, err_msg=name)
        movable = model.body_jntnum[body] > 0 or name.startswith("panda_")
        assert prim.HasAPI(UsdPhysics.RigidBodyAPI) == movable, name
        if movable:
            assert UsdPhysics.MassAPI(prim).GetMassAttr().Get() == pytest.approx(model.body_mass[body], rel=1e-6)
    assert stage.GetPrimAtPath("/World/panda_link0").HasAPI(UsdPhysics.ArticulationRootAPI)
    # the layout's objects start where MuJoCo settled them; absent ones are parked
    apple = stage.GetPrimAtPath("/World/apple")
    np.testing.assert_allclose(_world_pose(apple)[0][:2], LAYOUT.objects["apple"].position[:2], atol=0.005)


def test_every_joint_has_its_counterpart(exported: tuple[Usd.Stage, MujocoKitchen]) -> None:
    stage, kitchen = exported
    model, data = kitchen.model, kitchen.data
    checked = 0
    for joint in range(model.njnt):
        if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_FREE:
            continue
        name = model.joint(joint).name
        prim = stage.GetPrimAtPath(f"/World/joints/{name}")
        revolute = model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_HINGE
        assert prim.IsA(UsdPhysics.RevoluteJoint if revolute else UsdPhysics.PrismaticJoint), name
        usd_joint = UsdPhysics.RevoluteJoint(prim) if revolute else UsdPhysics.PrismaticJoint(prim)
        to_usd = math.degrees if revolute else float
        low, high = model.jnt_range[joint]
        assert usd_joint.GetLowerLimitAttr().Get() == pytest.approx(to_usd(low), abs=1e-4), name
        assert usd_joint.GetUpperLimitAttr().Get() == pytest.approx(to_usd(high), abs=1e-4), name
        child = model.jnt_bodyid[joint]
        parent = model.body_parentid[child]
        assert usd_joint.GetBody1Rel().GetTargets() == [f"/World/{model.body(child).name}"]
        # both frames sit at the MuJoCo anchor with X along the MuJoCo axis; the child's is body 0's moved by
        # the joint value (so the stage reads MuJoCo's value): undo that motion, and they are one frame
        value = data.qpos[model.jnt_qposadr[joint]]
        frames = []
        for body, position_attr, rotation_attr in (
            (parent, usd_joint.GetLocalPos0Attr(), usd_joint.GetLocalRot0Attr()),
            (child, usd_joint.GetLocalPos1Attr(), usd_joint.GetLocalRot1Attr()),
        ):
            body_position, body_rotation = (data.xpos[body], data.xmat[body].reshape(3, 3))
            anchor = body_position + body_rotation @ np.array(position_attr.Get())
            frames.append((anchor, body_rotation @ _rotation(rotation_attr.Get())))
        (anchor, rotation), (child_anchor, child_rotation) = frames
        np.testing.assert_allclose(anchor, data.xanchor[joint], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(rotation[:, 0], data.xaxis[joint], atol=1e-5, err_msg=name)
        if revolute:
            c, s = math.cos(value), math.sin(value)
            turn = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])  # about the frame's X
            np.testing.assert_allclose(child_rotation, rotation @ turn, atol=1e-5, err_msg=name)
            np.testing.assert_allclose(child_anchor, anchor, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_allclose(child_rotation, rotation, atol=1e-5, err_msg=name)
            np.testing.assert_allclose(child_anchor, anchor + value * rotation[:, 0], atol=1e-5, err_msg=name)
        initial = prim.GetAttribute("tiers:initial_position").Get()
        assert initial == pytest.approx(to_usd(data.qpos[model.jnt_qposadr[joint]]), abs=1e-4), name
        checked += 1
    assert checked == 11  # 7 arm joints, 2 fingers, the drawer slide and the cabinet hinge
    drawer = stage.GetPrimAtPath("/World/joints/drawer_slide").GetAttribute("tiers:initial_position").Get()
    assert drawer == pytest.approx(0.15, abs=2e-3)


def test_arm_drives_carry_the_servo_gains_in_degrees(exported: tuple[Usd.Stage, MujocoKitchen]) -> None:
    stage, kitchen = exported
    model = kitchen.model
    spec = EmbodimentSpec.load("panda")
    for name, home in zip(spec.joint_names, spec.home, strict=True):
        drive = UsdPhysics.DriveAPI(stage.GetPrimAtPath(f"/World/joints/{name}"), UsdPhysics.Tokens.angular)
        actuator = next(a for a in range(model.nu) if model.actuator_trnid[a, 0] == model.joint(name).id)
        kp = model.actuator_gainprm[actuator, 0]
        assert drive.GetStiffnessAttr().Get() == pytest.approx(kp * math.pi / 180, rel=1e-5)
        assert drive.GetTargetPositionAttr().Get() == pytest.approx(math.degrees(home), abs=1e-3)
    for finger in spec.gripper.joint_names:
        drive = UsdPhysics.DriveAPI(stage.GetPrimAtPath(f"/World/joints/{finger}"), UsdPhysics.Tokens.linear)
        assert drive.GetTargetPositionAttr().Get() == pytest.approx(spec.gripper.max_opening / 2)


def test_cameras_keep_pose_and_field_of_view(exported: tuple[Usd.Stage, MujocoKitchen]) -> None:
    stage, kitchen = exported
    model, data = kitchen.model, kitchen.data
    paths = {"front": "/World/front", "top": "/World/top", "wrist": "/World/panda_hand/wrist"}
    for name, path in paths.items():
        prim = stage.GetPrimAtPath(path)
        camera = UsdGeom.Camera(prim)
        fovy = 2 * math.degrees(
            math.atan(camera.GetVerticalApertureAttr().Get() / 2 / camera.GetFocalLengthAttr().Get())
        )
        assert fovy == pytest.approx(model.cam_fovy[model.camera(name).id], abs=1e-3), name
        # USD and MuJoCo cameras share their frame (look along -Z, +Y up): poses compare directly
        position, rotation = _world_pose(prim)
        np.testing.assert_allclose(position, data.cam_xpos[model.camera(name).id], atol=1e-5, err_msg=name)
        np.testing.assert_allclose(rotation, data.cam_xmat[model.camera(name).id].reshape(3, 3), atol=1e-5)


def test_colliders_and_regions(exported: tuple[Usd.Stage, MujocoKitchen]) -> None:
    stage, kitchen = exported
    model = kitchen.model
    colliders = [p for p in stage.Traverse() if p.HasAPI(UsdPhysics.CollisionAPI)]
    assert len(colliders) == int(np.count_nonzero(model.geom_contype | model.geom_conaffinity))
    drawer_region = stage.GetPrimAtPath("/World/drawer/sites/drawer_interior")
    half = np.array(drawer_region.GetAttribute("tiers:half_size").Get())
    np.testing.assert_allclose(half, model.site_size[model.site("drawer_interior").id], atol=1e-6)


def test_export_overwrites_and_writes_binary(tmp_path: Path) -> None:
    path = tmp_path / "kitchen.usdc"
    export_kitchen_stage(path)
    first = path.stat().st_size
    export_kitchen_stage(path)
    assert path.stat().st_size == first > 10_000
    assert Usd.Stage.Open(str(path)).GetPrimAtPath("/World/panda_hand").IsValid()
