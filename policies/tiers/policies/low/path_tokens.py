"""Condition keys and path tokens of the low tier, in numpy alone (no torch).

Shared by the torch policy (:mod:`tiers.policies.low.conditioning`, which re-exports these names) and the
ONNX Runtime policy (:mod:`tiers.policies.low.onnx_policy`), which must run on a robot computer without torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.ee_path import EEPath
from tiers.core.errors import ContractError

# Batch keys of the optional conditions (policy batch entries; not dataset columns).
GOAL_STATE_KEY = "goal.state"  # (B, S) target proprioceptive state, raw units like observation.state
EE_PATH_KEY = "ee_path"  # (B, K, 8) path waypoints: xyz m, quaternion wxyz (w >= 0), gripper m; base frame
PATH_WAYPOINT_DIM = 8


def resample_path(path: EEPath, waypoints: int) -> NDArray[np.float32]:
    """An :class:`EEPath` as K evenly timed waypoints, the policy's path tokens.

    Args:
        path: a path in the robot base frame.
        waypoints: K.

    Returns:
        (K, 8) float32: xyz (m), quaternion wxyz with w >= 0 (q and -q are one rotation; one sign keeps
        the network's input continuous), gripper target (m); all in the base frame.

    Raises:
        ContractError: the path is not in the base frame, or K < 1.
    """
    if waypoints < 1:
        raise ContractError(f"waypoints must be >= 1, got {waypoints}")
    if path.frame != "base":
        raise ContractError(f"EEPath is in frame {path.frame!r}; the policy reads paths in the base frame")
    times = np.linspace(path.times[0], path.times[-1], waypoints)
    poses, gripper = path.sample(times)
    return canonical_path(np.concatenate([poses, gripper[:, None]], axis=1))


def canonical_path(waypoints: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    """(..., 8) waypoints with each quaternion's sign chosen so that w >= 0."""
    out = np.array(waypoints, dtype=np.float32)
    flip = out[..., 3] < 0
    out[..., 3:7][flip] *= -1
    return out
