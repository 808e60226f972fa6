"""What the tiers ROS 2 nodes share (needs the ``ros`` extra): QoS profiles, the conventional command topics of
ros2_control's controllers, parameter descriptors and the JSON of status messages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tiers.core.errors import ConfigError
from tiers.core.extras import require
from tiers.deploy.ros import messages as rm

_PURPOSE = "the tiers ROS 2 nodes"
require("rclpy", purpose=_PURPOSE)
_qos = require("rclpy.qos", purpose=_PURPOSE)
_params = require("rcl_interfaces.msg", purpose=_PURPOSE)

ParameterType = _params.ParameterType

DEFAULT_COMMAND_TOPICS = {
    rm.JOINT_TRAJECTORY: "/joint_trajectory_controller/joint_trajectory",
    rm.FORWARD_POSITION: "/forward_position_controller/commands",
}
# sensor data: keep only the newest sample; a late joint state is worth less than the next one
SENSOR_QOS = _qos.QoSProfile(
    depth=1, reliability=_qos.ReliabilityPolicy.BEST_EFFORT, history=_qos.HistoryPolicy.KEEP_LAST
)
# commands: reliable, ros2_control's default depth (its controllers subscribe with depth 10)
COMMAND_QOS = _qos.QoSProfile(depth=10, reliability=_qos.ReliabilityPolicy.RELIABLE)
EVENT_QOS = _qos.QoSProfile(depth=50, reliability=_qos.ReliabilityPolicy.RELIABLE)


def descriptor(
    description: str, kind: int, *, read_only: bool = True, floating: tuple[float, float] | None = None
) -> Any:
    """A parameter's descriptor: type, description, read-only (changes need a reconfigure), float range."""
    result = _params.ParameterDescriptor(description=description, type=kind, read_only=read_only)
    if kind == ParameterType.PARAMETER_STRING_ARRAY:
        # ROS 2 types an empty list ([] in YAML or an override) as a byte array: accept any type here and
        # check the value in code (string_list), so "no cameras" can be written as []
        result.dynamic_typing = True
    if floating is not None:
        low, high = floating
        result.floating_point_range = [_params.FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    return result


def string_list(name: str, value: Any) -> list[str]:
    """A string-array parameter's value (an empty list may arrive typed as bytes); errors name the parameter."""
    if value is None or (isinstance(value, list | tuple | bytes) and len(value) == 0):
        return []
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"parameter {name}={value!r}: must be a list of strings")
    return [item for item in value if item]


def status_json(status: dict[str, Any]) -> str:
    """A status dict as JSON; numpy scalars and arrays, paths and anything else become plain values."""
    return json.dumps(status, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)
