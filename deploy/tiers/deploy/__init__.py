"""tiers.deploy: robot runtime without ROS: safety filter, watchdog, rate control, policy export."""
