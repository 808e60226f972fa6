"""``ros2 run tiers_ros mujoco_sim_node``: the MuJoCo kitchen as a simulated ros2_control-style robot.

The node class is :class:`tiers.deploy.ros.sim_robot_node.MujocoSimNode`; this module is its ROS 2 executable.
"""

from __future__ import annotations

import sys

from tiers.deploy.ros.sim_robot_node import main as sim_main


def main(args: list[str] | None = None) -> None:
    sim_main(args if args is not None else sys.argv)


if __name__ == "__main__":
    main()
