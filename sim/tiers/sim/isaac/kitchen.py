"""IsaacKitchen: the kitchen scene in Isaac Sim 6.2 (PhysX on the CPU, RTX rendering), a SimBackend.

Written against the 6.2 wheels' sources (isaacsim-kernel, -core, -sensor); see sim/README.md for what
was and was not run. Isaac modules are imported inside methods: the module imports without Isaac Sim.

Scene: exported once per backend from the MuJoCo scene (:func:`tiers.sim.usd.export.export_kitchen_stage`)
to a temporary ``.usdc`` (its joint frames make PhysX read MuJoCo's joint values), then opened once.
Every :meth:`reset` restarts the PhysX scene (timeline stop + play: no contact caches or solver warm
starts survive, so the same layout gives the same state) and writes the whole state: arm and fingers,
every object (placed or parked, with the layout's colour), the fixtures, then settles as MuJoCo does.
Re-exporting per layout would reload the stage and rebuild render products each episode (seconds), for
nothing the runtime cannot set itself.

Physics: physics dt = the MuJoCo model's timestep (2 ms); one control period is ``control_period / dt``
PhysX steps with the action's targets held on the articulation's joint drives (the MuJoCo servo gains,
written by the export). The gripper opening (m) becomes one target of opening / 2 per finger. Robot links
ignore gravity (MuJoCo's ``gravcomp="1"`` on the Panda).

Frames: the robot base is the world origin; positions in m, quaternions wxyz, joint values in rad/m.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError, EmbodimentMismatchError, SimulationError
from tiers.core.observation import Observation
from tiers.sim.backend import prepare_joint_action
from tiers.sim.isaac import geometry
from tiers.sim.isaac.app import open_stage, simulation_app
from tiers.sim.isaac.cameras import IsaacCameraRig, camera_model
from tiers.sim.isaac.stage import StageIndex
from tiers.sim.kitchen.layout import ARTICULATIONS, OBJECT_NAMES, KitchenLayout, parking_position, sample_layout
from tiers.sim.scene_state import ArticulationState, Box, ObjectState, SceneState

CONTACT_THRESHOLD = 1e-6  # N·s: a finger-object contact impulse above this counts as touching


class IsaacKitchen:
    """The kitchen benchmark's world in Isaac Sim.

    Example::

        kitchen = IsaacKitchen("panda")          # starts the headless SimulationApp on first use
        obs = kitchen.reset(sample_layout(seed=0))
        obs = kitchen.step(np.append(kitchen.embodiment.home, 0.08))
    """

    def __init__(
        self,
        embodiment: EmbodimentSpec | str = "panda",
        *,
        cameras: list[str] | None = None,
        segmentation: bool = True,
        settle_steps: int = 50,
        render_frames: int = 1,
    ):
        """
        Args:
            embodiment: the robot spec, or the name of a preset under ``configs/robots/``.
            cameras: cameras to render, by name; None: all cameras of the embodiment.
            segmentation: also render per-pixel object ids into ``Observation.segmentation``.
            settle_steps: physics steps run at reset so objects come to rest; the clock restarts after.
            render_frames: Kit frames rendered per observation (more lets the renderer converge).

        Raises:
            IsaacUnavailableError: a requirement of Isaac Sim is missing (nothing was started).
        """
        self._spec = EmbodimentSpec.load(embodiment) if isinstance(embodiment, str) else embodiment
        self._app = simulation_app()  # preflight first; then Isaac and its pxr can be imported
        import mujoco

        from tiers.sim.mujoco.kitchen import SCENE_XML
        from tiers.sim.usd.export import export_kitchen_stage

        self._dt = float(mujoco.MjModel.from_xml_path(str(SCENE_XML)).opt.timestep)
        substeps = self._spec.control_period / self._dt
        if abs(substeps - round(substeps)) > 1e-6:
            raise EmbodimentMismatchError(
                f"control period {self._spec.control_period} s is not a multiple of the timestep {self._dt} s"
            )
        self._substeps = round(float(substeps))
        self._tmp = tempfile.TemporaryDirectory(prefix="tiers-isaac-")
        path = Path(self._tmp.name) / "kitchen.usdc"
        closed = {name: 0.0 for name in ARTICULATIONS}
        export_kitchen_stage(path, layout=sample_layout(0, articulations=closed), embodiment=self._spec)
        self._stage = open_stage(path)
        self._index = StageIndex.read(self._stage, self._spec)
        self._make_views()
        names = [camera.name for camera in self._spec.cameras] if cameras is None else cameras
        specs = [self._spec.camera(name) for name in names]
        paths = {name: self._index.cameras[name].path for name in names}
        self._rig = IsaacCameraRig(self._stage, specs, paths, segmentation=segmentation)
        self._camera_specs = specs
        self._settle_steps = settle_steps
        self._render_frames = render_frames
        self._layout: KitchenLayout | None = None
        self._steps = 0  # physics steps since the clock restarted
        self.clipped_components = 0
        self._closed = False

    def _make_views(self) -> None:
        """Physics views: the arm (articulation), the objects, the tracked bodies, the fingers with contacts."""
        from isaacsim.core.api import SimulationContext  # isaacsim.core.api (6.2: extsDeprecated)
        from isaacsim.core.prims import Articulation, RigidPrim  # isaacsim.core.prims (6.2: extsDeprecated)

        index = self._index
        # SimulationContext(physics_dt, rendering_dt, stage_units_in_meters, physics_prim_path, backend, device):
        # reuses the stage's /World/physicsScene; CPU PhysX so that the numpy backend reads its tensors
        self._sim = SimulationContext(
            physics_dt=self._dt,
            rendering_dt=self._spec.control_period,
            stage_units_in_meters=1.0,
            physics_prim_path="/World/physicsScene",
            backend="numpy",
            device="cpu",
        )
        self._arm = Articulation(prim_paths_expr=index.robot_root, name="tiers_panda")
        object_paths = [index.object_paths[name] for name in OBJECT_NAMES]
        self._objects = RigidPrim(prim_paths_expr=object_paths, name="tiers_objects")
        # fixture bodies are set at reset; robot links (the hand: tool site, wrist camera) are only read
        fixtures = sorted({joint.child for joint in index.fixtures.values()})
        self._fixture_bodies = RigidPrim(prim_paths_expr=fixtures, name="tiers_fixtures")
        links = [path for path in index.moving_bodies if path not in fixtures]
        self._links = RigidPrim(prim_paths_expr=links, name="tiers_links")
        # contact_filter_prim_paths_expr: the force matrix is (2 fingers, 9 objects, 3)
        self._fingers = RigidPrim(
            prim_paths_expr=list(index.finger_paths),
            name="tiers_fingers",
            contact_filter_prim_paths_expr=object_paths,
            max_contact_count=64 * len(object_paths),
        )

    def _restart_physics(self) -> None:
        """Stop + play the timeline: a fresh PhysX scene from the stage, then fresh physics views."""
        self._sim.reset()  # SimulationContext.reset: stop, play, initialize_physics
        for view in (self._arm, self._objects, self._fixture_bodies, self._links, self._fingers):
            view.initialize()  # Articulation.initialize / RigidPrim.initialize
        arm = self._arm
        self._arm_dofs = np.array([arm.get_dof_index(name) for name in self._spec.joint_names])
        self._finger_dofs = np.array([arm.get_dof_index(name) for name in self._spec.gripper.joint_names])
        # MuJoCo's gravcomp="1": the robot's links do not sag under gravity
        arm.set_body_disable_gravity(np.ones((1, arm.num_bodies)))  # Articulation.set_body_disable_gravity
        # prim path -> (view, row); RigidPrim.prim_paths lists the view's prims in row order
        self._body_row = {
            path: (view, row)
            for view in (self._fixture_bodies, self._links)
            for row, path in enumerate(view.prim_paths)
        }
        self._object_row = {path: row for row, path in enumerate(self._objects.prim_paths)}

    # -- SimBackend ---------------------------------------------------------------------------------------

    @property
    def embodiment(self) -> EmbodimentSpec:
        return self._spec

    @property
    def time(self) -> float:
        return self._steps * self._dt

    @property
    def substeps(self) -> int:
        """Physics steps per control period."""
        return self._substeps

    @property
    def layout(self) -> KitchenLayout | None:
        return self._layout

    def reset(self, layout: KitchenLayout, *, render: bool = True) -> Observation:
        self._check_open()
        self._restart_physics()
        self._paint(layout)
        home = np.asarray(self._spec.home, dtype=np.float64)
        fingers = np.full(2, self._spec.gripper.max_opening / 2)
        joints = self._full_dof_vector(home, fingers)
        # set_joint_positions teleports and also sets the drive targets to the same values
        self._arm.set_joint_positions(joints[None])
        self._arm.set_joint_velocities(np.zeros_like(joints)[None])
        positions, orientations = np.zeros((len(OBJECT_NAMES), 3)), np.zeros((len(OBJECT_NAMES), 4))
        for name in OBJECT_NAMES:
            row = self._object_row[self._index.object_paths[name]]
            placement = layout.objects.get(name)
            if placement is None:
                positions[row], orientations[row] = parking_position(name), [1.0, 0.0, 0.0, 0.0]
            else:
                positions[row], orientations[row] = placement.position, placement.quaternion
        self._objects.set_world_poses(positions=positions, orientations=orientations)  # RigidPrim.set_world_poses
        self._objects.set_velocities(np.zeros((len(OBJECT_NAMES), 6)))  # RigidPrim.set_velocities (lin, ang)
        self._set_fixtures(layout.articulations)
        for _ in range(self._settle_steps):
            self._sim.step(render=False)  # SimulationContext.step(render=False): one PhysX step of physics dt
        self._arm.set_joint_velocities(np.zeros((1, self._arm.num_dof)))
        self._objects.set_velocities(np.zeros((len(OBJECT_NAMES), 6)))
        self._fixture_bodies.set_velocities(np.zeros((self._fixture_bodies.count, 6)))
        self._steps = 0
        self._layout = layout
        return self.observe(render=render)

    def step(self, action: ArrayLike, *, render: bool = True) -> Observation:
        self._check_reset()
        clipped, count = prepare_joint_action(action, self._spec)
        self.clipped_components += count
        targets = self._full_dof_vector(clipped[:-1], np.full(2, clipped[-1] / 2))
        self._arm.set_joint_position_targets(targets[None])  # Articulation.set_joint_position_targets (rad, m)
        for _ in range(self._substeps):
            self._sim.step(render=False)
        self._steps += self._substeps
        self._raise_if_diverged()
        return self.observe(render=render)

    def observe(self, render: bool = True) -> Observation:
        self._check_reset()
        assert self._layout is not None
        joints = np.asarray(self._arm.get_joint_positions(), dtype=np.float64)[0]  # (1, dofs) -> (dofs,)
        velocities = np.asarray(self._arm.get_joint_velocities(), dtype=np.float64)[0]
        tcp = self._site_pose(self._index.tcp)
        images: dict[str, NDArray[np.uint8]] = {}
        depths: dict[str, NDArray[np.float32]] = {}
        segmentation: dict[str, NDArray[np.int32]] = {}
        object_names: dict[int, str] = {}
        if render:
            self._render()
            for spec in self._camera_specs:
                images[spec.name] = self._rig.rgb(spec.name)
                if spec.depth:
                    depths[spec.name] = self._rig.depth(spec.name)
                ids = self._rig.segmentation(spec.name, self._index.object_paths)
                if ids is not None:
                    segmentation[spec.name] = ids
            if segmentation:
                object_names = {OBJECT_NAMES.index(name): name for name in self._layout.present}
        return Observation(
            joint_positions=joints[self._arm_dofs],
            joint_velocities=velocities[self._arm_dofs],
            ee_pose=np.concatenate(tcp),
            gripper_opening=float(joints[self._finger_dofs].sum()),
            timestamp=self.time,
            images=images,
            depths=depths,
            cameras=self._camera_models(),
            segmentation=segmentation,
            object_names=object_names,
        )

    def render_rgb(self, camera: str) -> NDArray[np.uint8]:
        self._check_reset()
        if camera not in self._rig.names:
            raise KeyError(f"no camera {camera!r}; the robot's cameras are {self._rig.names}")
        self._render()
        return self._rig.rgb(camera)

    def scene_state(self) -> SceneState:
        """Privileged state, as MuJoCo's: object ``position``/``quaternion`` of its base frame; ``bounds`` the
        tight AABB of its shapes; regions the AABBs of the region sites now; fixture joint values from the
        bodies' poses; ``grasped`` an object both finger bodies touch (PhysX contact impulses; MuJoCo checks
        the finger pads, here the whole finger links)."""
        self._check_reset()
        assert self._layout is not None
        positions, orientations = self._object_poses()
        objects = {}
        for name in self._layout.present:
            row = self._object_row[self._index.object_paths[name]]
            pose = (positions[row], orientations[row])
            objects[name] = ObjectState(
                name=name,
                category=name,
                color=self._layout.objects[name].color,
                position=pose[0].copy(),
                quaternion=pose[1].copy(),
                bounds=self._bounds(name, pose),
            )
        articulations = {}
        for name, (_, low, high) in ARTICULATIONS.items():
            joint = self._index.fixtures[name]
            child = geometry.compose(self._body_pose(joint.child), joint.local_child)
            value = geometry.joint_value(joint.kind, joint.parent_frame, child)
            articulations[name] = ArticulationState(name=name, joint_position=value, lower=low, upper=high)
        regions = {
            name: geometry.site_box(site.half_size, self._site_pose(site)) for name, site in self._index.regions.items()
        }
        joints = np.asarray(self._arm.get_joint_positions(), dtype=np.float64)[0]
        return SceneState(
            time=self.time,
            objects=objects,
            articulations=articulations,
            regions=regions,
            ee_position=self._site_pose(self._index.tcp)[0].copy(),
            gripper_opening=float(joints[self._finger_dofs].sum()),
            grasped=self._grasped(),
        )

    def close(self) -> None:
        """Free the render products and the temporary stage; the SimulationApp stays for the process."""
        if self._closed:
            return
        self._rig.close()
        self._sim.stop()  # SimulationContext.stop: the timeline stops, physics views are invalidated
        self._tmp.cleanup()
        self._closed = True

    # -- state access ----------------------------------------------------------------------------------------

    def _full_dof_vector(self, arm: NDArray[np.float64], fingers: NDArray[np.float64]) -> NDArray[np.float64]:
        """(dofs,) articulation vector with arm values (J,) rad and finger values (2,) m in their slots."""
        vector = np.zeros(self._arm.num_dof)
        vector[self._arm_dofs] = arm
        vector[self._finger_dofs] = fingers
        return vector

    def _object_poses(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        positions, orientations = self._objects.get_world_poses()  # (9, 3), (9, 4) wxyz
        return np.asarray(positions, dtype=np.float64), np.asarray(orientations, dtype=np.float64)

    def _body_pose(self, path: str) -> geometry.Pose:
        view, row = self._body_row[path]
        positions, orientations = view.get_world_poses(indices=[row])  # RigidPrim.get_world_poses: wxyz
        return np.asarray(positions, dtype=np.float64)[0], np.asarray(orientations, dtype=np.float64)[0]

    def _site_pose(self, site: Any) -> geometry.Pose:
        """World pose of a region/tool site or camera mount (static ones are stored in the world)."""
        return site.pose if site.body is None else geometry.compose(self._body_pose(site.body), site.pose)

    def _camera_models(self) -> dict[str, Any]:
        return {
            spec.name: camera_model(spec, self._site_pose(self._index.cameras[spec.name]))
            for spec in self._camera_specs
        }

    def _bounds(self, name: str, pose: geometry.Pose) -> Box:
        return self._index.object_shapes[name].bounds(pose)

    def _grasped(self) -> str | None:
        """The present object touching both finger links, None when there is none."""
        assert self._layout is not None
        # RigidPrim.get_contact_force_matrix: (fingers, filters, 3) impulses with dt=1.0
        matrix = np.asarray(self._fingers.get_contact_force_matrix(), dtype=np.float64)
        touching = np.linalg.norm(matrix, axis=-1) > CONTACT_THRESHOLD  # (2, 9) in OBJECT_NAMES order
        both = [i for i in np.flatnonzero(touching.all(axis=0)) if OBJECT_NAMES[i] in self._layout.objects]
        return OBJECT_NAMES[min(both)] if both else None

    def _set_fixtures(self, values: dict[str, float]) -> None:
        """Put each fixture's moving body where its joint reads ``values[name]`` (m or rad), at rest."""
        rows, positions, orientations = [], [], []
        for name, value in values.items():
            joint = self._index.fixtures[name]
            position, orientation = geometry.child_pose_at(joint.kind, value, joint.parent_frame, joint.local_child)
            rows.append(self._body_row[joint.child][1])
            positions.append(position)
            orientations.append(orientation)
        view = self._fixture_bodies
        view.set_world_poses(positions=np.array(positions), orientations=np.array(orientations), indices=rows)
        view.set_velocities(np.zeros((len(rows), 6)), indices=rows)

    def _paint(self, layout: KitchenLayout) -> None:
        """Give each present object's painted shapes the layout's colour (``primvars:displayColor``)."""
        from pxr import Gf, UsdGeom, Vt

        for name, placement in layout.objects.items():
            for path in self._index.object_shapes[name].paint_paths:
                gprim = UsdGeom.Gprim(self._stage.GetPrimAtPath(path))
                gprim.GetDisplayColorAttr().Set(Vt.Vec3fArray([Gf.Vec3f(*placement.rgba[:3])]))

    def _render(self) -> None:
        for _ in range(self._render_frames):
            self._sim.render()  # SimulationContext.render: one Kit frame without stepping physics

    def _raise_if_diverged(self) -> None:
        joints = np.asarray(self._arm.get_joint_positions(), dtype=np.float64)
        positions, _ = self._object_poses()
        if not (np.all(np.isfinite(joints)) and np.all(np.isfinite(positions))):
            bad = [
                name
                for name in OBJECT_NAMES
                if not np.all(np.isfinite(positions[self._object_row[self._index.object_paths[name]]]))
            ]
            what = f"objects {bad}" if bad else "the arm's joints"
            raise SimulationError(
                f"the simulation diverged at t={self.time:.3f} s (NaN/Inf in {what}); reset the episode"
            )

    def _check_reset(self) -> None:
        self._check_open()
        if self._layout is None:
            raise ContractError("IsaacKitchen: call reset(layout) before step/observe/scene_state")

    def _check_open(self) -> None:
        if self._closed:
            raise ContractError("IsaacKitchen is closed")
