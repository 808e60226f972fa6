"""MujocoKitchen: the kitchen scene in MuJoCo, implementing :class:`tiers.sim.backend.SimBackend`.

Physics: ``assets/kitchen/scene.xml`` at a 2 ms timestep; one control period (0.05 s at 20 Hz) is 25
substeps with the action's targets held. Joint servos: the XML's position actuators; gripper: one
actuator whose control is the fingertip opening in m.

Frames: the robot base ``panda_link0`` is the world origin (checked at load), so world poses are base
poses; positions in m, quaternions wxyz.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError, EmbodimentMismatchError, SimulationError
from tiers.core.observation import Observation
from tiers.sim.backend import prepare_joint_action
from tiers.sim.kitchen.layout import ARTICULATIONS, OBJECT_NAMES, KitchenLayout, parking_position
from tiers.sim.mujoco.cameras import CameraRig
from tiers.sim.mujoco.scene_index import SceneIndex
from tiers.sim.scene_state import ArticulationState, Box, ObjectState, SceneState

# MuJoCo warnings after which it has reset the state by itself
_DIVERGENCE_WARNINGS = (
    mujoco.mjtWarning.mjWARN_BADQPOS,
    mujoco.mjtWarning.mjWARN_BADQVEL,
    mujoco.mjtWarning.mjWARN_BADQACC,
)
SCENE_XML = Path(__file__).resolve().parents[1] / "assets" / "kitchen" / "scene.xml"


def _sites_bounds(
    model: mujoco.MjModel, data: mujoco.MjData, sites: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Axis-aligned bounds of box sites (half sizes ``site_size``) at their current poses, in one pass.

    Returns:
        low, high: (S, 3) m, world frame.
    """
    rotations = data.site_xmat[sites].reshape(-1, 3, 3)  # (S, 3, 3)
    half = np.einsum("sij,sj->si", np.abs(rotations), model.site_size[sites])
    centers = data.site_xpos[sites]
    return centers - half, centers + half


class _ObjectBounds:
    """Tight axis-aligned bounds of several objects' geoms, vectorised (this runs every control step for the
    success check); what depends only on the model is gathered once per layout.

    Exact for spheres, capsules and cylinders, else the bounds of the geom's local box.
    """

    def __init__(self, model: mujoco.MjModel, object_geoms: list[NDArray[np.int64]]):
        """``object_geoms``: per object, its geom ids (at least one each)."""
        self.geoms = np.concatenate(object_geoms) if object_geoms else np.zeros(0, dtype=np.int64)  # (G,)
        self.starts = np.cumsum([0] + [len(geoms) for geoms in object_geoms[:-1]])  # first row of each object
        kinds, sizes = model.geom_type[self.geoms], model.geom_size[self.geoms]
        self.box_offset = model.geom_aabb[self.geoms, :3, None]  # (G, 3, 1) local box centre
        self.box_half = model.geom_aabb[self.geoms, 3:, None]  # (G, 3, 1) local box half sizes
        self.sphere = kinds == mujoco.mjtGeom.mjGEOM_SPHERE
        self.capsule = kinds == mujoco.mjtGeom.mjGEOM_CAPSULE
        self.cylinder = kinds == mujoco.mjtGeom.mjGEOM_CYLINDER
        self.round = self.sphere | self.capsule | self.cylinder  # their local boxes are centred
        self.sphere_radius = sizes[self.sphere, :1]
        self.capsule_size = sizes[self.capsule]
        self.cylinder_size = sizes[self.cylinder]

    def __call__(self, data: mujoco.MjData) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """low, high: (objects, 3) m, world frame."""
        if len(self.geoms) == 0:
            return np.zeros((0, 3)), np.zeros((0, 3))
        rotations = data.geom_xmat[self.geoms].reshape(-1, 3, 3)  # (G, 3, 3)
        positions = data.geom_xpos[self.geoms]
        centers = positions + (rotations @ self.box_offset)[:, :, 0]
        half = (np.abs(rotations) @ self.box_half)[:, :, 0]  # boxes and the rest
        axes = rotations[:, :, 2]  # (G, 3) each geom's z axis in the world
        half[self.sphere] = self.sphere_radius
        size = self.capsule_size
        half[self.capsule] = size[:, 1:2] * np.abs(axes[self.capsule]) + size[:, :1]
        size, axis = self.cylinder_size, axes[self.cylinder]
        radial = np.sqrt(np.clip(1.0 - axis**2, 0.0, 1.0))
        half[self.cylinder] = size[:, 1:2] * np.abs(axis) + size[:, :1] * radial
        centers[self.round] = positions[self.round]
        low, high = centers - half, centers + half
        return np.minimum.reduceat(low, self.starts), np.maximum.reduceat(high, self.starts)


class MujocoKitchen:
    """The kitchen benchmark's world in MuJoCo (CPU physics, EGL offscreen rendering).

    Example::

        kitchen = MujocoKitchen("panda")
        obs = kitchen.reset(sample_layout(seed=0))
        obs = kitchen.step(np.append(kitchen.embodiment.home, 0.08))   # hold home, gripper open
        state = kitchen.scene_state()
    """

    def __init__(
        self,
        embodiment: EmbodimentSpec | str = "panda",
        *,
        scene_xml: str | Path = SCENE_XML,
        cameras: list[str] | None = None,
        segmentation: bool = True,
        settle_steps: int = 50,
    ):
        """
        Args:
            embodiment: the robot spec, or the name of a preset under ``configs/robots/``.
            scene_xml: the MJCF scene; it must hold the robot of ``embodiment`` and the kitchen's names.
            cameras: cameras to render, by name; None: all cameras of the embodiment.
            segmentation: also render per-pixel object ids into ``Observation.segmentation``.
            settle_steps: physics substeps run at reset so objects come to rest; the clock restarts after.
        """
        self._spec = EmbodimentSpec.load(embodiment) if isinstance(embodiment, str) else embodiment
        self._model = mujoco.MjModel.from_xml_path(str(scene_xml))
        self._data = mujoco.MjData(self._model)
        self._index = SceneIndex.build(self._model, self._spec)
        self._region_site_ids = np.array(list(self._index.region_sites.values()), dtype=np.int64)
        mujoco.mj_forward(self._model, self._data)
        base = self._data.body(self._spec.base_frame)
        if not (np.allclose(base.xpos, 0.0) and np.allclose(base.xquat, [1, 0, 0, 0])):
            raise EmbodimentMismatchError(
                f"base frame {self._spec.base_frame!r} must be the world origin, it is at {base.xpos}, {base.xquat}"
            )
        substeps = self._spec.control_period / self._model.opt.timestep
        if abs(substeps - round(substeps)) > 1e-6:
            raise EmbodimentMismatchError(
                f"control period {self._spec.control_period} s is not a multiple of the timestep "
                f"{self._model.opt.timestep} s"
            )
        self._substeps = round(float(substeps))
        names = [camera.name for camera in self._spec.cameras] if cameras is None else cameras
        camera_specs = [self._spec.camera(name) for name in names]
        self._rig = CameraRig(self._model, camera_specs, geom_object=self._index.geom_object, segmentation=segmentation)
        self._settle_steps = settle_steps
        self._layout: KitchenLayout | None = None
        self._object_bounds: _ObjectBounds | None = None  # built for the layout at its first scene_state
        self.clipped_components = 0  # action components clipped to limits since construction
        self._closed = False

    # -- SimBackend ---------------------------------------------------------------------------------------

    @property
    def embodiment(self) -> EmbodimentSpec:
        return self._spec

    @property
    def time(self) -> float:
        return float(self._data.time)

    def reset(self, layout: KitchenLayout, *, render: bool = True) -> Observation:
        self._check_open()
        model, data, index = self._model, self._data, self._index
        mujoco.mj_resetData(model, data)
        home = np.asarray(self._spec.home, dtype=np.float64)
        opening = self._spec.gripper.max_opening
        data.qpos[index.arm_qpos] = home
        data.qpos[index.finger_qpos] = opening / 2
        data.ctrl[index.arm_actuators] = home
        data.ctrl[index.gripper_actuator] = opening
        for name in OBJECT_NAMES:
            address = index.object_qpos[name]
            placement = layout.objects.get(name)
            if placement is None:
                data.qpos[address : address + 3] = parking_position(name)
                data.qpos[address + 3 : address + 7] = [1.0, 0.0, 0.0, 0.0]
            else:
                data.qpos[address : address + 3] = placement.position
                data.qpos[address + 3 : address + 7] = placement.quaternion
                model.geom_rgba[index.object_paint_geoms[name]] = placement.rgba
        for name, value in layout.articulations.items():
            data.qpos[index.articulation_qpos[name]] = value
        mujoco.mj_forward(model, data)
        if self._settle_steps:
            mujoco.mj_step(model, data, nstep=self._settle_steps)
            data.qvel[:] = 0.0
            data.time = 0.0
            mujoco.mj_forward(model, data)
        self._layout = layout
        self._object_bounds = None
        return self.observe(render=render)

    def step(self, action: ArrayLike, *, render: bool = True) -> Observation:
        self._check_reset()
        clipped, count = prepare_joint_action(action, self._spec)
        self.clipped_components += count
        self._data.ctrl[self._index.arm_actuators] = clipped[:-1]
        self._data.ctrl[self._index.gripper_actuator] = clipped[-1]
        before = [self._data.warning[kind].number for kind in _DIVERGENCE_WARNINGS]
        mujoco.mj_step(self._model, self._data, nstep=self._substeps)
        self._raise_if_diverged(before)
        # mj_step leaves positions-derived quantities one substep behind qpos: refresh what we read.
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_camlight(self._model, self._data)
        return self.observe(render=render)

    def _raise_if_diverged(self, before: list[int]) -> None:
        """MuJoCo resets the state by itself when it diverges: going on would hide a teleport, so stop."""
        for kind, count in zip(_DIVERGENCE_WARNINGS, before, strict=True):
            warning = self._data.warning[kind]
            if warning.number > count:
                index = int(warning.lastinfo)  # a qpos address for BADQPOS, a dof address otherwise
                if kind == mujoco.mjtWarning.mjWARN_BADQPOS:
                    joint = int(np.searchsorted(self._model.jnt_qposadr, index, side="right") - 1)
                    body = self._model.body(self._model.jnt_bodyid[joint]).name
                else:
                    body = self._model.body(self._model.dof_bodyid[index]).name
                what = {
                    mujoco.mjtWarning.mjWARN_BADQPOS: "position",
                    mujoco.mjtWarning.mjWARN_BADQVEL: "velocity",
                }.get(kind, "acceleration")
                raise SimulationError(
                    f"the simulation diverged at t={self._data.time:.3f} s (NaN/Inf {what} of body {body!r}); "
                    "reset the episode"
                )

    def observe(self, render: bool = True) -> Observation:
        self._check_reset()
        data, index = self._data, self._index
        quaternion = np.empty(4)
        mujoco.mju_mat2Quat(quaternion, data.site_xmat[index.tcp_site])
        images: dict[str, NDArray[np.uint8]] = {}
        depths: dict[str, NDArray[np.float32]] = {}
        segmentation: dict[str, NDArray[np.int32]] = {}
        object_names: dict[int, str] = {}
        if render:
            images, depths, segmentation = self._rig.render(data)
            if segmentation:
                assert self._layout is not None
                object_names = {OBJECT_NAMES.index(name): name for name in self._layout.present}
        return Observation(
            joint_positions=data.qpos[index.arm_qpos].copy(),
            joint_velocities=data.qvel[index.arm_dof].copy(),
            ee_pose=np.concatenate([data.site_xpos[index.tcp_site], quaternion]),
            gripper_opening=float(data.qpos[index.finger_qpos].sum()),
            timestamp=float(data.time),
            images=images,
            depths=depths,
            cameras=self._rig.camera_models(data),
            segmentation=segmentation,
            object_names=object_names,
        )

    def render_rgb(self, camera: str) -> NDArray[np.uint8]:
        self._check_reset()
        return self._rig.render_rgb(self._data, camera)

    def scene_state(self) -> SceneState:
        """Privileged state. Object ``position``/``quaternion``: the object's base frame (centre of the face it
        stands on, z = 0 on the counter); ``bounds``: tight AABB of its geoms; regions: AABBs of the region
        sites at the fixtures' current configuration; ``grasped``: an object touching both finger pads."""
        self._check_reset()
        assert self._layout is not None
        model, data, index = self._model, self._data, self._index
        objects = {}
        present = self._layout.present
        if self._object_bounds is None:  # the present objects change only at reset
            self._object_bounds = _ObjectBounds(model, [index.object_geoms[name] for name in present])
        lows, highs = self._object_bounds(data)
        for name, bounds in zip(present, Box.many(lows, highs), strict=True):
            body = index.object_body[name]
            objects[name] = ObjectState(
                name=name,
                category=name,
                color=self._layout.objects[name].color,
                position=data.xpos[body].copy(),
                quaternion=data.xquat[body].copy(),
                bounds=bounds,
            )
        articulations = {
            name: ArticulationState(
                name=name, joint_position=float(data.qpos[index.articulation_qpos[name]]), lower=low, upper=high
            )
            for name, (_, low, high) in ARTICULATIONS.items()
        }
        region_low, region_high = _sites_bounds(model, data, self._region_site_ids)
        regions = dict(zip(index.region_sites, Box.many(region_low, region_high), strict=True))
        return SceneState(
            time=float(data.time),
            objects=objects,
            articulations=articulations,
            regions=regions,
            ee_position=data.site_xpos[index.tcp_site].copy(),
            gripper_opening=float(data.qpos[index.finger_qpos].sum()),
            grasped=self._grasped(),
        )

    def close(self) -> None:
        self._rig.close()
        self._closed = True

    # -- MuJoCo access for the expert, kinematics and tests -----------------------------------------------

    @property
    def model(self) -> mujoco.MjModel:
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        return self._data

    @property
    def layout(self) -> KitchenLayout | None:
        """The layout of the current episode, None before the first reset."""
        return self._layout

    @property
    def substeps(self) -> int:
        """Physics steps per control period."""
        return self._substeps

    def _grasped(self) -> str | None:
        """The present object touching both finger pads, None when there is none."""
        contacts = self._data.contact
        pairs = np.asarray(contacts.geom[: self._data.ncon])  # (ncon, 2) geom ids
        left, right = self._index.pad_geoms
        touched: list[set[int]] = []
        for pad in (left, right):
            rows = (pairs == pad).any(axis=1)
            others = pairs[rows].ravel()
            touched.append({int(i) for i in self._index.geom_object[others[others != pad]] if i >= 0})
        both = touched[0] & touched[1]
        return OBJECT_NAMES[min(both)] if both else None

    def _check_reset(self) -> None:
        self._check_open()
        if self._layout is None:
            raise ContractError("MujocoKitchen: call reset(layout) before step/observe/scene_state")

    def _check_open(self) -> None:
        if self._closed:
            raise ContractError("MujocoKitchen is closed")
