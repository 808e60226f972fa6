"""The hierarchy node for a real arm driven by ros2_control.

    ros2 launch tiers_ros robot.launch.py confirm_real_robot:=true \
        [robot:=panda] [controller:=<hierarchy>] [command_interface:=joint_trajectory] \
        [command_topic:=/joint_trajectory_controller/joint_trajectory] [use_sim_time:=false] [domain_id:=42]

The node refuses to configure without confirm_real_robot:=true. It is a lifecycle node that does not
activate by itself: `ros2 lifecycle set /hierarchy_node configure`, then `activate`. Its ~/stop topic is a
software stop, not a hardware e-stop: keep the arm's e-stop within reach.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    # ParameterValue(..., value_type=...) keeps substituted arguments typed: launch would otherwise read them
    # as YAML ("" becomes null, which no string parameter accepts)
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config",
                default_value=PathJoinSubstitution([FindPackageShare("tiers_ros"), "config", "robot.yaml"]),
                description="parameter file keyed by node name",
            ),
            DeclareLaunchArgument("robot", default_value="panda", description="robot preset or YAML path"),
            DeclareLaunchArgument("controller", default_value="sweep", description="hierarchy preset or sweep"),
            DeclareLaunchArgument(
                "command_interface", default_value="joint_trajectory", description="joint_trajectory | forward_position"
            ),
            DeclareLaunchArgument("command_topic", default_value="", description="'' = the conventional topic"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock"),
            DeclareLaunchArgument("domain_id", default_value="42", description="ROS_DOMAIN_ID of the robot's network"),
            DeclareLaunchArgument(
                "confirm_real_robot", default_value="false", description="true: command the physical arm"
            ),
            SetEnvironmentVariable("ROS_DOMAIN_ID", LaunchConfiguration("domain_id")),
            LifecycleNode(
                package="tiers_ros",
                executable="hierarchy_node",
                name="hierarchy_node",
                namespace="",
                output="screen",
                parameters=[
                    LaunchConfiguration("config"),
                    {
                        "robot": ParameterValue(LaunchConfiguration("robot"), value_type=str),
                        "controller": ParameterValue(LaunchConfiguration("controller"), value_type=str),
                        "command_interface": ParameterValue(LaunchConfiguration("command_interface"), value_type=str),
                        "command_topic": ParameterValue(LaunchConfiguration("command_topic"), value_type=str),
                        "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
                        "confirm_real_robot": ParameterValue(
                            LaunchConfiguration("confirm_real_robot"), value_type=bool
                        ),
                    },
                ],
            ),
        ]
    )
