"""tiers_ros: ROS 2 entry points over tiers.deploy.ros (the logic lives in the tiers package)."""
