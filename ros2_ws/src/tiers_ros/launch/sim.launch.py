"""The whole graph with no hardware: the MuJoCo kitchen as a robot + the hierarchy node.

    ros2 launch tiers_ros sim.launch.py [task:=open/drawer/0] [domain_id:=42]
    ros2 topic pub --once /hierarchy_node/instruction std_msgs/String "data: 'open the kitchen drawer'"

Secure defaults: a non-zero ROS_DOMAIN_ID and discovery limited to this machine
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST), so a simulation never talks to a robot on the network.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    # ParameterValue(..., value_type=...) keeps substituted arguments typed: launch would otherwise read them
    # as YAML ("" becomes null, which no string parameter accepts)
    config = LaunchConfiguration("config")
    use_sim_time = LaunchConfiguration("use_sim_time")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config",
                default_value=PathJoinSubstitution([FindPackageShare("tiers_ros"), "config", "sim.yaml"]),
                description="parameter file keyed by node name",
            ),
            DeclareLaunchArgument("domain_id", default_value="42", description="ROS_DOMAIN_ID (non-zero)"),
            DeclareLaunchArgument("task", default_value="open/drawer/0", description="kitchen task id"),
            DeclareLaunchArgument(
                "controller",
                default_value="offline_paths",
                description="hierarchy preset (nothing privileged) or sweep",
            ),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow the sim's /clock"),
            SetEnvironmentVariable("ROS_DOMAIN_ID", LaunchConfiguration("domain_id")),
            SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
            Node(
                package="tiers_ros",
                executable="mujoco_sim_node",
                name="mujoco_sim_node",
                output="screen",
                parameters=[
                    config,
                    {
                        "task": ParameterValue(LaunchConfiguration("task"), value_type=str),
                        "use_sim_time": ParameterValue(use_sim_time, value_type=bool),
                    },
                ],
            ),
            LifecycleNode(
                package="tiers_ros",
                executable="hierarchy_node",
                name="hierarchy_node",
                namespace="",
                output="screen",
                parameters=[
                    config,
                    {
                        "controller": ParameterValue(LaunchConfiguration("controller"), value_type=str),
                        "use_sim_time": ParameterValue(use_sim_time, value_type=bool),
                    },
                ],
            ),
        ]
    )
