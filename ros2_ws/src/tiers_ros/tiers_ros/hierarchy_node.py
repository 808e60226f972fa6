"""``ros2 run tiers_ros hierarchy_node``: a lifecycle node running a tiers hierarchy on a robot.

The node class is :class:`tiers.deploy.ros.hierarchy_node.HierarchyNode` (parameters, topics and lifecycle are
documented there and in this package's README); this module is its ROS 2 executable.
"""

from __future__ import annotations

import sys

from tiers.deploy.ros.hierarchy_node import main as hierarchy_main


def main(args: list[str] | None = None) -> None:
    hierarchy_main(args if args is not None else sys.argv)


if __name__ == "__main__":
    main()
