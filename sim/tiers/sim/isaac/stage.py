"""What the Isaac Sim backend reads from (and fixes in) the kitchen's USD stage, with plain ``pxr``.

The stage is the one :func:`tiers.sim.usd.export.export_kitchen_stage` writes (see its conventions).
:class:`StageIndex` gathers once the static facts the runtime needs every step: prim paths of the
objects, fixtures, fingers and cameras; each object's shapes in its body frame (for bounds); the fixture
joints' frames; the region and tool sites. Nothing here needs Isaac Sim: with ``usd-core`` it runs on the
CPU, which is how it is tested.

Frames: every body prim is a child of ``/World`` (the robot base frame); shapes, sites and cameras are
posed in their body's frame. Positions in m, quaternions wxyz.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import EmbodimentMismatchError
from tiers.sim.isaac.geometry import IDENTITY, JointKind, Pose, box_bounds, quat_to_matrix, round_bounds
from tiers.sim.kitchen.layout import ARTICULATIONS, OBJECT_NAMES
from tiers.sim.mujoco.scene_index import FINGER_PADS, REGION_SITES, TRIM_SUFFIX
from tiers.sim.scene_state import Box


def _pose_of_matrix(matrix: Any) -> Pose:
    """Pose of a Gf.Matrix4d (row-vector convention, possibly scaled) -> (position, wxyz)."""
    m = np.array(matrix, dtype=np.float64).T  # column-vector convention
    rotation = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)  # drop the scale of scaled cubes
    return m[:3, 3].copy(), _matrix_to_quat(rotation)


def _matrix_to_quat(rotation: NDArray[np.float64]) -> NDArray[np.float64]:
    """(3, 3) rotation -> wxyz quaternion with w >= 0."""
    quaternion: NDArray[np.float64] = Rotation.from_matrix(rotation).as_quat(canonical=True, scalar_first=True)
    return quaternion


def _gf_quat(quaternion: Any) -> NDArray[np.float64]:
    return np.array([quaternion.GetReal(), *quaternion.GetImaginary()], dtype=np.float64)


@dataclass(frozen=True)
class ObjectShapes:
    """The shapes of one movable object in its body frame (for tight bounds, as MuJoCo's ``_ObjectBounds``).

    Attributes:
        box_positions, box_rotations, box_half: (B, 3), (B, 3, 3), (B, 3) box centres, orientations, half sizes.
        round_positions, round_rotations: (R, 3), (R, 3, 3) sphere/capsule/cylinder centres and orientations
            (their axis is the local Z).
        round_radius, round_half_length: (R,) m; spheres have half length 0.
        round_capsule: (R,) True for spheres and capsules, False for cylinders.
        paint_paths: prim paths of the shapes painted in the layout's colour (all but ``*_trim``).
    """

    box_positions: NDArray[np.float64]
    box_rotations: NDArray[np.float64]
    box_half: NDArray[np.float64]
    round_positions: NDArray[np.float64]
    round_rotations: NDArray[np.float64]
    round_radius: NDArray[np.float64]
    round_half_length: NDArray[np.float64]
    round_capsule: NDArray[np.bool_]
    paint_paths: tuple[str, ...]

    def bounds(self, pose: Pose) -> Box:
        """World axis-aligned bounds of the shapes with the body at ``pose`` (position m, wxyz)."""
        position, rotation = pose[0], quat_to_matrix(pose[1])
        lows, highs = [], []
        if len(self.box_half):
            low, high = box_bounds(
                np.zeros_like(self.box_half),
                self.box_half,
                position + self.box_positions @ rotation.T,
                rotation @ self.box_rotations,
            )
            lows.append(low)
            highs.append(high)
        if len(self.round_radius):
            low, high = round_bounds(
                self.round_radius,
                self.round_half_length,
                self.round_capsule,
                position + self.round_positions @ rotation.T,
                rotation @ self.round_rotations,
            )
            lows.append(low)
            highs.append(high)
        return Box(low=np.concatenate(lows).min(axis=0), high=np.concatenate(highs).max(axis=0))


@dataclass(frozen=True)
class FixtureJoint:
    """A fixture's joint (not in any articulation: PhysX solves it as a maximal-coordinate joint).

    Attributes:
        path: the joint prim.
        kind: revolute (rad) or prismatic (m) along the joint frame's X axis.
        child: path of the moving body (body1).
        parent_frame: world pose of body0 ∘ localPose0 (body0 is static or the world).
        local_child: localPose1, the joint frame in the child body.
    """

    path: str
    kind: JointKind
    child: str
    parent_frame: Pose
    local_child: Pose


@dataclass(frozen=True)
class Site:
    """A box site (region or tool point) on a body: ``body`` None for static bodies (then ``pose`` is in the
    world), else the body's prim path and ``pose`` in its frame. ``half_size``: (3,) m."""

    body: str | None
    pose: Pose
    half_size: NDArray[np.float64]


@dataclass(frozen=True)
class CameraMount:
    """A camera prim: its path, the moving body it rides on (None: static, ``pose`` in the world) and its pose
    in that body (USD camera frame: looks along -Z, +Y up, the same frame as MuJoCo's cameras)."""

    path: str
    body: str | None
    pose: Pose


@dataclass(frozen=True)
class StageIndex:
    """Static facts of the exported kitchen stage, read once."""

    robot_root: str  # prim with ArticulationRootAPI (the base frame body)
    object_paths: dict[str, str]  # object name -> body prim path, OBJECT_NAMES order
    object_shapes: dict[str, ObjectShapes]
    fixtures: dict[str, FixtureJoint]  # "drawer", "cabinet"
    regions: dict[str, Site]  # SceneState region name -> site
    tcp: Site  # the end-effector site (spec.ee_frame)
    finger_paths: tuple[str, str]  # bodies carrying the finger pads (left, right)
    cameras: dict[str, CameraMount]  # camera name -> mount

    @property
    def moving_bodies(self) -> tuple[str, ...]:
        """Prim paths of the non-object bodies whose poses the runtime tracks (fixture children, hand)."""
        bodies = {joint.child for joint in self.fixtures.values()}
        bodies |= {site.body for site in (*self.regions.values(), self.tcp) if site.body is not None}
        bodies |= {mount.body for mount in self.cameras.values() if mount.body is not None}
        return tuple(sorted(bodies))

    @classmethod
    def read(cls, stage: Any, spec: EmbodimentSpec) -> StageIndex:
        """Index ``stage`` (a ``pxr.Usd.Stage``) for robot ``spec``.

        Raises:
            EmbodimentMismatchError: a prim the runtime needs is missing; the message names it.
        """
        from pxr import UsdGeom, UsdPhysics

        cache = UsdGeom.XformCache()
        # names are unique per kind of prim only (a geom and a site may share one): one table per kind
        tables: dict[str, dict[str, Any]] = {"site": {}, "camera": {}, "other": {}}
        for prim in stage.Traverse():
            kind = "site" if prim.GetParent().GetName() == "sites" else "other"
            kind = "camera" if prim.IsA(UsdGeom.Camera) else kind
            tables[kind].setdefault(prim.GetName(), prim)

        def find(name: str, what: str, kind: str = "other") -> Any:
            if name not in tables[kind]:
                raise EmbodimentMismatchError(f"the kitchen stage has no {what} named {name!r}")
            return tables[kind][name]

        def moving(prim: Any) -> bool:
            return bool(prim.HasAPI(UsdPhysics.RigidBodyAPI))

        def site(prim: Any) -> Site:
            body = prim.GetParent().GetParent()  # <body>/sites/<site>
            half = np.array(prim.GetAttribute("tiers:half_size").Get(), dtype=np.float64)
            if moving(body):
                return Site(str(body.GetPath()), _pose_of_matrix(cache.ComputeRelativeTransform(prim, body)[0]), half)
            return Site(None, _pose_of_matrix(cache.GetLocalToWorldTransform(prim)), half)

        roots = [p for p in stage.Traverse() if p.HasAPI(UsdPhysics.ArticulationRootAPI)]
        if len(roots) != 1:
            raise EmbodimentMismatchError(f"the kitchen stage needs one articulation root, it has {len(roots)}")
        objects = {name: find(name, "object body") for name in OBJECT_NAMES}
        fixtures = {}
        for fixture, (joint_name, _, _) in ARTICULATIONS.items():
            fixtures[fixture] = _fixture_joint(find(joint_name, f"joint of the {fixture}"), stage, cache)
        cameras = {}
        for camera in spec.cameras:
            prim = find(camera.name, "camera", "camera")
            body = prim.GetParent()
            if moving(body):
                pose = _pose_of_matrix(cache.ComputeRelativeTransform(prim, body)[0])
                cameras[camera.name] = CameraMount(str(prim.GetPath()), str(body.GetPath()), pose)
            else:
                cameras[camera.name] = CameraMount(
                    str(prim.GetPath()), None, _pose_of_matrix(cache.GetLocalToWorldTransform(prim))
                )
        return cls(
            robot_root=str(roots[0].GetPath()),
            object_paths={name: str(prim.GetPath()) for name, prim in objects.items()},
            object_shapes={name: _object_shapes(prim, cache) for name, prim in objects.items()},
            fixtures=fixtures,
            regions={region: site(find(name, "region site", "site")) for region, name in REGION_SITES.items()},
            tcp=site(find(spec.ee_frame, "end-effector site", "site")),
            finger_paths=(
                str(find(FINGER_PADS[0], "finger pad").GetParent().GetPath()),
                str(find(FINGER_PADS[1], "finger pad").GetParent().GetPath()),
            ),
            cameras=cameras,
        )


def _fixture_joint(prim: Any, stage: Any, cache: Any) -> FixtureJoint:
    from pxr import UsdPhysics

    joint = UsdPhysics.Joint(prim)
    kind = JointKind.REVOLUTE if prim.IsA(UsdPhysics.RevoluteJoint) else JointKind.PRISMATIC
    parents = joint.GetBody0Rel().GetTargets()
    parent_pose = IDENTITY
    if parents:
        parent = stage.GetPrimAtPath(parents[0])
        if parent.HasAPI(UsdPhysics.RigidBodyAPI):
            raise EmbodimentMismatchError(f"fixture joint {prim.GetPath()}: its parent body must be static")
        parent_pose = _pose_of_matrix(cache.GetLocalToWorldTransform(parent))
    local_parent = (
        np.array(joint.GetLocalPos0Attr().Get(), dtype=np.float64),
        _gf_quat(joint.GetLocalRot0Attr().Get()),
    )
    from tiers.sim.isaac.geometry import compose

    return FixtureJoint(
        path=str(prim.GetPath()),
        kind=kind,
        child=str(joint.GetBody1Rel().GetTargets()[0]),
        parent_frame=compose(parent_pose, local_parent),
        local_child=(
            np.array(joint.GetLocalPos1Attr().Get(), dtype=np.float64),
            _gf_quat(joint.GetLocalRot1Attr().Get()),
        ),
    )


def _object_shapes(body: Any, cache: Any) -> ObjectShapes:
    from pxr import UsdGeom

    boxes: list[tuple[Pose, NDArray[np.float64]]] = []
    rounds: list[tuple[Pose, float, float, bool]] = []
    paint = []
    for prim in body.GetChildren():
        if not prim.IsA(UsdGeom.Gprim):
            continue
        matrix, _ = cache.ComputeRelativeTransform(prim, body)
        pose = _pose_of_matrix(matrix)
        if prim.IsA(UsdGeom.Cube):
            scale = np.linalg.norm(np.array(matrix, dtype=np.float64)[:3, :3], axis=1)  # row i: local axis i
            boxes.append((pose, scale * UsdGeom.Cube(prim).GetSizeAttr().Get() / 2))
        elif prim.IsA(UsdGeom.Sphere):
            rounds.append((pose, UsdGeom.Sphere(prim).GetRadiusAttr().Get(), 0.0, True))
        elif prim.IsA(UsdGeom.Capsule) or prim.IsA(UsdGeom.Cylinder):
            shape = UsdGeom.Capsule(prim) if prim.IsA(UsdGeom.Capsule) else UsdGeom.Cylinder(prim)
            if shape.GetAxisAttr().Get() != UsdGeom.Tokens.z:
                raise EmbodimentMismatchError(f"{prim.GetPath()}: round shapes must lie along Z")
            radius, height = shape.GetRadiusAttr().Get(), shape.GetHeightAttr().Get()
            rounds.append((pose, radius, height / 2, prim.IsA(UsdGeom.Capsule)))
        else:
            raise EmbodimentMismatchError(f"{prim.GetPath()}: unsupported object shape {prim.GetTypeName()}")
        if not prim.GetName().endswith(TRIM_SUFFIX):
            paint.append(str(prim.GetPath()))
    return ObjectShapes(
        box_positions=np.array([p[0] for p, _ in boxes]).reshape(-1, 3),
        box_rotations=quat_to_matrix(np.array([p[1] for p, _ in boxes]).reshape(-1, 4)),
        box_half=np.array([half for _, half in boxes]).reshape(-1, 3),
        round_positions=np.array([r[0][0] for r in rounds]).reshape(-1, 3),
        round_rotations=quat_to_matrix(np.array([r[0][1] for r in rounds]).reshape(-1, 4)),
        round_radius=np.array([r[1] for r in rounds], dtype=np.float64),
        round_half_length=np.array([r[2] for r in rounds], dtype=np.float64),
        round_capsule=np.array([r[3] for r in rounds], dtype=bool),
        paint_paths=tuple(paint),
    )
