"""tiers.deploy: the robot runtime without ROS (safety filter, watchdog, rate, control loop); ROS 2 in ``ros``."""
