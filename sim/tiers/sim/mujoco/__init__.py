"""tiers.sim.mujoco: the embedded default backend, the kitchen in MuJoCo (CPU physics, EGL offscreen rendering).

``MUJOCO_GL`` is set to ``egl`` here when there is no display and it is unset, before ``mujoco`` is
imported, so that renderers work on headless machines.
"""

from __future__ import annotations

import os

if "DISPLAY" not in os.environ:
    os.environ.setdefault("MUJOCO_GL", "egl")

from tiers.services.kinematics import ArmKinematics, IKResult
from tiers.sim.mujoco.kitchen import SCENE_XML, MujocoKitchen

__all__ = ["SCENE_XML", "ArmKinematics", "IKResult", "MujocoKitchen"]
