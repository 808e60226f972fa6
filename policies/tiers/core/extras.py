"""Import guards for optional dependencies.

Heavy or platform-specific backends (Isaac Sim, ROS 2) live in extras of the ``tiers`` distribution.
They are imported only when selected, through :func:`require`, so that a missing one fails with a
message naming the extra to install instead of a bare ``ModuleNotFoundError`` deep in a stack.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from tiers.core.errors import MissingExtraError

# module imported -> extra of the tiers distribution that installs it
EXTRA_OF_MODULE: dict[str, str] = {
    "isaacsim": "isaacsim",
    "pxr": "usd",
    "ray": "cluster",
    "rclpy": "ros",
    "std_msgs": "ros",
    "sensor_msgs": "ros",
    "geometry_msgs": "ros",
    "trajectory_msgs": "ros",
}


def is_available(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, *, purpose: str) -> ModuleType:
    """Import ``module`` or fail with a message naming the extra that provides it.

    Args:
        module: dotted module name, e.g. ``"isaacsim"`` or ``"rclpy"``.
        purpose: what the caller needs it for, e.g. ``"the Isaac Sim backend"``.

    Raises:
        MissingExtraError: the module (or one of its own imports) is missing.
    """
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = EXTRA_OF_MODULE.get(top)
        hint = f"pip install 'tiers[{extra}]'" if extra else f"pip install {top}"
        raise MissingExtraError(
            f"{purpose} needs the optional dependency {top!r}, which could not be imported "
            f"({error}). Install it with: {hint}"
        ) from error
