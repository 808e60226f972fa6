"""The hierarchy node of tiers (needs the ``ros`` extra): a thin rclpy lifecycle adapter over :mod:`tiers.deploy`.

``HierarchyNode`` (``ros2 run tiers_ros hierarchy_node``)::

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

``~/stop`` is a latched *software* stop: it is not a hardware e-stop (see :mod:`tiers.deploy.watchdog`).

Threads: the joint states and the watchdog timer (``watchdog_rate_hz``) run on a helper node,
``<name>_watchdog``, spun by a thread of its own (``watchdog``); the node's executor thread runs every other
callback (cameras, texts, the status, lifecycle and parameter services); the control ticks run in a third
thread (``control``). So a controller step that plans for a while, or a burst of other messages, never
delays the arrival of joint states nor the watchdog's check of them: the watchdog measures the robot's
data (fed with the time DDS received each state), not the node's stalls.

Inputs: every callback checks its message (:mod:`tiers.deploy.inputs`, :mod:`tiers.deploy.observations`,
:mod:`tiers.deploy.ros.messages`); a message that cannot be used is rejected, counted and named in
``~/status`` (``rejections``: the field, what was expected, what came) and on ``/rosout``, and the node goes
on. An unexpected error in a tick holds the robot (the last safe command), is reported the same way, and the
next tick tries again; after ``MAX_TICK_FAILURES`` in a row the software stop latches with the error.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError, ContractError, TiersError
from tiers.core.extras import require
from tiers.deploy.control_loop import ControlLoop
from tiers.deploy.controllers import PROBE_PREFIX, build_controller, controller_embodiment
from tiers.deploy.inputs import InputRejectedError, StampGuard, check_text, shorten
from tiers.deploy.observations import ObservationAssembler
from tiers.deploy.rate import JitterStats, Rate
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
from tiers.deploy.ros.scene_model import SceneModel
from tiers.deploy.ros.spin import run_node
from tiers.deploy.safety import SafetyConfig, SafetyFilter
from tiers.deploy.watchdog import ControlState, Watchdog, WatchdogConfig

_PURPOSE = "the tiers ROS 2 hierarchy node"
rclpy = require("rclpy", purpose=_PURPOSE)
_executors = require("rclpy.executors", purpose=_PURPOSE)
_lifecycle = require("rclpy.lifecycle", purpose=_PURPOSE)
_node = require("rclpy.node", purpose=_PURPOSE)
_callback_groups = require("rclpy.callback_groups", purpose=_PURPOSE)
_std = require("std_msgs.msg", purpose=_PURPOSE)
_sensor = require("sensor_msgs.msg", purpose=_PURPOSE)
_geometry = require("geometry_msgs.msg", purpose=_PURPOSE)
_trajectory = require("trajectory_msgs.msg", purpose=_PURPOSE)
_params = require("rcl_interfaces.msg", purpose=_PURPOSE)
# the base class needs a static import (checked above, so a missing extra fails with its name first)
from rclpy.lifecycle import LifecycleNode  # noqa: E402

_T = ParameterType  # short, for the parameter table

PROFILES = ("sim", "real")
TICK_SOURCES = ("timer", "joint_states")

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
    "stamp_tolerance_s": (
        1.0,
        _T.PARAMETER_DOUBLE,
        "s a joint state's stamp may run ahead of the node's clock, or go back, since the last accepted one",
    ),
}
_RANGES = {
    "control_rate_hz": (0.0, 1000.0),
    "stale_timeout_s": (0.001, 10.0),
    "camera_timeout_s": (0.001, 10.0),
    "stop_after_s": (0.0, 60.0),
    "watchdog_rate_hz": (0.0, 1000.0),
    "stamp_tolerance_s": (0.001, 3600.0),
}
MAX_TICK_FAILURES = 20  # consecutive failed ticks (unexpected errors, each held) before the stop latches
RECENT_REJECTIONS = 10  # rejected messages listed in the status (the counts cover all of them)
SWITCH_INTERVAL_S = 0.001  # s, the interpreter's thread switch interval while the node is active (see on_activate)
WATCH_STALL_PERIODS = 3.0  # a watchdog check later than this many periods after the last one: the node stalled
STATUS_TEXT_CHARS = 200  # characters of the instruction and command texts in ~/status
MAX_EVENT_TEXT = 1000  # characters of an event's detail on ~/language_events


class HierarchyNode(LifecycleNode):
    """Runs a tiers controller on a robot over ROS 2 (see the module docstring for topics, threads, lifecycle)."""

    def __init__(self, name: str = "hierarchy_node", **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        for parameter, (default, kind, description) in HIERARCHY_PARAMETERS.items():
            self.declare_parameter(parameter, default, descriptor(description, kind, floating=_RANGES.get(parameter)))
        # after the declarations: refuse what rclpy's read-only descriptors let through (an empty name was set)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._loop: ControlLoop | None = None
        self.configure_error: str | None = None  # why the last configure failed (the parameter and value)
        self._assembler: ObservationAssembler | None = None
        self._spec: EmbodimentSpec | None = None
        self._stamps: StampGuard | None = None
        self._entities: list[Any] = []  # subscriptions and publishers made in configure
        # joint states and the watchdog timer live on a second node with an executor thread of its own, so no
        # other callback (a status, a burst of camera images or texts) can delay them
        self._fast: Any = None
        self._fast_executor: Any = None
        self._fast_thread: threading.Thread | None = None
        self._status_timer: Any = None
        self._watch_timer: Any = None
        self._tick_on_state = False
        self._control_thread: threading.Thread | None = None
        self._closing = threading.Event()  # ends the control thread
        self._new_state = threading.Event()  # a joint state arrived (tick_source: joint_states)
        self._state_lock = threading.Lock()  # _last_state, from the control thread and the executor's
        self._events_sent = 0
        self._last_state = ControlState.WAITING
        self._pending_corrections: deque[tuple[str, int]] = deque(maxlen=100)  # (text, tick when received)
        self.rejections: Counter[str] = Counter()  # rejected messages by input (joint_states, instruction, ...)
        self._recent_rejections: deque[str] = deque(maxlen=RECENT_REJECTIONS)
        self.watch_stalls = 0  # watchdog checks skipped because the check itself came late (see _on_watch)
        self.tick_errors = 0  # ticks that failed with an unexpected error (each one held the robot)
        self._failed_in_a_row = 0
        self._last_tick_error = ""
        self._io_group = _callback_groups.MutuallyExclusiveCallbackGroup()
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
        watch_rate = float(self.get_parameter("watchdog_rate_hz").value)
        self._loop.watched = watch_rate > 0  # then staleness is judged only in the thread that gets the data
        self._watch_period = 1.0 / watch_rate if watch_rate > 0 else 0.0
        self._last_watch, self._skipped_watch = time.monotonic(), False
        if watch_rate > 0:  # the executor's thread: never waits for a controller step
            self._watch_timer = self._fast.create_timer(1.0 / watch_rate, self._on_watch)
        rate = float(self.get_parameter("status_rate_hz").value)
        if rate > 0:
            self._status_timer = self.create_timer(1.0 / rate, self._publish_status, callback_group=self._io_group)
        instruction = str(self.get_parameter("instruction").value)
        if instruction:
            self._loop.set_instruction(instruction)
        # a pure-Python controller step holds the interpreter for up to the switch interval (5 ms by default)
        # each time the joint-state callback or the watchdog wants it; a callback takes it several times, so
        # on a loaded machine the delays added up to a stale watchdog (a self-trip): 1 ms keeps them small
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self._closing.clear()
        self._control_thread = threading.Thread(target=self._control, name="control", daemon=True)
        self._control_thread.start()
        self.get_logger().info("active: commands go out")
        return super().on_activate(state)

    def on_deactivate(self, state: Any) -> Any:
        self._stop_control()
        if self._status_timer is not None:
            self.destroy_timer(self._status_timer)
        if self._watch_timer is not None and self._fast is not None:
            self._fast.destroy_timer(self._watch_timer)
        self._status_timer = self._watch_timer = None
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

    def destroy_node(self) -> None:
        self._stop_control()
        self._destroy_fast_path()
        super().destroy_node()

    def _on_set_parameters(self, parameters: list[Any]) -> Any:
        """Only declared parameters may change (and those are read-only: rclpy refuses them before this)."""
        unknown = [shorten(parameter.name, 40) for parameter in parameters if not self.has_parameter(parameter.name)]
        if unknown:
            self.rejections["parameters"] += 1
            self._recent_rejections.append(f"parameters: name: expected a declared parameter, got {unknown}")
            return _params.SetParametersResult(successful=False, reason=f"undeclared parameters {unknown}")
        return _params.SetParametersResult(successful=True)

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == _lifecycle.TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def _stop_control(self) -> None:
        self._closing.set()
        self._new_state.set()
        thread, self._control_thread = self._control_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10.0)  # a controller step in progress finishes first

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
        cameras = string_list("cameras", value["cameras"])
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
        # a hierarchy's mid tier may plan against the kitchen's fixtures: the static model, never its state
        controller = build_controller(
            settings["controller"], spec, checkpoint=settings["checkpoint"], scene_model=SceneModel
        )
        self._loop = ControlLoop(controller, safety, watchdog, sink=self._send)
        self._assembler = ObservationAssembler(spec)
        self._stamps = StampGuard(float(settings["stamp_tolerance_s"]))
        self._interface = settings["command_interface"]
        self.jitter = JitterStats(self._period)
        message_type = _trajectory.JointTrajectory if self._interface == rm.JOINT_TRAJECTORY else _std.Float64MultiArray
        self._command_pub = self.create_publisher(message_type, settings["command_topic"], COMMAND_QOS)
        self._status_pub = self.create_publisher(_std.String, "~/status", EVENT_QOS)
        self._events_pub = self.create_publisher(_std.String, "~/language_events", EVENT_QOS)
        self._entities = [self._command_pub, self._status_pub, self._events_pub]
        # with the message info: the watchdog is fed the time DDS received the state, however late the callback
        # on a node of its own, spun by a thread of its own: the data path and the watchdog (module docstring)
        source = "joint_states"
        name, namespace = f"{self.get_name()}_watchdog", self.get_namespace()
        self._fast = rclpy.create_node(name, namespace=namespace, context=self.context)
        self._fast.create_subscription(
            _sensor.JointState,
            settings["joint_states_topic"],
            lambda message, info: self._guarded(source, lambda m: self._on_joint_state(m, info), message),
            SENSOR_QOS,
        )
        self._fast_executor = _executors.SingleThreadedExecutor(context=self.context)
        self._fast_executor.add_node(self._fast)
        self._fast_thread = threading.Thread(target=self._spin_fast, name="watchdog", daemon=True)
        self._fast_thread.start()
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
        source = topic.removeprefix("~/").strip("/") or topic
        guarded = _bind(self._guarded, source, callback)
        self._entities.append(self.create_subscription(kind, topic, guarded, qos, callback_group=self._io_group))

    def _spin_fast(self) -> None:
        executor = self._fast_executor
        with contextlib.suppress(Exception):  # shutdown races end the thread
            executor.spin()

    def _destroy_fast_path(self) -> None:
        fast, self._fast = self._fast, None
        if fast is None:
            return
        self._fast_executor.shutdown()
        thread = self._fast_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        fast.destroy_node()

    def _destroy_entities(self) -> None:
        self._destroy_fast_path()
        for entity in self._entities:
            if isinstance(entity, _node.Publisher):
                self.destroy_publisher(entity)
            else:
                self.destroy_subscription(entity)
        self._entities = []

    # -- inputs -------------------------------------------------------------------------------------------

    def _guarded(self, source: str, callback: Callable[[Any], None], message: Any) -> None:
        """Run one input callback; whatever it raises is reported as a rejection and never ends the node."""
        try:
            callback(message)
        except InputRejectedError as error:
            self._reject(source, str(error))
        except Exception as error:  # an input must never stop the node: report it and go on
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            self._reject(source, f"unexpected {shorten(detail, 300)}")
            self.get_logger().error(
                f"{source} callback failed: {traceback.format_exc(limit=5)}", throttle_duration_sec=1.0
            )

    def _reject(self, source: str, why: str) -> None:
        """Count a rejected message and name it in the status and on /rosout (throttled there)."""
        self.rejections[source] += 1
        text = f"{source}: {shorten(why, 300)}"
        self._recent_rejections.append(text)
        self.get_logger().warning(f"rejected {text}", throttle_duration_sec=1.0)

    def _on_joint_state(self, message: Any, info: Any = None) -> None:
        loop, assembler, stamps = self._loop, self._assembler, self._stamps
        if assembler is None or loop is None or stamps is None:
            return
        if loop.watchdog.state in (ControlState.WAITING, ControlState.STOPPED):
            stamps.reanchor()  # nothing is driven from these states: a driver with a new clock is taken up
        stamp = stamps.check(rm.stamp_to_seconds(message.header.stamp))
        assembler.update_joints(list(message.name), list(message.position), list(message.velocity), stamp)
        stamps.accept(stamp)  # only a state valid in every field moves the stamps' reference
        self._joint_arrival = time.perf_counter()
        loop.watchdog.feed("joint_states", _arrival(info))
        if self._tick_on_state:
            self._new_state.set()  # the control thread ticks on it; a tick still running skips this state

    def _on_image(self, camera: str, message: Any) -> None:
        if self._assembler is None or self._loop is None:
            return
        self._assembler.update_image(camera, rm.image_from_message(message))
        if camera in self._loop.watchdog.sources:
            self._loop.watchdog.feed(camera)

    def _on_depth(self, camera: str, message: Any) -> None:
        if self._assembler is not None:
            self._assembler.update_depth(camera, rm.depth_from_message(message))

    def _on_info(self, camera: str, message: Any) -> None:
        if self._assembler is not None:
            self._assembler.update_intrinsics(camera, *rm.intrinsics_from_camera_info(message))

    def _on_pose(self, camera: str, message: Any) -> None:
        if self._assembler is not None:
            self._assembler.update_pose(camera, rm.matrix_from_pose(message))

    def _on_instruction(self, message: Any) -> None:
        if self._loop is None:
            return
        text = check_text(message.data)  # empty or over MAX_TEXT_CHARS: rejected, named
        self.get_logger().info(f"instruction: {shorten(text)!r}")
        self._pending_corrections.clear()  # the runtime forgets corrections not yet applied when it restarts
        self._loop.set_instruction(text)

    def _on_correction(self, message: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        text = check_text(message.data)
        if loop.instruction is None:
            raise InputRejectedError("data", "a correction while an instruction runs", f"{shorten(text)!r} with none")
        try:
            loop.controller.correct(text, source="human_live")
        except ContractError as error:  # only filler words: nothing to act on
            got = f"{shorten(text)!r} ({error})"
            raise InputRejectedError("data", "a stop, resume, motion or subtask", got) from None
        self._pending_corrections.append((text, loop.controller_ticks))

    def _on_stop(self, message: Any) -> None:
        if self._loop is not None:  # a stop is never refused: an unusable reason only becomes a default one
            reason = shorten(" ".join(str(message.data).split()), 200) or "stop requested on ~/stop"
            self._loop.watchdog.stop(reason)
            self.get_logger().warning(f"software stop: {reason!r} (not a hardware e-stop)")
            self._publish_status()

    def _on_resume(self, message: Any) -> None:
        if self._loop is not None:
            state = self._loop.watchdog.resume()
            self.get_logger().info(f"resume requested: {state.value}")
            self._publish_status()

    # -- the control thread -------------------------------------------------------------------------------

    def _control(self) -> None:
        """The control thread: a tick every period (or on each new joint state) until deactivated."""
        rate = Rate(1.0 / self._period, spin_s=0.0)
        while not self._closing.is_set() and self.context.ok():
            if self._tick_on_state:
                if not self._new_state.wait(timeout=0.1):
                    continue
                self._new_state.clear()
            else:
                rate.sleep()
            if self._closing.is_set():
                return
            self._tick()

    def _tick(self) -> None:
        """One control tick; an unexpected error holds the robot, is reported, and the next tick tries again."""
        loop = self._loop
        if loop is None:
            return
        try:
            self._tick_once(loop)
            self._failed_in_a_row = 0
        except Exception as error:
            self.tick_errors += 1
            self._failed_in_a_row += 1
            self._last_tick_error = shorten("".join(traceback.format_exception_only(type(error), error)).strip(), 300)
            self.get_logger().error(
                f"tick failed ({self._failed_in_a_row} in a row), holding: {traceback.format_exc(limit=5)}",
                throttle_duration_sec=1.0,
            )
            try:
                loop.hold()
                if self._failed_in_a_row >= MAX_TICK_FAILURES:
                    loop.watchdog.stop(f"{self._failed_in_a_row} ticks failed in a row: {self._last_tick_error}")
                self._note_state(loop.watchdog.state)
            except Exception:
                pass

    def _tick_once(self, loop: ControlLoop) -> None:
        assembler = self._assembler
        if assembler is None:
            return
        now = time.perf_counter()
        assert self.jitter is not None
        self.jitter.record(now)
        observation = assembler.observation(instruction=loop.instruction or "") if assembler.has_joints else None
        arrival = self._joint_arrival
        result = loop.tick(observation)  # commands go out through loop.sink (self._send)
        if result.command is not None and result.motion:
            published = time.perf_counter()
            self.latencies.append(published - arrival)
            self.tick_latencies.append(published - now)
        self._publish_events()
        self._note_state(result.state)

    def _on_watch(self) -> None:
        """The watchdog between ticks (the executor's thread): a hold goes out as soon as the data is stale.

        When this check itself comes late (the process stalled: a loaded CPU), joint states received meanwhile
        may still wait for their callback: the check is skipped once, so the callbacks run first; the next
        check (one period later) judges. Never twice in a row, so a real gap still holds."""
        loop = self._loop
        if loop is None:
            return
        now = time.monotonic()
        late = now - self._last_watch > WATCH_STALL_PERIODS * self._watch_period
        self._last_watch = now
        if late and not self._skipped_watch:
            self._skipped_watch = True
            self.watch_stalls += 1
            return
        self._skipped_watch = False
        loop.watch()  # the hold, if any, is sent through loop.sink
        self._note_state(loop.watchdog.state)

    def _note_state(self, state: ControlState) -> None:
        """Log and publish the status on a change of state."""
        loop = self._loop
        with self._state_lock:
            if state is self._last_state or loop is None:
                return
            self._last_state = state
        self.get_logger().info(f"state {state.value}: {shorten(loop.watchdog.reason, 300)}")
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
                "detail": shorten(str(getattr(event, "detail", "")), 2 * MAX_EVENT_TEXT),
                "command": event.command.to_dict() if getattr(event, "command", None) is not None else None,
            }
            if payload["kind"] == "correction" and self._pending_corrections:
                said, received_tick = self._pending_corrections.popleft()
                payload["said"], payload["received_tick"] = said, received_tick
            self._events_pub.publish(_std.String(data=json.dumps(payload, default=str)))
        self._events_sent = len(events)

    def _publish_status(self) -> None:
        loop = self._loop
        if loop is None:
            return
        status = loop.status()
        # texts are bounded on arrival (MAX_TEXT_CHARS); the status, sent 5 times a second, carries less of them
        for holder in (status, status.get("controller") or {}):
            for key in ("instruction", "command", "language_motion"):
                if isinstance(holder.get(key), str):
                    holder[key] = shorten(holder[key], STATUS_TEXT_CHARS)
        status["node"] = self.get_fully_qualified_name()
        status["monotonic"] = time.monotonic()
        status["rejections"] = {"counts": dict(self.rejections), "recent": list(self._recent_rejections)}
        status["tick_errors"] = {"count": self.tick_errors, "last": self._last_tick_error}
        status["watch_stalls"] = self.watch_stalls
        if self.jitter is not None:
            status["rate"] = self.jitter.summary()
        self._status_pub.publish(_std.String(data=status_json(status)))


def _arrival(info: Any) -> float | None:
    """Monotonic s when DDS received a message (its ``received_timestamp``, system clock ns), or None (now)."""
    received = int(info.get("received_timestamp", 0)) if isinstance(info, dict) else 0
    if received <= 0:
        return None
    return time.monotonic() - max(0.0, (time.time_ns() - received) * 1e-9)


def _bind(method: Callable[..., None], *bound: Any) -> Callable[[Any], None]:
    return lambda message: method(*bound, message)


def main(args: list[str] | None = None) -> None:
    """``ros2 run tiers_ros hierarchy_node``."""
    run_node(HierarchyNode, args)
