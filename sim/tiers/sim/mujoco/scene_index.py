"""Name -> id tables of the compiled kitchen model, checked against the EmbodimentSpec and the layout facts.

Built once per model so that stepping and observing never look names up. Every mismatch between the
XML, ``configs/robots/<robot>.yaml`` and :mod:`tiers.sim.kitchen.layout` raises an error naming both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import EmbodimentMismatchError
from tiers.sim.kitchen.layout import ARTICULATIONS, OBJECT_NAMES

GRIPPER_ACTUATOR = "panda_gripper"  # its control is the opening between the fingertips, m
FINGER_PADS = ("panda_leftfinger_pad", "panda_rightfinger_pad")  # geoms a grasped object touches
TRIM_SUFFIX = "_trim"  # object geoms with this suffix keep their own colour
# SceneState region name -> box site in scene.xml
REGION_SITES: MappingProxyType[str, str] = MappingProxyType(
    {
        "drawer": "drawer_interior",
        "cabinet": "cabinet_interior",
        "sink": "sink_basin",
        "shelf": "shelf_top",
        "counter": "counter_top",
    }
)


def _id(model: mujoco.MjModel, kind: mujoco.mjtObj, name: str, what: str) -> int:
    index = int(mujoco.mj_name2id(model, kind, name))
    if index < 0:
        raise EmbodimentMismatchError(f"the MuJoCo model has no {what} named {name!r}")
    return index


@dataclass(frozen=True)
class SceneIndex:
    """Ids and addresses into ``MjModel`` / ``MjData`` arrays (index arrays are int64)."""

    arm_qpos: NDArray[np.int64]  # (J,) qpos addresses of the arm joints, EmbodimentSpec order
    arm_dof: NDArray[np.int64]  # (J,) qvel addresses
    arm_actuators: NDArray[np.int64]  # (J,) actuator ids
    finger_qpos: NDArray[np.int64]  # (2,) qpos addresses of the finger joints
    gripper_actuator: int
    tcp_site: int
    pad_geoms: tuple[int, int]
    object_body: dict[str, int]  # object name -> body id
    object_qpos: dict[str, int]  # object name -> qpos address of its free joint (xyz, wxyz)
    object_dof: dict[str, int]  # object name -> qvel address of its free joint (6 dofs)
    object_geoms: dict[str, NDArray[np.int64]]  # object name -> its geom ids
    object_paint_geoms: dict[str, NDArray[np.int64]]  # object name -> geom ids taking the layout colour
    geom_object: NDArray[np.int64]  # (ngeom,) object id (index in OBJECT_NAMES) per geom, -1 for non-objects
    articulation_qpos: dict[str, int]  # fixture name -> qpos address of its joint
    region_sites: dict[str, int]  # region name -> box site id

    @classmethod
    def build(cls, model: mujoco.MjModel, spec: EmbodimentSpec) -> SceneIndex:
        joint = mujoco.mjtObj.mjOBJ_JOINT
        arm_joints = [_id(model, joint, name, "arm joint") for name in spec.joint_names]
        lower, upper = spec.position_limits
        for joint_id, name, low, high in zip(arm_joints, spec.joint_names, lower, upper, strict=True):
            model_low, model_high = model.jnt_range[joint_id]
            if not np.allclose([model_low, model_high], [low, high], atol=1e-4):
                raise EmbodimentMismatchError(
                    f"joint {name!r}: range in the MuJoCo model [{model_low}, {model_high}] differs from "
                    f"robot {spec.name!r} [{low}, {high}]"
                )
        actuators = []
        for joint_id, name in zip(arm_joints, spec.joint_names, strict=True):
            found = np.flatnonzero(
                (model.actuator_trntype == mujoco.mjtTrn.mjTRN_JOINT) & (model.actuator_trnid[:, 0] == joint_id)
            )
            if found.size != 1:
                raise EmbodimentMismatchError(f"joint {name!r} needs exactly one actuator, the model has {found.size}")
            actuators.append(int(found[0]))
        fingers = [_id(model, joint, name, "finger joint") for name in spec.gripper.joint_names]

        body = mujoco.mjtObj.mjOBJ_BODY
        geom_object = np.full(model.ngeom, -1, dtype=np.int64)
        object_body, object_qpos, object_dof, object_geoms, paint = {}, {}, {}, {}, {}
        for index, name in enumerate(OBJECT_NAMES):
            body_id = _id(model, body, name, "object body")
            joint_id = int(model.body_jntadr[body_id])
            if joint_id < 0 or model.jnt_type[joint_id] != mujoco.mjtJoint.mjJNT_FREE:
                raise EmbodimentMismatchError(f"object body {name!r} must have a free joint")
            geoms = np.flatnonzero(model.geom_bodyid == body_id)
            geom_object[geoms] = index
            object_body[name] = body_id
            object_qpos[name] = int(model.jnt_qposadr[joint_id])
            object_dof[name] = int(model.jnt_dofadr[joint_id])
            object_geoms[name] = geoms
            paint[name] = np.array([g for g in geoms if not (model.geom(g).name or "").endswith(TRIM_SUFFIX)])

        articulation_qpos = {}
        for name, (joint_name, low, high) in ARTICULATIONS.items():
            joint_id = _id(model, joint, joint_name, f"joint of the {name}")
            if not np.allclose(model.jnt_range[joint_id], [low, high], atol=1e-6):
                raise EmbodimentMismatchError(
                    f"{name} joint {joint_name!r}: range {model.jnt_range[joint_id]} in the model, "
                    f"[{low}, {high}] in tiers.sim.kitchen.layout.ARTICULATIONS"
                )
            articulation_qpos[name] = int(model.jnt_qposadr[joint_id])

        site = mujoco.mjtObj.mjOBJ_SITE
        return cls(
            arm_qpos=model.jnt_qposadr[arm_joints].astype(np.int64),
            arm_dof=model.jnt_dofadr[arm_joints].astype(np.int64),
            arm_actuators=np.array(actuators, dtype=np.int64),
            finger_qpos=model.jnt_qposadr[fingers].astype(np.int64),
            gripper_actuator=_id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, GRIPPER_ACTUATOR, "gripper actuator"),
            tcp_site=_id(model, site, spec.ee_frame, "end-effector site"),
            pad_geoms=(
                _id(model, mujoco.mjtObj.mjOBJ_GEOM, FINGER_PADS[0], "finger pad geom"),
                _id(model, mujoco.mjtObj.mjOBJ_GEOM, FINGER_PADS[1], "finger pad geom"),
            ),
            object_body=object_body,
            object_qpos=object_qpos,
            object_dof=object_dof,
            object_geoms=object_geoms,
            object_paint_geoms=paint,
            geom_object=geom_object,
            articulation_qpos=articulation_qpos,
            region_sites={name: _id(model, site, site_name, "region site") for name, site_name in REGION_SITES.items()},
        )
