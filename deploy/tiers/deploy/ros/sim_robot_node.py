"""The simulated robot of tiers (needs the ``ros`` extra): the MuJoCo kitchen as a ros2_control-style robot.

``MujocoSimNode`` (``ros2 run tiers_ros mujoco_sim_node``)::

    publishes   /joint_states (sensor_msgs/JointState), /clock (rosgraph_msgs/Clock)
                <camera_prefix>/<cam>/image_raw, depth/image_raw (sensor_msgs/Image), camera_info, pose
                ~/task_status (std_msgs/String, JSON: success, reason, steps)
    subscribes  both command conventions at once: trajectory_msgs/JointTrajectory and std_msgs/Float64MultiArray
                on the conventional controller topics; ~/reset (std_msgs/String: "<task id> <seed>")

The one ROS module that wraps the simulator (``tiers.sim``): it stands above :mod:`tiers.deploy` in the layers,
with the applications.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError, ContractError, TiersError
from tiers.core.extras import require
from tiers.deploy.controllers import controller_embodiment
from tiers.deploy.ros import messages as rm
from tiers.deploy.ros.conventions import (
    COMMAND_QOS,
    DEFAULT_COMMAND_TOPICS,
    EVENT_QOS,
    SENSOR_QOS,
    ParameterType,
    descriptor,
    status_json,
    string_list,
)
from tiers.deploy.ros.spin import run_node
from tiers.sim.backends import make_backend
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.mujoco.cameras import CameraRig  # its package sets MUJOCO_GL=egl on headless machines

_PURPOSE = "the tiers ROS 2 simulated robot node"
require("rclpy", purpose=_PURPOSE)
_std = require("std_msgs.msg", purpose=_PURPOSE)
_sensor = require("sensor_msgs.msg", purpose=_PURPOSE)
_geometry = require("geometry_msgs.msg", purpose=_PURPOSE)
_trajectory = require("trajectory_msgs.msg", purpose=_PURPOSE)
_rosgraph = require("rosgraph_msgs.msg", purpose=_PURPOSE)
# the base class needs a static import (checked above, so a missing extra fails with its name first)
from rclpy.node import Node  # noqa: E402

_T = ParameterType  # short, for the parameter declarations


class MujocoSimNode(Node):
    """The MuJoCo kitchen as a robot: ros2_control-style state and command topics, cameras and /clock."""

    def __init__(self, name: str = "mujoco_sim_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        declare = self.declare_parameter
        declare("robot", "panda", descriptor("robot preset name or YAML path", _T.PARAMETER_STRING))
        declare("task", "open/drawer/0", descriptor("kitchen task id of the first episode", _T.PARAMETER_STRING))
        declare("seed", 0, descriptor("layout seed of the first episode", _T.PARAMETER_INTEGER))
        declare(
            "real_time_factor",
            1.0,
            descriptor("sim seconds per wall second", _T.PARAMETER_DOUBLE, floating=(0.01, 100.0)),
        )
        declare("cameras", ["front"], descriptor("cameras rendered and published", _T.PARAMETER_STRING_ARRAY))
        declare("camera_prefix", "/cameras", descriptor("camera topic prefix", _T.PARAMETER_STRING))
        declare(
            "camera_rate_hz",
            20.0,
            descriptor("image publications per sim second", _T.PARAMETER_DOUBLE, floating=(0.0, 1000.0)),
        )
        declare("image_stride", 1, descriptor("publish every n-th pixel (downscale n times)", _T.PARAMETER_INTEGER))
        declare("publish_depth", True, descriptor("publish depth for cameras that have it", _T.PARAMETER_BOOL))
        declare("joint_states_topic", "/joint_states", descriptor("joint state topic", _T.PARAMETER_STRING))
        for interface, topic in DEFAULT_COMMAND_TOPICS.items():
            declare(f"{interface}_topic", topic, descriptor(f"{interface} command topic", _T.PARAMETER_STRING))
        declare(
            "hierarchy",
            "",
            descriptor("render the cameras this hierarchy needs ('' = the robot's own)", _T.PARAMETER_STRING),
        )
        robot = EmbodimentSpec.load(str(self.get_parameter("robot").value))
        hierarchy = str(self.get_parameter("hierarchy").value)
        self._spec = controller_embodiment(hierarchy, robot) if hierarchy else robot
        cameras = string_list("cameras", self.get_parameter("cameras").value)
        for camera in cameras:
            self._spec.camera(camera)
        self._cameras = cameras
        self._stride = int(self.get_parameter("image_stride").value)
        if self._stride < 1:
            raise ConfigError(f"parameter image_stride={self._stride}: must be a positive integer")
        # segmentation is privileged (no real camera has it): not rendered, which also halves the render cost
        # the env renders nothing: cameras render in their own thread from snapshots (see _render_loop), so a
        # slow CPU render never delays the joint states that the watchdogs downstream wait for
        backend = make_backend("mujoco", self._spec, cameras=[], segmentation=False)
        self._env = KitchenEnv(str(self.get_parameter("task").value), backend=backend, render=False)
        self._lock = threading.Lock()
        self._command: NDArray[np.float64] | None = None  # latest command (J+1,), applied at the next step
        self.commands_received = 0
        self._clock_offset = 0.0  # s of sim time of finished episodes: /clock never goes back
        self._status: dict[str, Any] = {}
        self._reset_episode(str(self.get_parameter("task").value), int(self.get_parameter("seed").value))
        self._joint_pub = self.create_publisher(
            _sensor.JointState, str(self.get_parameter("joint_states_topic").value), SENSOR_QOS
        )
        self._clock_pub = self.create_publisher(_rosgraph.Clock, "/clock", SENSOR_QOS)
        self._status_pub = self.create_publisher(_std.String, "~/task_status", EVENT_QOS)
        prefix = str(self.get_parameter("camera_prefix").value)
        self._camera_pubs: dict[str, dict[str, Any]] = {}
        for camera in cameras:
            topics = rm.camera_topics(camera, prefix)
            publishers = {
                "image": self.create_publisher(_sensor.Image, topics["image"], SENSOR_QOS),
                "info": self.create_publisher(_sensor.CameraInfo, topics["info"], SENSOR_QOS),
                "pose": self.create_publisher(_geometry.PoseStamped, topics["pose"], SENSOR_QOS),
            }
            if self._spec.camera(camera).depth and self.get_parameter("publish_depth").value:
                publishers["depth"] = self.create_publisher(_sensor.Image, topics["depth"], SENSOR_QOS)
            self._camera_pubs[camera] = publishers
        self.create_subscription(
            _trajectory.JointTrajectory,
            str(self.get_parameter("joint_trajectory_topic").value),
            self._on_trajectory,
            COMMAND_QOS,
        )
        self.create_subscription(
            _std.Float64MultiArray, str(self.get_parameter("forward_position_topic").value), self._on_array, COMMAND_QOS
        )
        self.create_subscription(_std.String, "~/reset", self._on_reset, EVENT_QOS)
        rate = float(self.get_parameter("camera_rate_hz").value)
        self._camera_every = max(1, round(self._spec.control_rate_hz / rate)) if rate > 0 else 0
        period = self._spec.control_period / float(self.get_parameter("real_time_factor").value)
        self._steps = 0
        model = self._env.backend.model  # type: ignore[attr-defined]
        self._snapshot = mujoco.MjData(model)  # the state the render thread draws (copied under the lock)
        self._snapshot_stamp = 0.0
        self._render_wanted = threading.Event()
        self._closing = threading.Event()
        self._renderer = threading.Thread(target=self._render_loop, name="camera_render", daemon=True)
        if cameras and self._camera_every:
            self._renderer.start()
        self.create_timer(period, self._on_step)
        self._publish_joints(self._env.backend.observe(render=False))

    def _reset_episode(self, task: str, seed: int) -> None:
        if self._env.task is not None:
            self._clock_offset += self._env.backend.time + self._spec.control_period
        observation, info = self._env.reset(seed=seed, options={"task": task})
        with self._lock:
            self._command = None
        self._status = {**info, "episode_start": self._clock_offset}
        self.get_logger().info(f"episode: {task} (seed {seed}): {observation.instruction!r}")

    # -- commands -----------------------------------------------------------------------------------------

    def _on_trajectory(self, message: Any) -> None:
        self._take(lambda: rm.action_from_joint_trajectory(self._spec, message))

    def _on_array(self, message: Any) -> None:
        self._take(lambda: rm.action_from_float64_array(self._spec, message))

    def _take(self, convert: Callable[[], NDArray[np.float64]]) -> None:
        try:
            action = convert()
        except ContractError as error:
            self.get_logger().warning(f"command rejected: {error}", throttle_duration_sec=1.0)
            return
        with self._lock:
            self._command = action
            self.commands_received += 1

    def _on_reset(self, message: Any) -> None:
        task, _, seed = message.data.partition(" ")
        try:
            self._reset_episode(task.strip() or str(self._status.get("task_id")), int(seed or 0))
        except (TiersError, KeyError, ValueError) as error:
            self.get_logger().error(f"reset {message.data!r} failed: {error}")

    # -- the simulated robot ------------------------------------------------------------------------------

    def _on_step(self) -> None:
        with self._lock:
            command = self._command
        # no command yet: keep the targets in force (the env holds them); a NaN command is refused by the env
        target = command if command is not None else np.append(*self._current_targets())
        self._steps += 1
        _, _, success, truncated, info = self._env.step(target)
        observation = self._env.backend.observe(render=False)
        self._status = {**info, "truncated": truncated, "commands_received": self.commands_received}
        self._publish_joints(observation)
        if self._camera_every and self._steps % self._camera_every == 0 and not self._render_wanted.is_set():
            backend = self._env.backend
            with self._lock:
                mujoco.mj_copyData(self._snapshot, backend.model, backend.data)  # type: ignore[attr-defined]
                self._snapshot_stamp = self._clock_offset + observation.timestamp
            self._render_wanted.set()  # a render still running skips this frame instead of queueing it
        if success or truncated or self._steps % 10 == 0:
            self._status_pub.publish(_std.String(data=status_json(self._status)))

    def _current_targets(self) -> tuple[NDArray[np.float64], float]:
        data, index = self._env.backend.data, self._env.backend._index  # type: ignore[attr-defined]
        return data.ctrl[index.arm_actuators].copy(), float(data.ctrl[index.gripper_actuator])

    def _publish_joints(self, observation: Any) -> None:
        stamp = self._clock_offset + observation.timestamp
        clock = _rosgraph.Clock()
        clock.clock = rm.seconds_to_stamp(stamp)
        self._clock_pub.publish(clock)
        self._joint_pub.publish(
            rm.joint_state_message(
                self._spec,
                observation.joint_positions,
                observation.joint_velocities,
                observation.gripper_opening,
                stamp,
            )
        )

    def _render_loop(self) -> None:
        """Render thread: owns the EGL contexts; draws each snapshot and publishes the camera topics."""
        model = self._env.backend.model  # type: ignore[attr-defined]
        rig = CameraRig(
            model,
            [self._spec.camera(name) for name in self._cameras],
            geom_object=np.full(model.ngeom, -1, dtype=np.int64),
            segmentation=False,
        )
        data = mujoco.MjData(model)
        try:
            while not self._closing.is_set():
                if not self._render_wanted.wait(timeout=0.1):
                    continue
                with self._lock:
                    mujoco.mj_copyData(data, model, self._snapshot)
                    stamp = self._snapshot_stamp
                mujoco.mj_forward(model, data)
                images, depths, _ = rig.render(data)
                self._publish_cameras(rig.camera_models(data), images, depths, stamp)
                self._render_wanted.clear()
        finally:
            rig.close()

    def _publish_cameras(
        self, models: dict[str, Any], images: dict[str, Any], depths: dict[str, Any], stamp: float
    ) -> None:
        stride = self._stride
        base = self._spec.base_frame
        for camera, publishers in self._camera_pubs.items():
            model = models[camera]
            frame = f"{camera}_optical_frame"
            intrinsics = model.intrinsics.copy()
            intrinsics[:2] /= stride  # pixel units shrink with the image (centres stay consistent to 0.5 px)
            width, height = math.ceil(model.width / stride), math.ceil(model.height / stride)
            publishers["info"].publish(rm.camera_info_message(intrinsics, width, height, stamp, frame))
            publishers["pose"].publish(rm.pose_message(model.base_from_camera, stamp, base))
            publishers["image"].publish(rm.image_message(images[camera][::stride, ::stride], stamp, frame))
            if "depth" in publishers and camera in depths:
                publishers["depth"].publish(rm.depth_message(depths[camera][::stride, ::stride], stamp, frame))

    def close(self) -> None:
        self._closing.set()
        if self._renderer.is_alive():
            self._renderer.join(timeout=5.0)
        self._env.close()


def main(args: list[str] | None = None) -> None:
    """``ros2 run tiers_ros mujoco_sim_node``."""
    run_node(MujocoSimNode, args)
