"""The ROS 2 nodes as separate processes over DDS: commands, corrections, the watchdog and the safety filter.

Processes are started with ``tiers ros up`` (the venv's python, so the ROS wheels load); the test process is
a third participant on the same private domain: it observes topics, plays a person with
:class:`~tiers.deploy.ros_client.HierarchyClient`, and in two tests plays the robot's joint-state publisher.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 tests need rclpy: pip install 'tiers[ros]'")

import itertools

from tiers.core.embodiment import EmbodimentSpec
from tiers.deploy import ros_messages as rm
from tiers.deploy.ros_client import HierarchyClient
from tiers.deploy.safety import SafetyConfig, mujoco_tcp_kinematics

pytestmark = pytest.mark.ros

SPEC = EmbodimentSpec.load("panda")
HIERARCHY = {
    "profile": "sim",
    "robot": "panda",
    "controller": "sweep",
    "command_interface": "joint_trajectory",
    "cameras": [],
    "stale_timeout_s": 0.1,
    "stop_after_s": 0.6,
    "autostart": True,
    "status_rate_hz": 5.0,
}
SIM = {"robot": "panda", "task": "open/drawer/0", "cameras": [], "real_time_factor": 1.0}


class Recorder:
    """Messages of one topic with their arrival times (monotonic s), filled by the observer's executor."""

    def __init__(self, graph: Any, kind: Any, topic: str, qos: Any, convert: Any) -> None:
        self.items: list[tuple[float, Any]] = []
        self._lock = threading.Lock()
        self._convert = convert
        graph.node.create_subscription(kind, topic, self._on_message, qos)

    def _on_message(self, message: Any) -> None:
        with self._lock:
            self.items.append((time.monotonic(), self._convert(message)))

    def since(self, t: float) -> list[tuple[float, Any]]:
        with self._lock:
            return [(at, value) for at, value in self.items if at >= t]

    def __len__(self) -> int:
        return len(self.items)


def _commands(graph: Any, interface: str) -> Recorder:
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectory

    from tiers.deploy.ros_nodes import COMMAND_QOS, DEFAULT_COMMAND_TOPICS

    if interface == rm.JOINT_TRAJECTORY:
        return Recorder(
            graph,
            JointTrajectory,
            DEFAULT_COMMAND_TOPICS[interface],
            COMMAND_QOS,
            lambda m: rm.action_from_joint_trajectory(SPEC, m),
        )
    return Recorder(
        graph,
        Float64MultiArray,
        DEFAULT_COMMAND_TOPICS[interface],
        COMMAND_QOS,
        lambda m: rm.action_from_float64_array(SPEC, m),
    )


def _statuses(graph: Any) -> Recorder:
    from std_msgs.msg import String

    from tiers.deploy.ros_nodes import EVENT_QOS

    return Recorder(graph, String, "/hierarchy_node/status", EVENT_QOS, lambda m: json.loads(m.data))


def _first_state(statuses: Recorder, state: str, after: float) -> float | None:
    for at, status in statuses.since(after):
        if status["state"] == state:
            return at
    return None


class JointStatePublisher:
    """The test as the robot: publishes a fixed arm pose on /joint_states at 100 Hz while ``running``."""

    def __init__(self, graph: Any, positions: np.ndarray) -> None:
        from sensor_msgs.msg import JointState

        from tiers.deploy.ros_nodes import SENSOR_QOS

        self._publisher = graph.node.create_publisher(JointState, "/joint_states", SENSOR_QOS)
        self.positions = positions
        self.running = threading.Event()
        self.last_sent = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            if self.running.is_set():
                message = rm.joint_state_message(SPEC, self.positions, np.zeros(SPEC.dof), 0.04, time.time())
                self._publisher.publish(message)
                self.last_sent = time.monotonic()
            time.sleep(0.01)

    def stop_publishing(self) -> float:
        """Stop (as if the driver died); returns the monotonic time of the last message sent."""
        self.running.clear()
        time.sleep(0.02)  # the loop may be mid-publish
        return self.last_sent

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=1)


def test_sim_and_hierarchy_over_dds_corrections_and_a_killed_sim(graph: Any) -> None:
    """Two processes drive the simulated arm; a correction acts within one tick; killing the sim (the joint-state
    publisher) makes the node hold with no motion command, then go silent."""
    from sensor_msgs.msg import JointState

    from tiers.deploy.ros_nodes import SENSOR_QOS

    commands = _commands(graph, rm.JOINT_TRAJECTORY)
    statuses = _statuses(graph)
    joints = Recorder(graph, JointState, "/joint_states", SENSOR_QOS, lambda m: np.array(m.position[: SPEC.dof]))
    sim = graph.start("sim", {"mujoco_sim_node": SIM})
    graph.start("hierarchy", {"hierarchy_node": {**HIERARCHY, "instruction": "sweep the joints"}})

    # 1. commands flow and the simulated arm follows them
    graph.wait_for(lambda: len(commands) > 30, 90, "30 commands from the hierarchy node")
    start = joints.items[0][1]
    moved = max(np.max(np.abs(q - start)) for _, q in joints.since(0.0))
    assert moved > 0.05, f"the simulated arm moved only {moved:.4f} rad under the sweep"

    # 2. a stop correction takes effect within one control tick; "move up" then raises the tool
    client = HierarchyClient(context=graph.context, name="person")
    try:
        event = client.correct("stop", timeout=10)
        assert event is not None, "no language event for the correction"
        assert event["tick"] - event["received_tick"] <= 1, event
        assert event["command"]["style"] == "stop"
        time.sleep(1.0)
        settled = commands.since(time.monotonic() - 0.5)
        steps = [np.max(np.abs(b[1][:7] - a[1][:7])) for a, b in itertools.pairwise(settled)]
        assert steps and max(steps) < 2e-3, f"commands still move after stop: {max(steps, default=None)} rad/tick"
        fk = mujoco_tcp_kinematics(SPEC)
        before = fk(commands.items[-1][1][:7])
        sent = time.monotonic()
        event = client.correct("move up", timeout=10)
        assert event is not None and event["command"]["style"] == "motion"
        time.sleep(1.0)  # a 5 cm nudge at 0.1 m/s, then the sweep takes over again
        rise = max(fk(command[:7])[2] for _, command in commands.since(sent)) - before[2]
        assert rise > 0.03, f"'move up' raised the tool by {rise:.3f} m"
    finally:
        client.close()

    # 3. kill the joint-state publisher: hold within the timeout, no motion afterwards, then nothing at all
    last_state = joints.items[-1][0]
    sim.send_signal(signal.SIGKILL)
    sim.wait()
    killed = time.monotonic()
    graph.wait_for(lambda: _first_state(statuses, "holding", last_state) is not None, 10, "the node to hold")
    holding_at = _first_state(statuses, "holding", last_state)
    assert holding_at is not None and holding_at - last_state < 0.1 + 0.4, "hold came far too late"
    graph.wait_for(lambda: _first_state(statuses, "stopped", last_state) is not None, 10, "the stop to latch")
    stopped_at = _first_state(statuses, "stopped", last_state)
    assert stopped_at is not None
    held = [command for at, command in commands.since(holding_at + 0.05) if at < stopped_at]
    assert held, "no hold commands between the hold and the stop"
    assert all(np.array_equal(command, held[0]) for command in held), "a motion command was sent while holding"
    time.sleep(0.5)
    assert not commands.since(stopped_at + 0.15), "commands were sent after the stop latched"
    assert killed - last_state < 5


def test_stale_joint_states_hold_within_100ms_over_repeated_trials(graph: Any) -> None:
    """The test publishes /joint_states and stops 12 times; each time the node holds (p99 latency measured on the
    node's status), sends only the held command, and resumes only when told to."""
    statuses = _statuses(graph)
    commands = _commands(graph, rm.FORWARD_POSITION)
    publisher = JointStatePublisher(graph, np.array(SPEC.home))
    graph.start(
        "hierarchy",
        {
            "hierarchy_node": {
                **HIERARCHY,
                "command_interface": "forward_position",
                "control_rate_hz": 50.0,
                "stale_timeout_s": 0.05,
                "stop_after_s": 5.0,
                "instruction": "sweep the joints",
            }
        },
    )
    client = HierarchyClient(context=graph.context, name="person")
    latencies = []
    try:
        publisher.running.set()
        graph.wait_for(lambda: len(commands) > 10, 90, "commands from the hierarchy node")
        for _ in range(12):
            publisher.running.set()
            if _first_state(statuses, "running", time.monotonic() - 0.3) is None:
                client.resume(timeout=10)
            graph.wait_for(lambda: len(commands.since(time.monotonic() - 0.1)) >= 3, 10, "running again")
            time.sleep(0.2)
            last = publisher.stop_publishing()
            graph.wait_for(lambda last=last: _first_state(statuses, "holding", last) is not None, 5, "hold")
            holding_at = _first_state(statuses, "holding", last)
            assert holding_at is not None
            latencies.append(holding_at - last)
            time.sleep(0.3)
            held = [command for at, command in commands.since(holding_at + 0.03)]
            assert held and all(np.array_equal(c, held[0]) for c in held), "motion after the hold"
            publisher.running.set()  # fresh data again: the hold is latched until an explicit resume
            time.sleep(0.2)
            again = [command for at, command in commands.since(time.monotonic() - 0.15)]
            assert all(np.array_equal(c, held[0]) for c in again), "the node resumed without being told"
            assert _first_state(statuses, "running", holding_at) is None
    finally:
        client.close()
        publisher.close()
    p99 = float(np.percentile(latencies, 99))
    # the stale timeout is 50 ms at a 50 Hz tick: the design holds within ~70 ms of the last message; the margin
    # covers DDS delivery of the status and a loaded CI machine (the bench reports the figure itself)
    assert p99 < 0.1 + 0.15, f"hold latency p99 {p99 * 1e3:.0f} ms over {len(latencies)} trials: {latencies}"


def test_fuzzed_policy_outputs_never_reach_the_command_topic(graph: Any) -> None:
    """The safety probe emits NaN/Inf/out-of-limit/huge actions through the real node: every published command is
    finite, inside the (margin-shrunk) limits and within velocity limits of the previous one."""
    commands = _commands(graph, rm.FORWARD_POSITION)
    statuses = _statuses(graph)
    publisher = JointStatePublisher(graph, np.array(SPEC.home))
    publisher.running.set()
    graph.start(
        "hierarchy",
        {
            "hierarchy_node": {
                **HIERARCHY,
                "controller": "probe:3",
                "command_interface": "forward_position",
                "control_rate_hz": 50.0,
                "instruction": "probe the safety filter",
            }
        },
    )
    try:
        graph.wait_for(lambda: len(commands) > 150, 90, "150 commands under the safety probe")
    finally:
        publisher.close()
    values = np.array([command for _, command in commands.items])  # (N, 8)
    lower, upper = SPEC.position_limits
    margin = SafetyConfig().position_margin
    assert np.all(np.isfinite(values))
    assert np.all(values[:, :7] >= lower + margin - 1e-9) and np.all(values[:, :7] <= upper - margin + 1e-9)
    assert np.all(values[:, 7] >= 0) and np.all(values[:, 7] <= SPEC.gripper.max_opening + 1e-9)
    # the node filters with its own tick period (50 Hz); consecutive commands move at most v_max / 50 Hz
    steps = np.abs(np.diff(values[:, :7], axis=0))
    assert np.all(steps <= SPEC.velocity_limits / 50.0 + 1e-6)
    counts = [status["safety_interventions"] for _, status in statuses.items]
    # out-of-limit targets are caught by the deviation band (±0.3 rad about the measured pose) before the limits
    assert counts and counts[-1].get("non_finite", 0) > 0 and counts[-1].get("deviation", 0) > 0, counts[-1:]
