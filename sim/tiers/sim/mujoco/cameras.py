"""Offscreen rendering of the robot's cameras and their pinhole models.

MuJoCo cameras look along their -z axis with +y up; the contracts use the OpenCV optical frame (x right,
y down, z forward). ``base_from_camera`` therefore is MuJoCo's camera pose times diag(1, -1, -1).
MuJoCo's depth images hold the distance along the optical axis (z in the optical frame), in metres.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import CameraSpec
from tiers.core.errors import EmbodimentMismatchError
from tiers.core.observation import CameraModel

_MUJOCO_FROM_OPENCV = np.diag([1.0, -1.0, -1.0])  # flips y and z: optical frame -> MuJoCo camera frame


class CameraRig:
    """The embodiment's cameras in one model: pinhole models and images (RGB, depth, segmentation).

    Renderers are created on the first :meth:`render` and reused, one ``mujoco.Renderer`` per image size.
    The spec's ``fovy_deg`` is written into the model, so images and intrinsics always agree.
    """

    def __init__(
        self, model: mujoco.MjModel, cameras: list[CameraSpec], *, geom_object: NDArray[np.int64], segmentation: bool
    ):
        """
        Args:
            model: the compiled scene (its ``cam_fovy`` is overwritten from the specs).
            cameras: the cameras to serve, by name in the model.
            geom_object: (ngeom,) object id per geom, -1 for geoms that are not movable objects.
            segmentation: whether :meth:`render` also returns per-pixel object ids.
        """
        self._model = model
        self._specs = list(cameras)
        self._geom_object = np.append(geom_object, -1)  # index -1 (background) maps to -1
        self._segmentation = segmentation
        self._ids: dict[str, int] = {}
        for spec in self._specs:
            camera_id = int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, spec.name))
            if camera_id < 0:
                raise EmbodimentMismatchError(f"camera {spec.name!r} of the robot spec is not in the MuJoCo model")
            if spec.width > model.vis.global_.offwidth or spec.height > model.vis.global_.offheight:
                raise EmbodimentMismatchError(
                    f"camera {spec.name!r} is {spec.width}x{spec.height}, the model's offscreen buffer is "
                    f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}: raise <global offwidth/offheight>"
                )
            model.cam_fovy[camera_id] = spec.fovy_deg
            self._ids[spec.name] = camera_id
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._models: dict[str, CameraModel] = {}  # name -> the model built at the first call
        # name -> fixed in the world (on the world body, fixed mode): its model never changes
        self._fixed = {
            spec.name: bool(
                model.cam_bodyid[self._ids[spec.name]] == 0
                and model.cam_mode[self._ids[spec.name]] == mujoco.mjtCamLight.mjCAMLIGHT_FIXED
            )
            for spec in self._specs
        }

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self._specs]

    def camera_models(self, data: mujoco.MjData) -> dict[str, CameraModel]:
        """Camera name -> pinhole model at the current state (the base frame is the world frame).

        Runs every control step, images or not: a camera fixed in the world is built once, a camera on the
        arm (the wrist) gets its first model moved to the current pose.
        """
        models = {}
        for spec in self._specs:
            camera_id = self._ids[spec.name]
            cached = self._models.get(spec.name)
            if cached is not None and self._fixed[spec.name]:
                models[spec.name] = cached
                continue
            base_from_camera = np.eye(4)
            base_from_camera[:3, :3] = data.cam_xmat[camera_id].reshape(3, 3) @ _MUJOCO_FROM_OPENCV
            base_from_camera[:3, 3] = data.cam_xpos[camera_id]
            if cached is None:
                models[spec.name] = CameraModel.from_fovy(
                    width=spec.width, height=spec.height, fovy_deg=spec.fovy_deg, base_from_camera=base_from_camera
                )
                self._models[spec.name] = models[spec.name]
            else:
                models[spec.name] = cached.moved_to(base_from_camera)
        return models

    def render(
        self, data: mujoco.MjData
    ) -> tuple[dict[str, NDArray[np.uint8]], dict[str, NDArray[np.float32]], dict[str, NDArray[np.int32]]]:
        """Render every camera at the current state (``mj_forward`` must have run).

        Returns:
            images: name -> (H, W, 3) uint8 RGB.
            depths: name -> (H, W) float32 m along the optical axis, for cameras whose spec has ``depth``.
            segmentation: name -> (H, W) int32 object ids (index in ``OBJECT_NAMES``, -1 elsewhere);
                empty when segmentation is off.
        """
        images, depths, segmentation = {}, {}, {}
        for spec in self._specs:
            renderer = self._renderer(spec)
            renderer.update_scene(data, camera=self._ids[spec.name])
            images[spec.name] = renderer.render()
            if spec.depth:
                renderer.enable_depth_rendering()
                depths[spec.name] = renderer.render().astype(np.float32, copy=False)
                renderer.disable_depth_rendering()
            if self._segmentation:
                renderer.enable_segmentation_rendering()
                raw = renderer.render()  # (H, W, 2): object id, object type
                renderer.disable_segmentation_rendering()
                is_geom = raw[..., 1] == mujoco.mjtObj.mjOBJ_GEOM
                geom_ids = np.where(is_geom, raw[..., 0], -1)
                segmentation[spec.name] = self._geom_object[geom_ids].astype(np.int32)
        return images, depths, segmentation

    def render_rgb(self, data: mujoco.MjData, name: str) -> NDArray[np.uint8]:
        """(H, W, 3) uint8 RGB of camera ``name`` only (no depth, no segmentation): a video frame."""
        spec = next((spec for spec in self._specs if spec.name == name), None)
        if spec is None:
            raise KeyError(f"no camera {name!r}; the robot's cameras are {self.names}")
        renderer = self._renderer(spec)
        renderer.update_scene(data, camera=self._ids[name])
        image: NDArray[np.uint8] = renderer.render()
        return image

    def _renderer(self, spec: CameraSpec) -> mujoco.Renderer:
        key = (spec.height, spec.width)
        if key not in self._renderers:
            try:
                self._renderers[key] = mujoco.Renderer(self._model, height=spec.height, width=spec.width)
            except mujoco.FatalError as error:
                raise RuntimeError(
                    f"MuJoCo cannot create an OpenGL context ({error}). Offscreen rendering without a display "
                    f"needs MUJOCO_GL=egl (Mesa's libEGL) in the environment before `mujoco` is first imported "
                    f"(DISPLAY={os.environ.get('DISPLAY')!r}): export MUJOCO_GL=egl, or import tiers.sim.mujoco "
                    f"before anything imports mujoco."
                ) from error
        return self._renderers[key]

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
