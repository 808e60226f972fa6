"""Export the kitchen (or any MuJoCo scene of the benchmark) to a USD stage with UsdPhysics schemas.

The stage is written from the compiled MuJoCo model at a layout's initial state, so names, frames and
values are MuJoCo's by construction; an Isaac Sim backend loads it to simulate the same task. Runs on the
CPU with ``usd-core`` (``pip install 'tiers[usd]'``).

Stage conventions:
    - Z up, 1 unit = 1 m, 1 kg per mass unit; the default prim is ``/World``; the robot base frame is the
      world frame, as in MuJoCo.
    - Bodies are flat children of ``/World`` (``/World/<body>``) posed in the world at the initial state;
      geoms and cameras riding on a body are its children, posed in the body frame.
    - Movable bodies get ``RigidBodyAPI`` + ``MassAPI`` (mass, centre of mass, principal inertia); bodies
      welded to the world are static colliders; the robot base is fixed to the world by a ``FixedJoint`` and
      carries ``ArticulationRootAPI``; a body welded to a movable parent (the hand) is fixed to it.
    - MuJoCo hinge/slide joints become ``RevoluteJoint`` / ``PrismaticJoint`` under ``/World/joints`` with
      the joint axis as the joint frame's X axis; the two frames coincide at MuJoCo's joint value 0, so a
      reader measures MuJoCo's joint values (the exported state reads ``tiers:initial_position``).
      UsdPhysics measures angles in DEGREES: revolute limits, drive targets, and angular drive gains
      (N·m/deg = N·m/rad · π/180) are converted.
    - MuJoCo position actuators become drives: stiffness = kp, damping = kv (converted as above); the
      gripper's single opening actuator becomes one linear drive per finger with half the opening as target.
    - Cameras are ``UsdGeom.Camera`` (looking along -Z, +Y up: MuJoCo's camera frame too) with apertures
      giving MuJoCo's vertical field of view at the embodiment's image size.
    - Task regions and handles (MuJoCo sites) are ``Xform`` s under ``<body>/sites/`` with a ``tiers:half_size``
      attribute (m).
"""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import EmbodimentMismatchError
from tiers.core.extras import require
from tiers.sim.kitchen.layout import KitchenLayout, sample_layout
from tiers.sim.mujoco.scene_index import GRIPPER_ACTUATOR

FOCAL_LENGTH = 18.0  # camera focal length in USD's aperture units (tenths of a scene unit); only ratios matter
JOINT_SCOPE = "joints"  # /World/joints/<name>


def _quat(wxyz: NDArray[np.float64]) -> object:
    """Single-precision quaternion, the type of UsdPhysics' frame and inertia attributes."""
    from pxr import Gf

    return Gf.Quatf(float(wxyz[0]), Gf.Vec3f(*(float(v) for v in wxyz[1:])))


def _pose(xformable: object, position: NDArray[np.float64], wxyz: NDArray[np.float64]) -> None:
    """Translate + orient ops in double precision (poses must round-trip to MuJoCo's within 1e-6)."""
    from pxr import Gf, UsdGeom

    xformable.AddTranslateOp().Set(Gf.Vec3d(*np.asarray(position, dtype=np.float64).tolist()))  # type: ignore[attr-defined]
    orient = xformable.AddOrientOp(UsdGeom.XformOp.PrecisionDouble)  # type: ignore[attr-defined]
    orient.Set(Gf.Quatd(float(wxyz[0]), Gf.Vec3d(*(float(v) for v in wxyz[1:]))))


def _frame_rotation_with_x_along(axis: NDArray[np.float64]) -> NDArray[np.float64]:
    """(4,) wxyz quaternion of a frame whose X axis points along ``axis`` (3,), in the axis's frame."""
    x = axis / np.linalg.norm(axis)
    helper = np.array([0.0, 0.0, 1.0]) if abs(x[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    y = np.cross(helper, x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    quaternion = np.empty(4)
    mujoco.mju_mat2Quat(quaternion, np.column_stack([x, y, z]).ravel())
    return quaternion


def _in_body_frame(
    data: mujoco.MjData, body: int, point: NDArray[np.float64], quaternion: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A world pose (point (3,), quaternion wxyz (4,)) expressed in the frame of ``body`` (world if 0)."""
    rotation = data.xmat[body].reshape(3, 3)
    local_point = rotation.T @ (point - data.xpos[body])
    inverse = np.empty(4)
    mujoco.mju_negQuat(inverse, data.xquat[body])
    local_quaternion = np.empty(4)
    mujoco.mju_mulQuat(local_quaternion, inverse, quaternion)
    return local_point, local_quaternion


def _child_frame_at_zero(
    local: NDArray[np.float64], quaternion: NDArray[np.float64], value: float, revolute: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The child-side joint frame (position (3,), wxyz (4,) in the child body) moved by the joint's motion
    at ``value`` (rad about, or m along, the frame's X axis).

    UsdPhysics measures a joint from body 0's frame to body 1's: frames that coincide read 0. At the exported
    state MuJoCo's joint reads ``value`` (the arm at home, a drawer ajar), and the limits and drive targets
    written are MuJoCo's absolute values, so the child's frame is set where body 0's frame moved by
    ``value`` lands: a reader (PhysX) then measures ``value`` there, as MuJoCo does.
    """
    if revolute:
        turn = np.array([math.cos(value / 2), math.sin(value / 2), 0.0, 0.0])  # about the frame's X
        turned = np.empty(4)
        mujoco.mju_mulQuat(turned, quaternion, turn)
        return local, turned
    x_axis = np.empty(3)
    mujoco.mju_rotVecQuat(x_axis, np.array([1.0, 0.0, 0.0]), quaternion)
    return local + value * x_axis, quaternion


class _StageWriter:
    """Writes one stage from a MuJoCo model and data (the initial state)."""

    def __init__(self, model: mujoco.MjModel, data: mujoco.MjData, spec: EmbodimentSpec, path: Path):
        require("pxr", purpose="USD export")
        from pxr import Usd, UsdGeom, UsdPhysics

        self.model, self.data, self.spec = model, data, spec
        self.stage = Usd.Stage.CreateNew(str(path))
        UsdGeom.SetStageUpAxis(self.stage, UsdGeom.Tokens.z)
        UsdGeom.SetStageMetersPerUnit(self.stage, 1.0)
        UsdPhysics.SetStageKilogramsPerUnit(self.stage, 1.0)
        world = UsdGeom.Xform.Define(self.stage, "/World")
        self.stage.SetDefaultPrim(world.GetPrim())
        self.robot_bodies = self._subtree(model.body(spec.base_frame).id)

    def _subtree(self, root: int) -> set[int]:
        bodies = {root}
        for body in range(self.model.nbody):
            parent = body
            while parent not in (0, root):
                parent = int(self.model.body_parentid[parent])
            if parent == root:
                bodies.add(body)
        return bodies

    def body_path(self, body: int) -> str:
        return "/World" if body == 0 else f"/World/{self.model.body(body).name}"

    def write(self) -> None:
        from pxr import Gf, UsdPhysics

        scene = UsdPhysics.Scene.Define(self.stage, "/World/physicsScene")
        gravity = np.asarray(self.model.opt.gravity, dtype=np.float64)
        scene.CreateGravityDirectionAttr(Gf.Vec3f(*(gravity / np.linalg.norm(gravity)).tolist()))
        scene.CreateGravityMagnitudeAttr(float(np.linalg.norm(gravity)))
        scene.GetPrim().CreateAttribute("tiers:timestep", _sdf("Double")).Set(float(self.model.opt.timestep))
        for geom in np.flatnonzero(self.model.geom_bodyid == 0):  # the floor and walls: static colliders
            self._write_geom(int(geom))
        for body in range(1, self.model.nbody):
            self._write_body(body)
        for joint in range(self.model.njnt):
            if int(self.model.jnt_type[joint]) in (
                mujoco.mjtJoint.mjJNT_HINGE.value,
                mujoco.mjtJoint.mjJNT_SLIDE.value,
            ):
                self._write_joint(joint)
        for camera in range(self.model.ncam):
            self._write_camera(camera)
        for site in range(self.model.nsite):
            self._write_site(site)
        self.stage.GetRootLayer().Save()

    # -- bodies and geoms --------------------------------------------------------------------------------

    def _write_body(self, body: int) -> None:
        from pxr import Gf, UsdGeom, UsdPhysics

        model, data = self.model, self.data
        xform = UsdGeom.Xform.Define(self.stage, self.body_path(body))
        _pose(xform, data.xpos[body], data.xquat[body])
        prim = xform.GetPrim()
        parent = int(model.body_parentid[body])
        welded = model.body_jntnum[body] == 0
        static = welded and parent == 0 and body not in self.robot_bodies
        if not static:
            UsdPhysics.RigidBodyAPI.Apply(prim)
            mass = UsdPhysics.MassAPI.Apply(prim)
            mass.CreateMassAttr(float(model.body_mass[body]))
            mass.CreateCenterOfMassAttr(Gf.Vec3f(*model.body_ipos[body].tolist()))
            mass.CreateDiagonalInertiaAttr(Gf.Vec3f(*model.body_inertia[body].tolist()))
            mass.CreatePrincipalAxesAttr(_quat(model.body_iquat[body]))
        if welded and not static:  # the robot base (to the world) or the hand (to link 7)
            name = f"{model.body(body).name}_fixed"
            joint = UsdPhysics.FixedJoint.Define(self.stage, f"/World/{JOINT_SCOPE}/{name}")
            if parent != 0:
                joint.CreateBody0Rel().SetTargets([self.body_path(parent)])
            local, rotation = _in_body_frame(data, parent, data.xpos[body], data.xquat[body])
            joint.CreateLocalPos0Attr(Gf.Vec3f(*local.tolist()))
            joint.CreateLocalRot0Attr(_quat(rotation))
            joint.CreateBody1Rel().SetTargets([self.body_path(body)])
            joint.CreateLocalPos1Attr(Gf.Vec3f(0.0, 0.0, 0.0))
            joint.CreateLocalRot1Attr(Gf.Quatf(1.0))
        if self.model.body(body).name == self.spec.base_frame:
            UsdPhysics.ArticulationRootAPI.Apply(prim)
        for geom in np.flatnonzero(model.geom_bodyid == body):
            self._write_geom(int(geom))

    def _write_geom(self, geom: int) -> None:
        from pxr import Gf, UsdGeom, UsdPhysics, Vt

        model = self.model
        body = int(model.geom_bodyid[geom])
        name = model.geom(geom).name or f"geom_{geom}"
        path = f"{self.body_path(body)}/{name}"
        kind, size = model.geom_type[geom], model.geom_size[geom]
        shape: UsdGeom.Gprim
        scale = None
        if kind == mujoco.mjtGeom.mjGEOM_BOX:
            shape = UsdGeom.Cube.Define(self.stage, path)
            shape.CreateSizeAttr(2.0)
            scale = Gf.Vec3f(*size.tolist())  # a 2-unit cube scaled by the half sizes
        elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            shape = UsdGeom.Sphere.Define(self.stage, path)
            shape.CreateRadiusAttr(float(size[0]))
        elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            shape = UsdGeom.Capsule.Define(self.stage, path)
            shape.CreateRadiusAttr(float(size[0]))
            shape.CreateHeightAttr(float(2 * size[1]))  # the cylinder part; MuJoCo's size[1] is its half
            shape.CreateAxisAttr(UsdGeom.Tokens.z)
        elif kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
            shape = UsdGeom.Cylinder.Define(self.stage, path)
            shape.CreateRadiusAttr(float(size[0]))
            shape.CreateHeightAttr(float(2 * size[1]))
            shape.CreateAxisAttr(UsdGeom.Tokens.z)
        elif kind == mujoco.mjtGeom.mjGEOM_PLANE:
            shape = UsdGeom.Plane.Define(self.stage, path)
            shape.CreateAxisAttr(UsdGeom.Tokens.z)
            shape.CreateWidthAttr(float(2 * size[0]) if size[0] > 0 else 100.0)
            shape.CreateLengthAttr(float(2 * size[1]) if size[1] > 0 else 100.0)
        else:
            raise ValueError(f"geom {name!r}: MuJoCo geom type {kind} has no USD export")
        _pose(shape, model.geom_pos[geom], model.geom_quat[geom])
        if scale is not None:
            shape.AddScaleOp().Set(scale)
        material = int(model.geom_matid[geom])
        rgba = model.mat_rgba[material] if material >= 0 else model.geom_rgba[geom]
        shape.CreateDisplayColorAttr(Vt.Vec3fArray([Gf.Vec3f(*rgba[:3].tolist())]))
        shape.CreateDisplayOpacityAttr(Vt.FloatArray([float(rgba[3])]))
        if model.geom_contype[geom] or model.geom_conaffinity[geom]:
            UsdPhysics.CollisionAPI.Apply(shape.GetPrim())
            physics_material = UsdPhysics.MaterialAPI.Apply(shape.GetPrim())
            physics_material.CreateStaticFrictionAttr(float(model.geom_friction[geom, 0]))
            physics_material.CreateDynamicFrictionAttr(float(model.geom_friction[geom, 0]))
        else:
            shape.CreatePurposeAttr(UsdGeom.Tokens.render)  # visual only

    # -- joints and drives ---------------------------------------------------------------------------------

    def _write_joint(self, joint: int) -> None:
        from pxr import Gf, UsdPhysics

        model, data = self.model, self.data
        name = model.joint(joint).name
        child = int(model.jnt_bodyid[joint])
        parent = int(model.body_parentid[child])
        revolute = model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_HINGE
        path = f"/World/{JOINT_SCOPE}/{name}"
        usd_joint = (UsdPhysics.RevoluteJoint if revolute else UsdPhysics.PrismaticJoint).Define(self.stage, path)
        usd_joint.CreateAxisAttr(UsdPhysics.Tokens.x)
        frame = _frame_rotation_with_x_along(np.asarray(data.xaxis[joint], dtype=np.float64))  # in the world
        value = float(data.qpos[model.jnt_qposadr[joint]])  # rad or m at the exported state
        for body, position_attr, rotation_attr, relation in (
            (parent, usd_joint.CreateLocalPos0Attr, usd_joint.CreateLocalRot0Attr, usd_joint.CreateBody0Rel),
            (child, usd_joint.CreateLocalPos1Attr, usd_joint.CreateLocalRot1Attr, usd_joint.CreateBody1Rel),
        ):
            local, rotation = _in_body_frame(data, body, data.xanchor[joint], frame)
            if body == child:  # see _child_frame_at_zero
                local, rotation = _child_frame_at_zero(local, rotation, value, revolute)
            if body != 0:
                relation().SetTargets([self.body_path(body)])
            position_attr(Gf.Vec3f(*local.tolist()))
            rotation_attr(_quat(rotation))
        to_usd = math.degrees if revolute else float  # UsdPhysics angles are in degrees
        if model.jnt_limited[joint]:
            low, high = model.jnt_range[joint]
            usd_joint.CreateLowerLimitAttr(to_usd(float(low)))
            usd_joint.CreateUpperLimitAttr(to_usd(float(high)))
        self._write_drive(joint, usd_joint.GetPrim(), revolute)
        usd_joint.GetPrim().CreateAttribute("tiers:initial_position", _sdf("Double")).Set(
            to_usd(float(data.qpos[model.jnt_qposadr[joint]]))
        )

    def _write_drive(self, joint: int, prim: object, revolute: bool) -> None:
        """Position drive from the MuJoCo actuator driving ``joint`` (directly, or the gripper's tendon)."""
        from pxr import UsdPhysics

        model, data = self.model, self.data
        actuators = np.flatnonzero(
            (model.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT) & (model.actuator_trnid[:, 0] == joint)
        )
        name = model.joint(joint).name
        if actuators.size:
            actuator = int(actuators[0])
            target = float(data.ctrl[actuator])
        elif name in self.spec.gripper.joint_names:
            actuator = int(model.actuator(GRIPPER_ACTUATOR).id)
            target = float(data.ctrl[actuator]) / 2  # each finger travels half the opening
        else:
            return
        stiffness = float(model.actuator_gainprm[actuator, 0])  # kp: N·m/rad or N/m
        damping = float(-model.actuator_biasprm[actuator, 2])  # kv: N·m·s/rad or N·s/m
        scale = math.pi / 180 if revolute else 1.0  # per degree for angular drives
        drive = UsdPhysics.DriveAPI.Apply(prim, UsdPhysics.Tokens.angular if revolute else UsdPhysics.Tokens.linear)
        drive.CreateTypeAttr(UsdPhysics.Tokens.force)
        drive.CreateStiffnessAttr(stiffness * scale)
        drive.CreateDampingAttr(damping * scale)
        drive.CreateTargetPositionAttr(math.degrees(target) if revolute else target)
        force_limits = model.actuator_forcerange[actuator]
        if model.actuator_forcelimited[actuator]:
            drive.CreateMaxForceAttr(float(max(abs(force_limits[0]), abs(force_limits[1]))))

    # -- cameras and sites -------------------------------------------------------------------------------

    def _write_camera(self, camera: int) -> None:
        from pxr import Gf, UsdGeom

        model = self.model
        name = model.camera(camera).name
        body = int(model.cam_bodyid[camera])
        usd_camera = UsdGeom.Camera.Define(self.stage, f"{self.body_path(body)}/{name}")
        _pose(usd_camera, model.cam_pos[camera], model.cam_quat[camera])
        try:
            width, height = self.spec.camera(name).width, self.spec.camera(name).height
        except EmbodimentMismatchError:  # a scene camera the robot config does not list: square images
            width = height = 1
        vertical = 2 * FOCAL_LENGTH * math.tan(math.radians(float(model.cam_fovy[camera])) / 2)
        usd_camera.CreateFocalLengthAttr(FOCAL_LENGTH)
        usd_camera.CreateVerticalApertureAttr(vertical)
        usd_camera.CreateHorizontalApertureAttr(vertical * width / height)
        usd_camera.CreateClippingRangeAttr(Gf.Vec2f(0.01, 20.0))
        usd_camera.GetPrim().CreateAttribute("tiers:resolution", _sdf("Int2")).Set(Gf.Vec2i(width, height))

    def _write_site(self, site: int) -> None:
        from pxr import Gf, UsdGeom

        model = self.model
        body = int(model.site_bodyid[site])
        xform = UsdGeom.Xform.Define(self.stage, f"{self.body_path(body)}/sites/{model.site(site).name}")
        _pose(xform, model.site_pos[site], model.site_quat[site])
        xform.GetPrim().CreateAttribute("tiers:half_size", _sdf("Float3")).Set(
            Gf.Vec3f(*model.site_size[site].tolist())
        )


def _sdf(type_name: str) -> object:
    from pxr import Sdf

    return getattr(Sdf.ValueTypeNames, type_name)


def export_kitchen_stage(
    path: str | Path, *, layout: KitchenLayout | None = None, embodiment: str | EmbodimentSpec = "panda"
) -> Path:
    """Write the kitchen at ``layout``'s initial state (objects settled, arm at home) to a USD file.

    Args:
        path: the ``.usda`` (text) or ``.usd``/``.usdc`` (binary) file to write.
        layout: the episode's initial state; None: ``sample_layout(0)``.
        embodiment: the robot preset or spec.

    Returns:
        The path written.
    """
    from tiers.sim.mujoco.kitchen import MujocoKitchen

    kitchen = MujocoKitchen(embodiment, segmentation=False)
    try:
        kitchen.reset(layout if layout is not None else sample_layout(0), render=False)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()  # CreateNew refuses to overwrite
        _StageWriter(kitchen.model, kitchen.data, kitchen.embodiment, path).write()
    finally:
        kitchen.close()
    return path
