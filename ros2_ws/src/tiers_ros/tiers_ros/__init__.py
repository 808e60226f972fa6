"""tiers_ros: ROS 2 entry points over tiers.deploy.ros_nodes (the logic lives in the tiers package)."""
