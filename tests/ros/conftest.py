"""Real ROS 2 graphs for the tests: nodes in their own processes (``tiers ros up``) on a private domain.

Every test gets a ROS_DOMAIN_ID of its own and localhost-only discovery, so tests never see each other or
anything else on the machine. The test process joins the same domain with its own rclpy Context.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# Domains 1..101 are safe on Linux (higher ids can collide with ephemeral ports); spread by pid so parallel
# pytest sessions on one machine do not collide either.
_DOMAINS = itertools.count(1 + (os.getpid() * 7) % 60)


class Graph:
    """Node processes started for one test, plus an observer node of the test's own in the same domain."""

    def __init__(self, domain: int, tmp_path: Path) -> None:
        self.domain = domain
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "ROS_DOMAIN_ID": str(domain),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("test_observer", context=self.context)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def record(self, kind: Any, topic: str, qos: Any, convert: Callable[[Any], Any]) -> Recorder:
        """Keep every message of ``topic`` (converted) with its arrival time, from now on."""
        return Recorder(self, kind, topic, qos, convert)

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutdown races end the loop
                return

    def start(self, name: str, sections: dict[str, dict[str, Any]]) -> subprocess.Popen[bytes]:
        """``tiers ros up`` with ``{node: parameters}`` in a process of its own (the venv's python)."""
        config = self.tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({node: {"ros__parameters": p} for node, p in sections.items()}))
        log = (self.tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "tiers.cli.main", "ros", "up", "--config", str(config)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text(errors="replace")

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            for name, process in self.processes.items():
                if process.poll() is not None and process.returncode not in (0, -signal.SIGKILL):
                    pytest.fail(f"{name} exited with {process.returncode} while waiting for {what}:\n{self.log(name)}")
            time.sleep(0.02)
        logs = "\n".join(f"--- {name} ---\n{self.log(name)[-3000:]}" for name in self.processes)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes.values():
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._spinner.join(timeout=2)


class Recorder:
    """Messages of one topic with their arrival times (monotonic s), filled by the observer's executor."""

    def __init__(self, graph: Graph, kind: Any, topic: str, qos: Any, convert: Callable[[Any], Any]) -> None:
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

    def values_since(self, t: float) -> list[Any]:
        """The converted messages that arrived at or after ``t`` (monotonic s), without their times."""
        return [value for _, value in self.since(t)]

    def __len__(self) -> int:
        return len(self.items)


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[Graph]:
    graph = Graph(next(_DOMAINS), tmp_path)
    try:
        yield graph
    finally:
        graph.close()
