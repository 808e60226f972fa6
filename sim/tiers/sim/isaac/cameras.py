"""The robot's cameras in Isaac Sim: RTX render products with RGB, depth and instance segmentation.

Each camera of the EmbodimentSpec is the ``UsdGeom.Camera`` the export wrote (apertures giving the spec's
vertical field of view at its image size), wrapped in ``isaacsim.sensors.camera.Camera`` at the spec's
resolution. Images are read from Replicator annotators attached to that camera's render product:
``rgb`` (H, W, 4) uint8, ``distance_to_image_plane`` (H, W) float32 m (z in the optical frame, as MuJoCo's
depth), ``instance_id_segmentation_fast`` (H, W) uint32 with ``info["idToLabels"]``: id -> prim path.

Frames: USD cameras look along -Z with +Y up (MuJoCo's camera frame too); the contracts use the OpenCV
optical frame, so ``base_from_camera`` is the camera's world pose times diag(1, -1, -1), as in
:mod:`tiers.sim.mujoco.cameras`. The world frame is the robot base frame.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import CameraSpec
from tiers.core.errors import EmbodimentMismatchError
from tiers.core.observation import CameraModel
from tiers.sim.isaac.geometry import Pose, quat_to_matrix
from tiers.sim.kitchen.layout import OBJECT_NAMES

_USD_FROM_OPENCV = np.diag([1.0, -1.0, -1.0])  # flips y and z: optical frame -> USD camera frame
RGB, DEPTH, SEGMENTATION = "rgb", "distance_to_image_plane", "instance_id_segmentation_fast"


def camera_model(spec: CameraSpec, world_pose: Pose) -> CameraModel:
    """Pinhole model of camera ``spec`` whose USD camera frame is at ``world_pose`` (base frame)."""
    base_from_camera = np.eye(4)
    base_from_camera[:3, :3] = quat_to_matrix(world_pose[1]) @ _USD_FROM_OPENCV
    base_from_camera[:3, 3] = world_pose[0]
    return CameraModel.from_fovy(
        width=spec.width, height=spec.height, fovy_deg=spec.fovy_deg, base_from_camera=base_from_camera
    )


def object_ids_of_labels(id_to_labels: dict[Any, Any], object_paths: dict[str, str]) -> dict[int, int]:
    """Instance id -> object id (index in OBJECT_NAMES) for instances that are shapes of an object.

    Args:
        id_to_labels: the annotator's ``info["idToLabels"]``: instance id (int or str) -> prim path.
        object_paths: object name -> body prim path; an object's shapes are its children.
    """
    prefixes = [(f"{path}/", OBJECT_NAMES.index(name)) for name, path in object_paths.items()]
    mapping = {}
    for key, label in id_to_labels.items():
        for prefix, object_id in prefixes:
            if str(label).startswith(prefix):
                mapping[int(key)] = object_id
    return mapping


def segment_objects(instance_ids: NDArray[np.integer[Any]], instance_to_object: dict[int, int]) -> NDArray[np.int32]:
    """(H, W) instance ids -> (H, W) int32 object ids (-1: background or not an object)."""
    ids = np.asarray(instance_ids).reshape(instance_ids.shape[0], instance_ids.shape[1]).astype(np.int64)
    table = np.full(int(ids.max(initial=0)) + 1, -1, dtype=np.int32)
    for instance, object_id in instance_to_object.items():
        if instance < table.size:
            table[instance] = object_id
    return table[ids]


def check_field_of_view(stage: Any, path: str, spec: CameraSpec) -> None:
    """The USD camera at ``path`` must have the spec's vertical field of view (so images match intrinsics)."""
    from pxr import UsdGeom

    camera = UsdGeom.Camera(stage.GetPrimAtPath(path))
    vertical, focal = camera.GetVerticalApertureAttr().Get(), camera.GetFocalLengthAttr().Get()
    fovy = 2 * math.degrees(math.atan(vertical / 2 / focal))
    if abs(fovy - spec.fovy_deg) > 1e-3:
        raise EmbodimentMismatchError(
            f"camera {spec.name!r}: the stage's vertical field of view is {fovy:.4f} deg, the robot spec's "
            f"{spec.fovy_deg} deg"
        )


class IsaacCameraRig:
    """Render products and annotators of the robot's cameras (created once, kept across resets)."""

    def __init__(self, stage: Any, cameras: list[CameraSpec], paths: dict[str, str], *, segmentation: bool):
        """
        Args:
            stage: the open stage holding the cameras.
            cameras: the cameras to serve.
            paths: camera name -> camera prim path.
            segmentation: also attach instance segmentation.
        """
        import omni.replicator.core as rep  # omni.replicator.core, as isaacsim.sensors.camera uses it
        from isaacsim.sensors.camera import Camera  # isaacsim.sensors.camera (6.2: extsDeprecated)

        self._specs = list(cameras)
        self._cameras: dict[str, Any] = {}
        self._segmentation: dict[str, Any] = {}
        for spec in self._specs:
            check_field_of_view(stage, paths[spec.name], spec)
            # Camera(prim_path, name, resolution=(width, height)) wraps the existing Camera prim
            camera = Camera(prim_path=paths[spec.name], name=f"tiers_{spec.name}", resolution=(spec.width, spec.height))
            camera.initialize(attach_rgb_annotator=True)  # creates the render product + "rgb" annotator
            if spec.depth:
                camera.add_distance_to_image_plane_to_frame()  # attaches "distance_to_image_plane"
            if segmentation:
                # AnnotatorRegistry.get_annotator(name, device=, init_params=) and attach([render product]),
                # as Camera.attach_annotator does; read directly so no frame-rate gating applies
                annotator = rep.AnnotatorRegistry.get_annotator(SEGMENTATION, device="cpu", init_params={})
                annotator.attach([camera.get_render_product_path()])
                self._segmentation[spec.name] = annotator
            self._cameras[spec.name] = camera

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self._specs]

    def rgb(self, name: str) -> NDArray[np.uint8]:
        """(H, W, 3) uint8 RGB of camera ``name`` from the last rendered frame."""
        if name not in self._cameras:
            raise KeyError(f"no camera {name!r}; the robot's cameras are {self.names}")
        image = self._cameras[name].get_rgb(device="cpu")  # Camera.get_rgb: (H, W, 3) or None
        spec = next(spec for spec in self._specs if spec.name == name)
        if image is None:
            raise RuntimeError(f"Isaac Sim camera {name!r} has no RGB frame yet (render a frame first)")
        return np.ascontiguousarray(np.asarray(image)[: spec.height, : spec.width, :3], dtype=np.uint8)

    def depth(self, name: str) -> NDArray[np.float32]:
        """(H, W) float32 depth along the optical axis in m (inf where nothing was hit)."""
        depth = self._cameras[name].get_depth(device="cpu")  # Camera.get_depth: distance_to_image_plane
        if depth is None:
            raise RuntimeError(f"Isaac Sim camera {name!r} has no depth frame yet (render a frame first)")
        return np.asarray(depth, dtype=np.float32).copy()

    def segmentation(self, name: str, object_paths: dict[str, str]) -> NDArray[np.int32] | None:
        """(H, W) int32 object ids (index in OBJECT_NAMES, -1 elsewhere), None when segmentation is off."""
        annotator = self._segmentation.get(name)
        if annotator is None:
            return None
        output = annotator.get_data()  # {"data": (H, W) uint32, "info": {"idToLabels": {id: prim path}}}
        mapping = object_ids_of_labels(output["info"]["idToLabels"], object_paths)
        return segment_objects(np.asarray(output["data"]), mapping)

    def close(self) -> None:
        for annotator in self._segmentation.values():
            annotator.detach()
        for camera in self._cameras.values():
            camera.destroy()  # Camera.destroy: detaches annotators, destroys the render product
        self._cameras.clear()
        self._segmentation.clear()
