"""``tiers bench ros``: what the ROS 2 layer costs (needs the ``ros`` extra).

One process, two rclpy nodes on a private domain (localhost discovery): the bench plays the robot — it
publishes ``/joint_states`` at the control rate and subscribes to the commands — and a real
:class:`~tiers.deploy.ros.hierarchy_node.HierarchyNode` runs the ``sweep`` controller (a replay: its own compute is
negligible, so the figures are the ROS layer's, not a policy's). Figures (ms unless named otherwise):

- ``joint_state_transport_*``: DDS hop of a JointState, publish -> the node's callback;
- ``obs_to_command_*``: a joint state's arrival in the node -> the command computed from it is published
  (includes the wait for the next control tick, up to one period); ``obs_to_command_on_state_*``: the same
  with ``tick_source: joint_states`` (a tick on each new state, no wait);
- ``tick_processing_*``: the tick itself: observation assembly (with FK), controller, safety filter, message;
- ``control_jitter_*``: |period - 1/rate| of the node's control timer at ``rate_hz`` (50 Hz by default);
- ``hold_latency_*``: the last joint state -> the watchdog holds (trials of a dying publisher; timeout 50 ms);
- ``safety_filter_us_*``: one :meth:`SafetyFilter.filter` call with the workspace check (FK), µs;
- ``image_<W>x<H>_*``: an RGB image through rclpy: array -> message, publish -> callback, message -> array.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from tiers.core.embodiment import EmbodimentSpec
from tiers.deploy.safety import SafetyFilter
from tiers.deploy.watchdog import ControlState


def _percentiles(name: str, seconds: list[float], scale: float = 1e3, unit: str = "ms") -> dict[str, float]:
    if not seconds:
        return {}
    values = np.asarray(seconds) * scale
    return {
        f"{name}_{unit}_p50": float(np.percentile(values, 50)),
        f"{name}_{unit}_p99": float(np.percentile(values, 99)),
        f"{name}_{unit}_max": float(values.max()),
    }


def run_ros_benchmark(
    *,
    rate_hz: float = 50.0,
    seconds: float = 6.0,
    hold_trials: int = 20,
    image_sizes: tuple[tuple[int, int], ...] = ((320, 240), (640, 480)),
    images: int = 40,
    domain_id: int | None = None,
) -> dict[str, Any]:
    """Measure the ROS layer (see the module docstring); returns the figures as a flat JSON-able dict."""
    os.environ["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else 90 + os.getpid() % 10)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image, JointState

    from tiers.deploy.ros import messages as rm
    from tiers.deploy.ros.conventions import SENSOR_QOS
    from tiers.deploy.ros.hierarchy_node import HierarchyNode

    spec = EmbodimentSpec.load("panda")
    figures: dict[str, Any] = {"rate_hz": rate_hz, "ros_domain_id": int(os.environ["ROS_DOMAIN_ID"])}
    # the filter alone first, before any executor thread competes for the interpreter
    safety = SafetyFilter(spec)
    safety.reset(spec.home, 0.04)
    costs = []
    for k in range(500):
        action = np.append(np.array(spec.home) + 0.05 * np.sin(k / 20.0), 0.04)
        start = time.perf_counter()
        safety.filter(action)
        costs.append(time.perf_counter() - start)
    figures.update(_percentiles("safety_filter", costs, scale=1e6, unit="us"))
    context = rclpy.Context()
    rclpy.init(context=context)
    node = HierarchyNode(
        context=context,
        parameter_overrides=[
            Parameter("autostart", value=True),
            Parameter("controller", value="sweep"),
            Parameter("instruction", value="sweep"),
            Parameter("cameras", value=["front"]),
            Parameter("watch_cameras", value=False),
            Parameter("control_rate_hz", value=rate_hz),
            Parameter("command_interface", value="forward_position"),
            Parameter("stale_timeout_s", value=0.05),
            Parameter("stop_after_s", value=10.0),
            Parameter("status_rate_hz", value=0.0),
        ],
    )
    # the same node ticking on each joint state instead of a timer: no wait for the next tick
    event_node = HierarchyNode(
        "hierarchy_node_on_state",
        context=context,
        parameter_overrides=[
            Parameter("autostart", value=True),
            Parameter("controller", value="sweep"),
            Parameter("instruction", value="sweep"),
            Parameter("cameras", value=["front"]),
            Parameter("watch_cameras", value=False),
            Parameter("control_rate_hz", value=rate_hz),
            Parameter("tick_source", value="joint_states"),
            Parameter("command_interface", value="forward_position"),
            Parameter("command_topic", value="/bench/on_state_commands"),
            Parameter("stale_timeout_s", value=0.05),
            Parameter("stop_after_s", value=10.0),
            Parameter("status_rate_hz", value=0.0),
        ],
    )
    robot = rclpy.create_node("bench_robot", context=context)
    publisher = robot.create_publisher(JointState, "/joint_states", SENSOR_QOS)
    transport: list[float] = []
    robot.create_subscription(
        JointState,
        "/joint_states",
        lambda m: transport.append(time.time() - rm.stamp_to_seconds(m.header.stamp)),
        SENSOR_QOS,
    )
    image_times: list[float] = []
    decode: list[float] = []

    def on_image(message: Any) -> None:
        arrived = time.time()
        start = time.perf_counter()
        rm.image_from_message(message)
        decode.append(time.perf_counter() - start)
        image_times.append(arrived - rm.stamp_to_seconds(message.header.stamp))

    robot.create_subscription(Image, "/bench/image", on_image, 10)
    image_publisher = robot.create_publisher(Image, "/bench/image", 10)
    executors = []
    for member in (node, event_node, robot):
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(member)
        executors.append(executor)
        threading.Thread(target=executor.spin, daemon=True).start()
    publishing = threading.Event()
    stopped = threading.Event()
    last_sent = [0.0]

    def robot_loop() -> None:
        period = 1.0 / rate_hz
        next_tick = time.perf_counter()
        while not stopped.is_set():
            if publishing.is_set():
                q = np.array(spec.home)
                publisher.publish(rm.joint_state_message(spec, q, np.zeros(spec.dof), 0.04, time.time()))
                last_sent[0] = time.monotonic()
            next_tick += period
            time.sleep(max(0.0, next_tick - time.perf_counter()))

    threading.Thread(target=robot_loop, daemon=True).start()
    try:
        publishing.set()
        deadline = time.monotonic() + 30
        while node.jitter is None or node._loop is None or node._loop.watchdog.state is not ControlState.RUNNING:
            if time.monotonic() > deadline:
                raise RuntimeError("the hierarchy node did not start running within 30 s")
            time.sleep(0.05)
        node.latencies.clear()
        node.tick_latencies.clear()
        event_node.latencies.clear()
        transport.clear()
        node.jitter.reset()
        time.sleep(seconds)
        figures.update(_percentiles("joint_state_transport", transport))
        figures.update(_percentiles("obs_to_command", node.latencies))
        figures.update(_percentiles("obs_to_command_on_state", event_node.latencies))
        figures.update(_percentiles("tick_processing", node.tick_latencies))
        jitter = node.jitter.summary()
        figures.update(
            {
                "control_achieved_hz": jitter.get("achieved_hz"),
                "control_jitter_ms_p50": jitter.get("jitter_p50_ms"),
                "control_jitter_ms_p99": jitter.get("jitter_p99_ms"),
                "control_jitter_ms_max": jitter.get("jitter_max_ms"),
                "control_overruns": jitter.get("overruns"),
            }
        )
        holds = []
        loop = node._loop
        for _ in range(hold_trials):
            if loop.watchdog.state is not ControlState.RUNNING:
                publishing.set()
                time.sleep(0.1)
                loop.watchdog.resume()
                time.sleep(0.1)
            publishing.clear()
            time.sleep(0.02)
            last = last_sent[0]
            time.sleep(0.25)
            entered = [t.time for t in loop.watchdog.transitions if t.after is ControlState.HOLDING and t.time > last]
            if entered:
                holds.append(entered[0] - last)
        figures.update(_percentiles("hold_latency", holds))
        figures["hold_trials"] = len(holds)
    finally:
        stopped.set()
    for width, height in image_sizes:
        image_times.clear()
        decode.clear()
        encode = []
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        for _ in range(images):
            start = time.perf_counter()
            message = rm.image_message(frame, time.time(), "bench")
            encode.append(time.perf_counter() - start)
            message.header.stamp = rm.seconds_to_stamp(time.time())
            image_publisher.publish(message)
            time.sleep(0.03)
        time.sleep(0.3)
        figures.update(_percentiles(f"image_{width}x{height}_encode", encode))
        figures.update(_percentiles(f"image_{width}x{height}_transport", image_times))
        figures.update(_percentiles(f"image_{width}x{height}_decode", decode))
        figures[f"image_{width}x{height}_received"] = len(image_times)
    for executor in executors:
        executor.shutdown()
    node.destroy_node()
    event_node.destroy_node()
    robot.destroy_node()
    rclpy.try_shutdown(context=context)
    return figures
