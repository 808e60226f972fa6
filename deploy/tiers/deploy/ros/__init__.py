"""tiers.deploy.ros: the ROS 2 adapters over :mod:`tiers.deploy` (need the ``ros`` extra: ``pip install 'tiers[ros]'``).

The only place in ``tiers`` that imports rclpy (with the ament package's entry points in ``ros2_ws``). One node
a module; this package's ``__init__`` imports nothing, so :mod:`tiers.deploy.ros.scene_model` loads without rclpy.

    messages         conversions between ROS 2 messages and tiers' arrays (joints, commands, images, poses)
    conventions      what both nodes share: QoS profiles, command topics, parameter descriptors, status JSON
    hierarchy_node   HierarchyNode: the lifecycle node running a controller through the safety filter and watchdog
    sim_robot_node   MujocoSimNode: the MuJoCo kitchen as a ros2_control-style robot (wraps tiers.sim)
    scene_model      SceneModel: the kitchen's static model (a map) for hierarchies that plan against fixtures
    spin             spinning nodes (one executor thread each), the executables' main, ``tiers ros up``'s session
    client           HierarchyClient: instruct/correct/stop/resume a running hierarchy node (``tiers ros``)
"""
