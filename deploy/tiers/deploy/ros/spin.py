"""Running the tiers ROS 2 nodes (needs the ``ros`` extra): one single-threaded executor a node, each in its own
thread; the executables' ``main`` and the rclpy session of ``tiers ros up`` (several nodes in one process).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tiers.core.extras import require

_PURPOSE = "the tiers ROS 2 nodes"
rclpy = require("rclpy", purpose=_PURPOSE)
_executors = require("rclpy.executors", purpose=_PURPOSE)
_parameter = require("rclpy.parameter", purpose=_PURPOSE)


def spin(nodes: Sequence[Any]) -> None:
    """Spin ``nodes`` until Ctrl-C or an external shutdown, each on a single-threaded executor in its own thread.

    One executor a node, so a slow sim step never delays the controller's tick (a
    :class:`~tiers.deploy.ros.sim_robot_node.MujocoSimNode` also needs it: MuJoCo's EGL renderer is bound to
    the thread that first renders; a node's ``close()``, where it has one, runs in that thread when spinning
    ends). Not rclpy's MultiThreadedExecutor: with the Kilted wheels (rclpy 9.1) a node's timers there fired at
    a few Hz instead of 50 (a timer's task is made but waits for some other entity to wake the executor), which
    starved the control loop; a single thread per node ticks on time. Within the hierarchy node the joint-state
    callback waits for a running tick, so its arrival stamp (the watchdog's clock) can be late by at most one
    tick.
    """
    executors: list[Any] = []
    workers: list[threading.Thread] = []
    for node in nodes:
        executor = _executors.SingleThreadedExecutor()
        executor.add_node(node)
        executors.append(executor)
        close = getattr(node, "close", None)
        target = _spin_then_close if close is not None else _spin_quietly
        arguments = (executor, close) if close is not None else (executor,)
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


def _spin_then_close(executor: Any, close: Callable[[], None]) -> None:
    """Spin a node, then free what it holds in the same thread (a sim node's EGL contexts are bound to it)."""
    try:
        _spin_quietly(executor)
    finally:
        close()


def _spin_quietly(executor: Any) -> None:
    with contextlib.suppress(KeyboardInterrupt, _executors.ExternalShutdownException):
        executor.spin()


@contextlib.contextmanager
def ros_session(args: list[str] | None = None) -> Iterator[None]:
    """rclpy initialised (with command-line ``args``: ``--ros-args ...``) for the block, shut down after it."""
    rclpy.init(args=args)
    try:
        yield
    finally:
        rclpy.try_shutdown()


def parameter_overrides(values: dict[str, Any]) -> list[Any]:
    """``{name: value}`` as the ``parameter_overrides`` a node takes (rclpy ``Parameter`` objects)."""
    return [_parameter.Parameter(name, value=value) for name, value in values.items()]


def run_node(make_node: Callable[[], Any], args: list[str] | None = None) -> None:
    """An executable's main: init rclpy with ``args``, make the node, spin it until Ctrl-C, shut down."""
    with ros_session(args):
        spin([make_node()])
