"""The ROS 2 nodes of tiers (needs the ``ros`` extra): thin rclpy adapters over :mod:`tiers.deploy`.

``HierarchyNode`` (a lifecycle node, ``hierarchy_node``)::

    unconfigured ──configure──▶ inactive ──activate──▶ active ──deactivate──▶ inactive ──cleanup──▶ unconfigured
                  (parameters validated, robot, controller,       (control timer runs:      (timer stops: nothing
                   safety filter and watchdog built; topics        commands go out)          is sent any more)
                   subscribed, publishers created; nothing sent)

    subscribes  /joint_states (sensor_msgs/JointState)
                <camera_prefix>/<cam>/image_raw, depth/image_raw (sensor_msgs/Image), camera_info, pose
                ~/instruction, ~/correction (std_msgs/String), ~/stop (std_msgs/String: the reason),
                ~/resume (std_msgs/Empty)
    publishes   <command_topic>: trajectory_msgs/JointTrajectory or std_msgs/Float64MultiArray
                ~/status (std_msgs/String, JSON), ~/language_events (std_msgs/String, one JSON event each)

``MujocoSimNode`` (``mujoco_sim_node``): the kitchen as a simulated robot with ros2_control-style topics —
``/joint_states``, camera images + info + pose, ``/clock`` — taking commands in both conventions at once.

``~/stop`` is a latched *software* stop: it is not a hardware e-stop (see :mod:`tiers.deploy.watchdog`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError, ContractError, TiersError
from tiers.core.extras import require
from tiers.deploy import ros_messages as rm
from tiers.deploy.control_loop import ControlLoop
from tiers.deploy.controllers import PROBE_PREFIX, build_controller, controller_embodiment
from tiers.deploy.observations import ObservationAssembler
from tiers.deploy.rate import JitterStats
from tiers.deploy.safety import SafetyConfig, SafetyFilter
from tiers.deploy.watchdog import ControlState, Watchdog, WatchdogConfig

_PURPOSE = "the tiers ROS 2 nodes"
rclpy = require("rclpy", purpose=_PURPOSE)
_lifecycle = require("rclpy.lifecycle", purpose=_PURPOSE)
_node = require("rclpy.node", purpose=_PURPOSE)
_callback_groups = require("rclpy.callback_groups", purpose=_PURPOSE)
_executors = require("rclpy.executors", purpose=_PURPOSE)
_qos = require("rclpy.qos", purpose=_PURPOSE)
_params = require("rcl_interfaces.msg", purpose=_PURPOSE)
_std = require("std_msgs.msg", purpose=_PURPOSE)
_sensor = require("sensor_msgs.msg", purpose=_PURPOSE)
_geometry = require("geometry_msgs.msg", purpose=_PURPOSE)
_trajectory = require("trajectory_msgs.msg", purpose=_PURPOSE)
_rosgraph = require("rosgraph_msgs.msg", purpose=_PURPOSE)
# base classes need a static import (checked above, so a missing extra fails with its name first)
from rclpy.lifecycle import LifecycleNode  # noqa: E402
from rclpy.node import Node  # noqa: E402

DEFAULT_COMMAND_TOPICS = {
    rm.JOINT_TRAJECTORY: "/joint_trajectory_controller/joint_trajectory",
    rm.FORWARD_POSITION: "/forward_position_controller/commands",
}
PROFILES = ("sim", "real")
TICK_SOURCES = ("timer", "joint_states")
# sensor data: keep only the newest sample; a late joint state is worth less than the next one
SENSOR_QOS = _qos.QoSProfile(
    depth=1, reliability=_qos.ReliabilityPolicy.BEST_EFFORT, history=_qos.HistoryPolicy.KEEP_LAST
)
# commands: reliable, ros2_control's default depth (its controllers subscribe with depth 10)
COMMAND_QOS = _qos.QoSProfile(depth=10, reliability=_qos.ReliabilityPolicy.RELIABLE)
EVENT_QOS = _qos.QoSProfile(depth=50, reliability=_qos.ReliabilityPolicy.RELIABLE)


def _descriptor(
    description: str, kind: int, *, read_only: bool = True, floating: tuple[float, float] | None = None
) -> Any:
    """A parameter's descriptor: type, description, read-only (changes need a reconfigure), float range."""
    descriptor = _params.ParameterDescriptor(description=description, type=kind, read_only=read_only)
    if kind == _params.ParameterType.PARAMETER_STRING_ARRAY:
        # ROS 2 types an empty list ([] in YAML or an override) as a byte array: accept any type here and
        # check the value in code (_string_list), so "no cameras" can be written as []
        descriptor.dynamic_typing = True
    if floating is not None:
        low, high = floating
        descriptor.floating_point_range = [_params.FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    return descriptor


_T = _params.ParameterType

# name -> (default, type, description); validated in HierarchyNode._read_parameters
HIERARCHY_PARAMETERS: dict[str, tuple[Any, int, str]] = {
    "profile": ("sim", _T.PARAMETER_STRING, "sim | real: the real profile needs confirm_real_robot: true"),
    "confirm_real_robot": (False, _T.PARAMETER_BOOL, "explicit consent to command a real arm (profile real)"),
    "robot": ("panda", _T.PARAMETER_STRING, "robot preset name (configs/robots/<robot>.yaml) or YAML path"),
    "controller": ("sweep", _T.PARAMETER_STRING, "hierarchy preset/YAML path, 'sweep', or 'replay:<file.npy|csv>'"),
    "checkpoint": ("", _T.PARAMETER_STRING, "checkpoint for the hierarchy's learned tier ('' keeps the YAML's)"),
    "control_rate_hz": (0.0, _T.PARAMETER_DOUBLE, "control ticks per second; 0 uses the robot's control rate"),
    "command_interface": ("joint_trajectory", _T.PARAMETER_STRING, "joint_trajectory | forward_position"),
    "command_topic": ("", _T.PARAMETER_STRING, "command topic; '' uses the controller's conventional topic"),
    "joint_states_topic": ("/joint_states", _T.PARAMETER_STRING, "sensor_msgs/JointState topic"),
    "cameras": (["front"], _T.PARAMETER_STRING_ARRAY, "cameras to subscribe (robot camera names)"),
    "camera_prefix": ("/cameras", _T.PARAMETER_STRING, "camera topics are <prefix>/<camera>/image_raw etc."),
    "watch_cameras": (True, _T.PARAMETER_BOOL, "stale camera images also make the node hold"),
    "stale_timeout_s": (0.1, _T.PARAMETER_DOUBLE, "s without joint states before holding"),
    "camera_timeout_s": (0.1, _T.PARAMETER_DOUBLE, "s without an image from a watched camera before holding"),
    "stop_after_s": (1.0, _T.PARAMETER_DOUBLE, "s of holding before the stop latches"),
    "resume_on_fresh_data": (False, _T.PARAMETER_BOOL, "leave a hold by itself when data is fresh again"),
    "safety_config": ("", _T.PARAMETER_STRING, "YAML of tiers.deploy.safety.SafetyConfig ('' = defaults)"),
    "instruction": ("", _T.PARAMETER_STRING, "instruction started on activation ('' = wait for ~/instruction)"),
    "autostart": (False, _T.PARAMETER_BOOL, "configure and activate at startup (no lifecycle manager needed)"),
    "status_rate_hz": (5.0, _T.PARAMETER_DOUBLE, "~/status publications per second (also on every state change)"),
    "watchdog_rate_hz": (100.0, _T.PARAMETER_DOUBLE, "watchdog checks per second between control ticks (0: per tick)"),
    "tick_source": ("timer", _T.PARAMETER_STRING, "timer (control_rate_hz) | joint_states (tick on each new state)"),
}
_RANGES = {
    "control_rate_hz": (0.0, 1000.0),
    "stale_timeout_s": (0.001, 10.0),
    "camera_timeout_s": (0.001, 10.0),
    "stop_after_s": (0.0, 60.0),
    "watchdog_rate_hz": (0.0, 1000.0),
}


class HierarchyNode(LifecycleNode):
    """Runs a tiers controller on a robot over ROS 2 (see the module docstring for topics and lifecycle)."""

    def __init__(self, name: str = "hierarchy_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for parameter, (default, kind, description) in HIERARCHY_PARAMETERS.items():
            descriptor = _descriptor(description, kind, floating=_RANGES.get(parameter))
            self.declare_parameter(parameter, default, descriptor)
        self._loop: ControlLoop | None = None
        self.configure_error: str | None = None  # why the last configure failed (the parameter and value)
        self._assembler: ObservationAssembler | None = None
        self._spec: EmbodimentSpec | None = None
        self._entities: list[Any] = []  # subscriptions and publishers made in configure
        self._timer: Any = None
        self._status_timer: Any = None
        self._watch_timer: Any = None
        self._tick_on_state = False
        self._tick_lock = threading.Lock()  # one tick or watchdog check at a time, whichever thread runs it
        self._events_sent = 0
        self._last_state = ControlState.WAITING
        self._pending_corrections: list[tuple[str, int]] = []  # (text, tick when received)
        self._control_group = _callback_groups.MutuallyExclusiveCallbackGroup()
        self._io_group = _callback_groups.ReentrantCallbackGroup()
        self.jitter: JitterStats | None = None
        self.latencies: list[float] = []  # s from the joint state's arrival to the command's publication
        self.tick_latencies: list[float] = []  # s from the tick's start (observation read) to publication
        self._joint_arrival = 0.0
        if self.get_parameter("autostart").value:
            # one-shot: configure and activate from the executor, after construction
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    # -- lifecycle ----------------------------------------------------------------------------------------

    def on_configure(self, state: Any) -> Any:
        try:
            settings = self._read_parameters()
            self._build(settings)
        except (TiersError, ValueError) as error:
            self.configure_error = str(error)
            self.get_logger().error(f"configure failed: {error}")
            self._destroy_entities()
            return _lifecycle.TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"configured: robot {settings['robot']!r}, controller {settings['controller']!r}, "
            f"{settings['command_interface']} on {settings['command_topic']}, {settings['rate']:.1f} Hz"
        )
        return _lifecycle.TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: Any) -> Any:
        assert self._loop is not None
        self._tick_on_state = self.get_parameter("tick_source").value == "joint_states"
        if not self._tick_on_state:
            self._timer = self.create_timer(self._period, self._on_tick, callback_group=self._control_group)
        watch_rate = float(self.get_parameter("watchdog_rate_hz").value)
        if watch_rate > 0:  # same callback group as the tick: the two never run at once
            self._watch_timer = self.create_timer(1.0 / watch_rate, self._on_watch, callback_group=self._control_group)
        rate = float(self.get_parameter("status_rate_hz").value)
        if rate > 0:
            self._status_timer = self.create_timer(1.0 / rate, self._publish_status, callback_group=self._io_group)
        instruction = str(self.get_parameter("instruction").value)
        if instruction:
            self._loop.set_instruction(instruction)
        self.get_logger().info("active: commands go out")
        return super().on_activate(state)

    def on_deactivate(self, state: Any) -> Any:
        for timer in (self._timer, self._status_timer, self._watch_timer):
            if timer is not None:
                self.destroy_timer(timer)
        self._timer = self._status_timer = self._watch_timer = None
        self.get_logger().info("inactive: no commands are sent")
        return super().on_deactivate(state)

    def on_cleanup(self, state: Any) -> Any:
        self._destroy_entities()
        self._loop = self._assembler = None
        return _lifecycle.TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: Any) -> Any:
        self.on_deactivate(state)
        self._destroy_entities()
        return _lifecycle.TransitionCallbackReturn.SUCCESS

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == _lifecycle.TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    # -- configuration ------------------------------------------------------------------------------------

    def _read_parameters(self) -> dict[str, Any]:
        """Parameters as a dict, validated; errors name the parameter and its value."""
        value = {name: self.get_parameter(name).value for name in HIERARCHY_PARAMETERS}
        if value["profile"] not in PROFILES:
            raise ConfigError(f"parameter profile={value['profile']!r}: must be one of {PROFILES}")
        if value["profile"] == "real" and not value["confirm_real_robot"]:
            raise ConfigError(
                "parameter profile='real' commands a physical arm: set confirm_real_robot:=true to confirm that "
                "its hardware e-stop is within reach and its workspace is clear (refusing to start)"
            )
        if value["profile"] == "real" and str(value["controller"]).startswith(PROBE_PREFIX):
            raise ConfigError(
                f"parameter controller={value['controller']!r}: the safety probe emits garbage on purpose and "
                "runs in simulation only, never with profile='real'"
            )
        if value["tick_source"] not in TICK_SOURCES:
            raise ConfigError(f"parameter tick_source={value['tick_source']!r}: must be one of {TICK_SOURCES}")
        if value["tick_source"] == "joint_states" and not float(value["watchdog_rate_hz"]) > 0:
            raise ConfigError(
                "parameter tick_source='joint_states' needs watchdog_rate_hz > 0: without joint states there would be "
                "no tick to notice that they stopped"
            )
        if value["command_interface"] not in rm.COMMAND_INTERFACES:
            raise ConfigError(
                f"parameter command_interface={value['command_interface']!r}: must be one of {rm.COMMAND_INTERFACES}"
            )
        value["command_topic"] = value["command_topic"] or DEFAULT_COMMAND_TOPICS[value["command_interface"]]
        spec = controller_embodiment(str(value["controller"]), EmbodimentSpec.load(value["robot"]))
        rate = float(value["control_rate_hz"]) or spec.control_rate_hz
        if not 0 < rate <= 1000:
            raise ConfigError(f"parameter control_rate_hz={value['control_rate_hz']}: must be in (0, 1000] Hz")
        value["rate"] = rate
        cameras = _string_list("cameras", value["cameras"])
        for camera in cameras:
            spec.camera(camera)  # raises naming the robot's cameras
        value["cameras"] = cameras
        value["spec"] = spec
        return value

    def _build(self, settings: dict[str, Any]) -> None:
        spec: EmbodimentSpec = settings["spec"]
        self._spec = spec
        self._period = 1.0 / settings["rate"]
        safety_config = SafetyConfig.from_yaml(settings["safety_config"]) if settings["safety_config"] else None
        safety = SafetyFilter(spec, safety_config)
        sources = ["joint_states", *(settings["cameras"] if settings["watch_cameras"] else [])]
        watchdog = Watchdog(
            sources,
            WatchdogConfig(
                timeout_s=float(settings["stale_timeout_s"]),
                stop_after_s=float(settings["stop_after_s"]),
                resume_on_fresh_data=bool(settings["resume_on_fresh_data"]),
                source_timeouts={name: float(settings["camera_timeout_s"]) for name in sources[1:]},
            ),
        )
        controller = build_controller(settings["controller"], spec, checkpoint=settings["checkpoint"])
        self._loop = ControlLoop(controller, safety, watchdog)
        self._assembler = ObservationAssembler(spec)
        self._interface = settings["command_interface"]
        self.jitter = JitterStats(self._period)
        message_type = _trajectory.JointTrajectory if self._interface == rm.JOINT_TRAJECTORY else _std.Float64MultiArray
        self._command_pub = self.create_publisher(message_type, settings["command_topic"], COMMAND_QOS)
        self._status_pub = self.create_publisher(_std.String, "~/status", EVENT_QOS)
        self._events_pub = self.create_publisher(_std.String, "~/language_events", EVENT_QOS)
        self._entities = [self._command_pub, self._status_pub, self._events_pub]
        self._subscribe(_sensor.JointState, settings["joint_states_topic"], self._on_joint_state, SENSOR_QOS)
        for camera in settings["cameras"]:
            topics = rm.camera_topics(camera, settings["camera_prefix"])
            self._subscribe(_sensor.Image, topics["image"], _bind(self._on_image, camera), SENSOR_QOS)
            self._subscribe(_sensor.Image, topics["depth"], _bind(self._on_depth, camera), SENSOR_QOS)
            self._subscribe(_sensor.CameraInfo, topics["info"], _bind(self._on_info, camera), SENSOR_QOS)
            self._subscribe(_geometry.PoseStamped, topics["pose"], _bind(self._on_pose, camera), SENSOR_QOS)
        self._subscribe(_std.String, "~/instruction", self._on_instruction, EVENT_QOS)
        self._subscribe(_std.String, "~/correction", self._on_correction, EVENT_QOS)
        self._subscribe(_std.String, "~/stop", self._on_stop, EVENT_QOS)
        self._subscribe(_std.Empty, "~/resume", self._on_resume, EVENT_QOS)

    def _subscribe(self, kind: Any, topic: str, callback: Callable[[Any], None], qos: Any) -> None:
        self._entities.append(self.create_subscription(kind, topic, callback, qos, callback_group=self._io_group))

    def _destroy_entities(self) -> None:
        for entity in self._entities:
            if isinstance(entity, _node.Publisher):
                self.destroy_publisher(entity)
            else:
                self.destroy_subscription(entity)
        self._entities = []

    # -- inputs -------------------------------------------------------------------------------------------

    def _on_joint_state(self, message: Any) -> None:
        if self._assembler is None or self._loop is None:
            return
        try:
            self._assembler.update_joints(
                list(message.name),
                list(message.position),
                list(message.velocity),
                rm.stamp_to_seconds(message.header.stamp),
            )
        except ContractError as error:  # a malformed state is not fresh data: the watchdog will hold
            self.get_logger().warning(f"joint state rejected: {error}", throttle_duration_sec=1.0)
            return
        self._joint_arrival = time.perf_counter()
        self._loop.watchdog.feed("joint_states")
        # tick right away on the new state (while active: the watch timer exists only then); a tick still
        # running makes this state skip its tick rather than queue behind it
        if self._tick_on_state and self._watch_timer is not None and self._tick_lock.acquire(blocking=False):
            try:
                self._tick_locked()
            finally:
                self._tick_lock.release()

    def _on_image(self, camera: str, message: Any) -> None:
        if self._assembler is None or self._loop is None:
            return
        try:
            self._assembler.update_image(camera, rm.image_from_message(message))
        except ContractError as error:
            self.get_logger().warning(f"{camera} image rejected: {error}", throttle_duration_sec=1.0)
            return
        if camera in self._loop.watchdog.sources:
            self._loop.watchdog.feed(camera)

    def _on_depth(self, camera: str, message: Any) -> None:
        if self._assembler is not None:
            try:
                self._assembler.update_depth(camera, rm.depth_from_message(message))
            except ContractError as error:
                self.get_logger().warning(f"{camera} depth rejected: {error}", throttle_duration_sec=1.0)

    def _on_info(self, camera: str, message: Any) -> None:
        if self._assembler is not None:
            self._assembler.update_intrinsics(camera, *rm.intrinsics_from_camera_info(message))

    def _on_pose(self, camera: str, message: Any) -> None:
        if self._assembler is not None:
            try:
                self._assembler.update_pose(camera, rm.matrix_from_pose(message))
            except ContractError as error:
                self.get_logger().warning(f"{camera} pose rejected: {error}", throttle_duration_sec=1.0)

    def _on_instruction(self, message: Any) -> None:
        if self._loop is not None and message.data.strip():
            self.get_logger().info(f"instruction: {message.data!r}")
            self._loop.set_instruction(message.data.strip())

    def _on_correction(self, message: Any) -> None:
        if self._loop is None or self._loop.instruction is None:
            self.get_logger().warning(f"correction {message.data!r} ignored: no instruction is running")
            return
        try:
            self._loop.controller.correct(message.data, source="human_live")
        except ContractError as error:
            self.get_logger().warning(f"correction {message.data!r} not understood: {error}")
            return
        self._pending_corrections.append((message.data, self._loop.controller_ticks))

    def _on_stop(self, message: Any) -> None:
        if self._loop is not None:
            self._loop.watchdog.stop(message.data or "stop requested on ~/stop")
            self.get_logger().warning(f"software stop: {message.data!r} (not a hardware e-stop)")
            self._publish_status()

    def _on_resume(self, message: Any) -> None:
        if self._loop is not None:
            state = self._loop.watchdog.resume()
            self.get_logger().info(f"resume requested: {state.value}")
            self._publish_status()

    # -- the control tick ---------------------------------------------------------------------------------

    def _on_tick(self) -> None:
        with self._tick_lock:
            self._tick_locked()

    def _tick_locked(self) -> None:
        loop, assembler, spec = self._loop, self._assembler, self._spec
        if loop is None or assembler is None or spec is None:
            return
        now = time.perf_counter()
        assert self.jitter is not None
        self.jitter.record(now)
        observation = None
        if assembler.has_joints:
            try:
                observation = assembler.observation(instruction=loop.instruction or "")
            except ContractError as error:
                self.get_logger().warning(f"observation rejected: {error}", throttle_duration_sec=1.0)
        arrival = self._joint_arrival
        result = loop.tick(observation)
        if result.command is not None:
            self._send(result.command)
            if result.motion:
                published = time.perf_counter()
                self.latencies.append(published - arrival)
                self.tick_latencies.append(published - now)
        self._publish_events()
        if result.state is not self._last_state:
            self._last_state = result.state
            self.get_logger().info(f"state {result.state.value}: {loop.watchdog.reason}")
            self._publish_status()

    def _on_watch(self) -> None:
        """The watchdog between ticks: a hold goes out as soon as the data is stale."""
        loop = self._loop
        if loop is None:
            return
        with self._tick_lock:
            result = loop.watch()
            if result is not None and result.command is not None:
                self._send(result.command)
        state = loop.watchdog.state
        if state is not self._last_state:
            self._last_state = state
            self.get_logger().info(f"state {state.value}: {loop.watchdog.reason}")
            self._publish_status()

    def _send(self, command: NDArray[np.float64]) -> None:
        assert self._spec is not None
        if self._interface == rm.JOINT_TRAJECTORY:
            stamp = self.get_clock().now().nanoseconds * 1e-9
            message = rm.joint_trajectory_message(self._spec, command, self._period, stamp)
        else:
            message = rm.float64_array_message(self._spec, command)
        self._command_pub.publish(message)

    def _publish_events(self) -> None:
        """Each new runtime event (commands, corrections, done) once on ~/language_events, as JSON."""
        loop = self._loop
        if loop is None:
            return
        events = getattr(loop.controller, "events", [])
        if len(events) < self._events_sent:  # the controller was reset: its event list restarted
            self._events_sent = 0
        for event in events[self._events_sent :]:
            payload = {
                "kind": getattr(event, "kind", "event"),
                "tick": getattr(event, "tick", None),
                "timestamp": getattr(event, "timestamp", None),
                "detail": getattr(event, "detail", ""),
                "command": event.command.to_dict() if getattr(event, "command", None) is not None else None,
            }
            if payload["kind"] == "correction" and self._pending_corrections:
                said, received_tick = self._pending_corrections.pop(0)
                payload["said"], payload["received_tick"] = said, received_tick
            self._events_pub.publish(_std.String(data=json.dumps(payload)))
        self._events_sent = len(events)

    def _publish_status(self) -> None:
        loop = self._loop
        if loop is None:
            return
        status = loop.status()
        status["node"] = self.get_fully_qualified_name()
        status["monotonic"] = time.monotonic()
        if self.jitter is not None:
            status["rate"] = self.jitter.summary()
        self._status_pub.publish(_std.String(data=json.dumps(status, default=_json_default)))


class MujocoSimNode(Node):
    """The MuJoCo kitchen as a robot: ros2_control-style state and command topics, cameras and /clock."""

    def __init__(self, name: str = "mujoco_sim_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        declare = self.declare_parameter
        declare("robot", "panda", _descriptor("robot preset name or YAML path", _T.PARAMETER_STRING))
        declare("task", "open/drawer/0", _descriptor("kitchen task id of the first episode", _T.PARAMETER_STRING))
        declare("seed", 0, _descriptor("layout seed of the first episode", _T.PARAMETER_INTEGER))
        declare(
            "real_time_factor",
            1.0,
            _descriptor("sim seconds per wall second", _T.PARAMETER_DOUBLE, floating=(0.01, 100.0)),
        )
        declare("cameras", ["front"], _descriptor("cameras rendered and published", _T.PARAMETER_STRING_ARRAY))
        declare("camera_prefix", "/cameras", _descriptor("camera topic prefix", _T.PARAMETER_STRING))
        declare(
            "camera_rate_hz",
            20.0,
            _descriptor("image publications per sim second", _T.PARAMETER_DOUBLE, floating=(0.0, 1000.0)),
        )
        declare("image_stride", 1, _descriptor("publish every n-th pixel (downscale n times)", _T.PARAMETER_INTEGER))
        declare("publish_depth", True, _descriptor("publish depth for cameras that have it", _T.PARAMETER_BOOL))
        declare("joint_states_topic", "/joint_states", _descriptor("joint state topic", _T.PARAMETER_STRING))
        for interface, topic in DEFAULT_COMMAND_TOPICS.items():
            declare(f"{interface}_topic", topic, _descriptor(f"{interface} command topic", _T.PARAMETER_STRING))
        declare(
            "hierarchy",
            "",
            _descriptor("render the cameras this hierarchy needs ('' = the robot's own)", _T.PARAMETER_STRING),
        )
        robot = EmbodimentSpec.load(str(self.get_parameter("robot").value))
        hierarchy = str(self.get_parameter("hierarchy").value)
        self._spec = controller_embodiment(hierarchy, robot) if hierarchy else robot
        cameras = _string_list("cameras", self.get_parameter("cameras").value)
        for camera in cameras:
            self._spec.camera(camera)
        self._cameras = cameras
        self._stride = int(self.get_parameter("image_stride").value)
        if self._stride < 1:
            raise ConfigError(f"parameter image_stride={self._stride}: must be a positive integer")
        # tiers.sim.mujoco sets MUJOCO_GL=egl on headless machines; it must be imported before mujoco is
        from tiers.sim import mujoco as _headless_rendering  # noqa: F401
        from tiers.sim.backends import make_backend

        self._mj = importlib.import_module("mujoco")
        from tiers.sim.kitchen.env import KitchenEnv

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
        self._snapshot = self._mj.MjData(model)  # the state the render thread draws (copied under the lock)
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
                self._mj.mj_copyData(self._snapshot, backend.model, backend.data)  # type: ignore[attr-defined]
                self._snapshot_stamp = self._clock_offset + observation.timestamp
            self._render_wanted.set()  # a render still running skips this frame instead of queueing it
        if success or truncated or self._steps % 10 == 0:
            self._status_pub.publish(_std.String(data=json.dumps(self._status, default=_json_default)))

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
        from tiers.sim.mujoco.cameras import CameraRig

        model = self._env.backend.model  # type: ignore[attr-defined]
        rig = CameraRig(
            model,
            [self._spec.camera(name) for name in self._cameras],
            geom_object=np.full(model.ngeom, -1, dtype=np.int64),
            segmentation=False,
        )
        mujoco = self._mj
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


# -- entry points -----------------------------------------------------------------------------------------


def _string_list(name: str, value: Any) -> list[str]:
    """A string-array parameter's value (an empty list may arrive typed as bytes); errors name the parameter."""
    if value is None or (isinstance(value, list | tuple | bytes) and len(value) == 0):
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"parameter {name}={value!r}: must be a list of strings")
    return [item for item in value if item]


def _bind(method: Callable[[str, Any], None], camera: str) -> Callable[[Any], None]:
    return lambda message: method(camera, message)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def spin(nodes: Sequence[Any]) -> None:
    """Spin ``nodes`` until Ctrl-C or an external shutdown, each on a single-threaded executor in its own thread.

    One executor a node, so a slow sim step never delays the controller's tick (a :class:`MujocoSimNode` also
    needs it: MuJoCo's EGL renderer is bound to the thread that first renders). Not rclpy's
    MultiThreadedExecutor: with the Kilted wheels (rclpy 9.1) a node's timers there fired at a few Hz instead
    of 50 (a timer's task is made but waits for some other entity to wake the executor), which starved the
    control loop; a single thread per node ticks on time. Within the hierarchy node the joint-state callback
    waits for a running tick, so its arrival stamp (the watchdog's clock) can be late by at most one tick.
    """
    executors: list[Any] = []
    workers: list[threading.Thread] = []
    for node in nodes:
        executor = _executors.SingleThreadedExecutor()
        executor.add_node(node)
        executors.append(executor)
        target = _spin_sim if isinstance(node, MujocoSimNode) else _spin_quietly
        arguments = (executor, node) if isinstance(node, MujocoSimNode) else (executor,)
        workers.append(threading.Thread(target=target, args=arguments, name=node.get_name(), daemon=True))
    for worker in workers:
        worker.start()
    try:
        while rclpy.ok() and any(worker.is_alive() for worker in workers):
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        for executor in executors:
            executor.shutdown()
        for worker in workers:
            worker.join(timeout=5.0)
        for node in nodes:
            node.destroy_node()


def _spin_sim(executor: Any, sim: MujocoSimNode) -> None:
    """Spin a sim node, then free its renderers in the same thread (their EGL contexts are bound to it)."""
    try:
        _spin_quietly(executor)
    finally:
        sim.close()


def _spin_quietly(executor: Any) -> None:
    with contextlib.suppress(KeyboardInterrupt, _executors.ExternalShutdownException):
        executor.spin()


def hierarchy_main(args: list[str] | None = None) -> None:
    """``ros2 run tiers_ros hierarchy_node``."""
    rclpy.init(args=args)
    try:
        spin([HierarchyNode()])
    finally:
        rclpy.try_shutdown()


def sim_main(args: list[str] | None = None) -> None:
    """``ros2 run tiers_ros mujoco_sim_node``."""
    rclpy.init(args=args)
    try:
        spin([MujocoSimNode()])
    finally:
        rclpy.try_shutdown()
