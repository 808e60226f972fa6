"""Talking to a running hierarchy node from a script or a terminal (needs the ``ros`` extra).

``tiers ros correct "move left"`` and its siblings use :class:`HierarchyClient`: it publishes on the node's
``~/correction``, ``~/instruction``, ``~/stop`` and ``~/resume`` topics (reliable QoS) once the node's
subscription is matched, and reads ``~/status`` and ``~/language_events``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tiers.core.errors import TiersError
from tiers.core.extras import require

_PURPOSE = "talking to a tiers hierarchy node"
rclpy = require("rclpy", purpose=_PURPOSE)
_std = require("std_msgs.msg", purpose=_PURPOSE)
_qos = require("rclpy.qos", purpose=_PURPOSE)
_executors = require("rclpy.executors", purpose=_PURPOSE)

_RELIABLE = _qos.QoSProfile(depth=50, reliability=_qos.ReliabilityPolicy.RELIABLE)


class NodeNotFoundError(TiersError, RuntimeError):
    """No hierarchy node answered on the expected topic within the time allowed."""


class HierarchyClient:
    """A small rclpy node that commands one hierarchy node (``node``: its fully qualified name)."""

    def __init__(self, node: str = "/hierarchy_node", *, name: str = "tiers_ros_client", context: Any = None) -> None:
        """
        Args:
            node: fully qualified name of the hierarchy node.
            name: this client's node name.
            context: an initialised rclpy Context to join; None creates one on the environment's
                ROS_DOMAIN_ID (and shuts it down on :meth:`close`).
        """
        self._owns_context = context is None
        if context is None:
            context = rclpy.Context()
            rclpy.init(context=context)
        self.context = context
        self.target = node.rstrip("/") or "/hierarchy_node"
        self.node = rclpy.create_node(name, context=context)
        self._executor = _executors.SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self.events: list[dict[str, Any]] = []  # language events received, oldest first
        self.statuses: list[dict[str, Any]] = []  # status messages received, oldest first
        self.node.create_subscription(
            _std.String, f"{self.target}/language_events", lambda m: self.events.append(json.loads(m.data)), _RELIABLE
        )
        self.node.create_subscription(
            _std.String, f"{self.target}/status", lambda m: self.statuses.append(json.loads(m.data)), _RELIABLE
        )
        self._publishers: dict[str, Any] = {}

    def close(self) -> None:
        self._executor.shutdown()
        self.node.destroy_node()
        if self._owns_context:
            rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> HierarchyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands -----------------------------------------------------------------------------------------

    def correct(self, text: str, *, timeout: float = 5.0, wait_applied: bool = True) -> dict[str, Any] | None:
        """Send a correction; with ``wait_applied``, return the node's language event for it (None if none
        came within ``timeout`` s, e.g. when no instruction is running)."""
        seen = len(self.events)
        self._send("correction", _std.String(data=text), timeout)
        if not wait_applied:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.spin(0.05)
            for event in self.events[seen:]:
                if event.get("kind") == "correction" and event.get("said") == text:
                    return event
        return None

    def instruct(self, text: str, *, timeout: float = 5.0) -> None:
        self._send("instruction", _std.String(data=text), timeout)

    def stop(self, reason: str = "stop requested by a person", *, timeout: float = 5.0) -> None:
        """The node's software stop (latched; not a hardware e-stop)."""
        self._send("stop", _std.String(data=reason), timeout)

    def resume(self, *, timeout: float = 5.0) -> None:
        self._send("resume", _std.Empty(), timeout)

    def status(self, *, timeout: float = 5.0) -> dict[str, Any]:
        """The next status the node publishes.

        Raises:
            NodeNotFoundError: none within ``timeout`` s.
        """
        seen = len(self.statuses)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.spin(0.05)
            if len(self.statuses) > seen:
                return self.statuses[-1]
        raise NodeNotFoundError(f"no status from {self.target}/status within {timeout:.1f} s (domain, name?)")

    def spin(self, seconds: float) -> None:
        """Process incoming messages for ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._executor.spin_once(timeout_sec=min(left, 0.05))

    def _send(self, topic: str, message: Any, timeout: float) -> None:
        full = f"{self.target}/{topic}"
        if full not in self._publishers:
            self._publishers[full] = self.node.create_publisher(type(message), full, _RELIABLE)
        publisher = self._publishers[full]
        deadline = time.monotonic() + timeout
        while publisher.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise NodeNotFoundError(
                    f"nothing subscribes to {full} after {timeout:.1f} s: is the hierarchy node running, configured, "
                    "and on this ROS_DOMAIN_ID?"
                )
            self.spin(0.05)
        publisher.publish(message)
        self.spin(0.05)  # let the message leave before the caller possibly exits
