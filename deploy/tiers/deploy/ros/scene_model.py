"""The kitchen's static model for hierarchies run over ROS that plan against a map of the scene (no rclpy needed).

Over ROS there is no simulator to read, but the mid tier's keypoint paths are planned against the known
fixtures of the kitchen (a map, like a robot's). The hierarchy node hands :class:`SceneModel` to
:func:`tiers.deploy.controllers.build_controller`, which stays free of any simulator import.
"""

from __future__ import annotations

from tiers.core.embodiment import EmbodimentSpec
from tiers.sim.mujoco.kitchen import MujocoKitchen


class SceneModel:
    """The kitchen's static model for hierarchies that need a map of the scene (fixture geometry, arm FK).

    This builds the kitchen model once and never steps or resets it, so no state of any episode (object
    poses, joint positions) is available through it.

    Attributes:
        embodiment: the robot.
        backend: a :class:`~tiers.sim.mujoco.kitchen.MujocoKitchen` used only for its model.
    """

    def __init__(self, embodiment: EmbodimentSpec) -> None:
        self.embodiment = embodiment
        self.backend = MujocoKitchen(embodiment, cameras=[], segmentation=False)
