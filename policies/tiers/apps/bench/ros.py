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
- ``hold_latency_*``: the last joint state -> the watchdog holds (trials of a dying publisher), against
  ``hold_latency_bound_ms`` = ``stale_timeout_s`` (50 ms) + one watchdog period (10 ms);
- ``self_trips`` over ``self_trip_instructions``: the README's sim graph (MuJoCo kitchen node + the
  ``offline_paths`` hierarchy with its two RGB-D cameras, parameters of ``config/sim.yaml``) in this one
  process; each instruction makes the planner and the mid tier plan; a self-trip is a hold while the sim
  published on time (its joint states, by their DDS source stamps, never further apart than the timeout:
  the node's own stall; goal: 0); ``sim_late_holds``: holds after the sim itself published late (a real
  gap of the robot's data, e.g. a CPU shared with other work). ``self_trip_mid_plan_ms_*``: how long those
  plans took;
- ``safety_filter_us_*``: one :meth:`SafetyFilter.filter` call with the workspace check (FK), µs;
- ``image_<W>x<H>_*``: an RGB image through rclpy: array -> message, publish -> callback, message -> array;
- ``low_<onnx|torch>_control_step_*``: the same sim graph with a learned low tier: the shipped
  ``kitchen_paths_beso`` under ONNX Runtime (``learned_paths_onnx``, exported to a temporary folder) and the same
  checkpoint under torch without guidance (``learned_paths_unguided``), instructed "open the drawer" and run
  ``learned_seconds``: the node's tick (observation, hierarchy with the low tier's chunk every
  ``n_action_steps`` ticks, safety filter, message), ms; ``low_*_ticks`` how many.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import yaml
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.locations import preset_path
from tiers.deploy.ros import messages as rm
from tiers.deploy.ros.conventions import EVENT_QOS, SENSOR_QOS
from tiers.deploy.ros.hierarchy_node import HierarchyNode
from tiers.deploy.ros.sim_robot_node import MujocoSimNode
from tiers.deploy.ros.spin import parameter_overrides
from tiers.deploy.safety import SafetyFilter
from tiers.deploy.watchdog import ControlState
from tiers.policies.hierarchy.registry import HierarchyContext
from tiers.policies.low.export import export_onnx


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
    self_trip_instructions: int = 100,
    instruction_period_s: float = 1.0,
    learned_seconds: float = 8.0,
) -> dict[str, Any]:
    """Measure the ROS layer (see the module docstring); returns the figures as a flat JSON-able dict.

    Args:
        self_trip_instructions: instructions sent to the sim graph for ``self_trips`` (0 skips that part).
        instruction_period_s: s between those instructions.
        learned_seconds: s the sim graph runs each learned low tier (ONNX, torch) for ``low_*`` (0 skips).
    """
    os.environ["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None else 90 + os.getpid() % 10)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
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
        figures["hold_latency_bound_ms"] = (0.05 + 1.0 / 100.0) * 1e3  # stale_timeout_s + one watchdog period
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
    if self_trip_instructions > 0:
        figures.update(_self_trips_in_a_process(self_trip_instructions, instruction_period_s))
    if learned_seconds > 0:
        figures.update(_learned_control_steps_in_a_process(learned_seconds))
    return figures


def _learned_control_steps_in_a_process(seconds: float) -> dict[str, Any]:
    """:func:`_learned_control_steps` in a fresh process (see :func:`_figures_in_a_process`)."""
    call = f"_learned_control_steps({float(seconds)!r})"
    return _figures_in_a_process(call, "the learned low-tier run", timeout_s=600 + 4 * seconds)


def _figures_in_a_process(call: str, what: str, *, timeout_s: float) -> dict[str, Any]:
    """The figures ``call`` (an expression on this module) returns, computed in a fresh Python process.

    The sim renders with EGL on a headless machine, which must be chosen before mujoco is first imported, and this
    process imported it already (for the safety filter): the sim graph's runs therefore start a process of their own.
    """
    code = f"import json\nfrom tiers.apps.bench import ros\nprint('FIGURES ' + json.dumps(ros.{call}))\n"
    environment = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    result = subprocess.run(
        [sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=timeout_s
    )
    for line in reversed(result.stdout.splitlines()):
        if line.startswith("FIGURES "):
            figures: dict[str, Any] = json.loads(line.removeprefix("FIGURES "))
            return figures
    raise RuntimeError(f"{what} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")


LEARNED_LOW_TIERS = {  # figure name -> hierarchy preset (configs/hierarchies/); {model} is the exported graph
    "onnx": "learned_paths_onnx",
    "torch": "learned_paths_unguided",
}


def _learned_control_steps(seconds: float) -> dict[str, Any]:
    """Tick latencies of the sim graph's hierarchy node with each learned low tier (see the module docstring)."""
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tiers-bench-ros-") as folder:
        checkpoint = HierarchyContext(embodiment=EmbodimentSpec.load("panda")).resolve("pretrained:kitchen_paths_beso")
        model = export_onnx(checkpoint, Path(folder) / "kitchen_paths_beso.onnx").path
        for name, preset in LEARNED_LOW_TIERS.items():
            hierarchy = yaml.safe_load(preset_path("hierarchies", preset).read_text())
            if hierarchy["low"]["kind"] == "onnx":
                hierarchy["low"]["settings"]["model"] = str(model)
            path = Path(folder) / f"{preset}.yaml"
            path.write_text(yaml.safe_dump(hierarchy))
            sim_parameters = {**SIM_GRAPH_SIM, "hierarchy": str(path)}
            with _sim_graph(sim_parameters, {**SIM_GRAPH_HIERARCHY, "controller": str(path)}) as graph:
                graph.publisher.publish(String(data="open the drawer"))
                time.sleep(1.0)  # the planner and the mid tier plan; the low tier's first chunk
                graph.node.tick_latencies.clear()
                time.sleep(seconds)
                ticks = list(graph.node.tick_latencies)
            figures.update(_percentiles(f"low_{name}_control_step", ticks))
            figures[f"low_{name}_ticks"] = len(ticks)
    return figures


def _self_trips_in_a_process(instructions: int, period_s: float) -> dict[str, Any]:
    """:func:`_self_trips` in a fresh process (see :func:`_figures_in_a_process`)."""
    call = f"_self_trips({int(instructions)}, {float(period_s)!r})"
    return _figures_in_a_process(call, "the self-trip run", timeout_s=300 + 5 * instructions)


# the hierarchy node's parameters of ros2_ws/src/tiers_ros/config/sim.yaml (the README's `tiers ros up` example)
SIM_GRAPH_HIERARCHY = {
    "profile": "sim",
    "robot": "panda",
    "controller": "offline_paths",
    "cameras": ["front", "top"],
    "watch_cameras": True,
    "stale_timeout_s": 0.1,
    "camera_timeout_s": 1.0,
    "stop_after_s": 1.0,
    "resume_on_fresh_data": False,
    "autostart": True,
    "status_rate_hz": 5.0,
}
SIM_GRAPH_SIM = {
    "robot": "panda",
    "task": "open/drawer/0",
    "hierarchy": "offline_paths",
    "cameras": ["front", "top"],
    "camera_rate_hz": 10.0,
}


@dataclass
class _SimGraph:
    """The README's sim graph in this process: the simulated robot, the hierarchy node and a person who talks."""

    sim: MujocoSimNode
    node: HierarchyNode
    person: Any  # rclpy Node
    publisher: Any  # the person's publisher of instructions


@contextmanager
def _sim_graph(
    sim_parameters: dict[str, Any], hierarchy_parameters: dict[str, Any], *, watch: tuple[Any, ...] | None = None
) -> Iterator[_SimGraph]:
    """Start the sim graph (one executor thread a node, as `tiers ros up` spins them), wait until the hierarchy node
    runs and hears instructions, and tear it all down on exit.

    Args:
        watch: (message type, topic, callback, QoS) the person subscribes to before the graph spins.
    """
    context = rclpy.Context()
    rclpy.init(context=context)
    sim = MujocoSimNode(context=context, parameter_overrides=parameter_overrides(sim_parameters))
    node = HierarchyNode(context=context, parameter_overrides=parameter_overrides(hierarchy_parameters))
    person = rclpy.create_node("bench_person", context=context)
    publisher = person.create_publisher(String, "/hierarchy_node/instruction", EVENT_QOS)
    if watch is not None:
        person.create_subscription(*watch)
    executors, threads = [], []
    for member in (sim, node, person):
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(member)
        executors.append(executor)
        threads.append(threading.Thread(target=executor.spin, daemon=True))
        threads[-1].start()
    try:
        deadline = time.monotonic() + 120
        while node._loop is None or node._loop.watchdog.state is not ControlState.RUNNING:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sim graph ({hierarchy_parameters['controller']}) did not run within 120 s")
            time.sleep(0.1)
        while publisher.get_subscription_count() == 0:
            time.sleep(0.05)
        yield _SimGraph(sim, node, person, publisher)
    finally:
        for executor in executors:
            executor.shutdown()
        for worker in threads:
            worker.join(timeout=5.0)
        sim.close()
        node.destroy_node()
        sim.destroy_node()
        person.destroy_node()
        rclpy.try_shutdown(context=context)


def _self_trips(instructions: int, period_s: float) -> dict[str, Any]:
    """Holds of the sim graph in one process while it is instructed ``instructions`` times (see the module doc)."""
    published: list[float] = []  # monotonic s when the sim published each joint state (DDS source stamp)

    def on_state(message: Any, info: Any) -> None:
        published.append(time.monotonic() - max(0.0, (time.time_ns() - info["source_timestamp"]) * 1e-9))

    trips: list[str] = []  # holds while the sim published on time: the node's own stalls
    sim_late: list[str] = []  # holds after the sim itself published late (a real gap of the robot's data)
    timeout = float(SIM_GRAPH_HIERARCHY["stale_timeout_s"])  # type: ignore[arg-type]
    plans: list[float] = []  # s, the longest mid-tier plan of each instruction
    watch = (JointState, "/joint_states", on_state, SENSOR_QOS)
    with _sim_graph(SIM_GRAPH_SIM, SIM_GRAPH_HIERARCHY, watch=watch) as graph:
        loop = graph.node._loop
        assert loop is not None
        publisher = graph.publisher
        for _ in range(instructions):
            sent = time.monotonic()
            publisher.publish(String(data="open the kitchen drawer"))
            time.sleep(period_s)
            mid = loop.controller.status().get("timings", {}).get("mid", {})
            if mid.get("max_ms") is not None:  # the runtime restarts its timers with each instruction
                plans.append(mid["max_ms"] / 1e3)
            held = [t for t in loop.watchdog.transitions if t.after is ControlState.HOLDING and t.time >= sent]
            if held:
                # was the sim late (its publications apart by more than the timeout before the hold), or the node?
                before = [t for t in published if held[0].time - 0.5 <= t <= held[0].time]
                gap = float(np.diff(before).max()) if len(before) > 1 else float("inf")
                (sim_late if gap > timeout else trips).append(f"{held[0].reason}; sim's largest gap {gap * 1e3:.0f} ms")
                loop.watchdog.resume()  # go on with the next instruction
    figures: dict[str, Any] = {
        "self_trip_instructions": instructions,
        "self_trips": len(trips),
        "self_trip_reasons": trips[:10],
        "sim_late_holds": len(sim_late),
        "sim_late_reasons": sim_late[:10],
    }
    figures.update(_percentiles("self_trip_mid_plan", plans))
    return figures
