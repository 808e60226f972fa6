"""The reward library: differentiable rewards on raw joint-position action chunks, as Guidance terms.

Every term maps (B, Ta, A) actions — J joint-position targets (rad) then the gripper opening (m), the
embodiment's action space — to (B,) rewards (higher is better) through the torch forward kinematics of
:mod:`tiers.policies.mid.kinematics`: each action's joint targets are taken as the configuration the arm
reaches one control period later, so the chunk is a tool trajectory of Ta poses (base frame).

Rewards are negative costs in natural units (m, m², rad); ``weight`` sets the scale of each gradient.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import NDArray

from tiers.core.ee_path import EEPath
from tiers.core.guidance import Guidance
from tiers.core.observation import Observation
from tiers.policies.mid.kinematics import ArmFK


class _LastTrajectory:
    """The tool trajectory of the last actions tensor seen: every term of one guidance evaluation gets the
    same tensor (:func:`tiers.core.guidance.guidance_gradient`), so the FK and its autograd graph are built
    once for all of them instead of once per term."""

    def __init__(self) -> None:
        self.key: tuple[int, int, int, bool] | None = None  # (id(actions), its version, id(fk), grad mode)
        self.actions: weakref.ref[torch.Tensor] | None = None
        self.value: tuple[torch.Tensor, torch.Tensor] | None = None

    def get(self, fk: ArmFK, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (id(actions), actions._version, id(fk), torch.is_grad_enabled())
        if self.key == key and self.actions is not None and self.actions() is actions and self.value is not None:
            return self.value
        position, rotation = fk(actions[..., : fk.dof])
        self.key, self.actions, self.value = key, weakref.ref(actions), (position, rotation)
        return position, rotation


_LAST = threading.local()  # one cache per thread: samplers may run in several


def tool_trajectory(fk: ArmFK, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, Ta, A) actions -> tool positions (B, Ta, 3) m and rotations (B, Ta, 3, 3), base frame.

    Memoised on the last ``actions`` tensor (same object, not modified in place since), ``fk`` and the grad
    mode.
    """
    cache = getattr(_LAST, "trajectory", None)
    if cache is None:
        cache = _LAST.trajectory = _LastTrajectory()
    result: tuple[torch.Tensor, torch.Tensor] = cache.get(fk, actions)
    return result


def _tensor(value: NDArray[np.float64] | list[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=like.dtype, device=like.device)


def reach_keypoint(
    fk: ArmFK, point: NDArray[np.float64], *, weight: float = 1.0, at: str = "last", name: str = "reach"
) -> Guidance:
    """Reward -distance (m) from the tool to ``point`` (3,): at the chunk's last step (``at="last"``), or the
    closest step (``at="closest"``: reaching it anywhere in the chunk counts)."""
    if at not in ("last", "closest"):
        raise ValueError(f"reach_keypoint: at must be 'last' or 'closest', got {at!r}")

    def reward(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
        position, _ = tool_trajectory(fk, actions)
        distance = torch.linalg.vector_norm(position - _tensor(point, actions), dim=-1)  # (B, Ta)
        chosen: torch.Tensor = distance[:, -1] if at == "last" else distance.min(dim=1).values
        return -chosen

    return Guidance(name, reward, weight)


def keep_clear_of_points(
    fk: ArmFK, points: NDArray[np.float64], *, margin: float = 0.05, weight: float = 1.0, max_points: int = 1024,
    name: str = "clear:points",
) -> Guidance:  # fmt: skip
    """Reward -Σ_t relu(margin - d_t)² (m²), d_t the tool's distance to the nearest of ``points`` (M, 3).

    At most ``max_points`` points are kept (a fixed-stride subsample), so the cost stays bounded.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(points) > max_points:
        points = points[:: int(np.ceil(len(points) / max_points))]

    def reward(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
        if len(points) == 0:
            return actions.new_zeros(actions.shape[0]) + 0.0 * actions.sum(dim=(1, 2))
        position, _ = tool_trajectory(fk, actions)  # (B, Ta, 3)
        distance = torch.cdist(position, _tensor(points, actions).expand(actions.shape[0], -1, -1)).min(dim=-1).values
        return -(torch.relu(margin - distance) ** 2).sum(dim=1)

    return Guidance(name, reward, weight)


def keep_out_of_region(
    fk: ArmFK, low: NDArray[np.float64], high: NDArray[np.float64], *, margin: float = 0.02, weight: float = 1.0,
    name: str = "clear:region",
) -> Guidance:  # fmt: skip
    """Reward -Σ_t depth_t² (m²), depth_t how far the tool is inside the box [low - margin, high + margin]."""

    def reward(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
        position, _ = tool_trajectory(fk, actions)
        below = position - (_tensor(low, actions) - margin)
        above = (_tensor(high, actions) + margin) - position
        depth = torch.relu(torch.minimum(below, above).min(dim=-1).values)  # (B, Ta), 0 outside
        return -(depth**2).sum(dim=1)

    return Guidance(name, reward, weight)


def stay_above_surface(
    fk: ArmFK, height: float, *, margin: float = 0.02, weight: float = 1.0, name: str = "above:surface"
) -> Guidance:
    """Reward -Σ_t relu(height + margin - z_t)² (m²): the tool stays above a horizontal surface at ``height``."""

    def reward(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
        position, _ = tool_trajectory(fk, actions)
        return -(torch.relu(height + margin - position[..., 2]) ** 2).sum(dim=1)

    return Guidance(name, reward, weight)


def keep_orientation(
    fk: ArmFK, direction: NDArray[np.float64] | tuple[float, float, float] = (0.0, 0.0, -1.0), *, tool_axis: int = 2,
    weight: float = 1.0, name: str = "orientation",
) -> Guidance:  # fmt: skip
    """Reward -mean_t (1 - cos θ_t), θ_t the angle between the tool's axis ``tool_axis`` (2: approach) and
    ``direction`` (3,) in the base frame (default: pointing down)."""
    unit = np.asarray(direction, dtype=np.float64)
    unit = unit / np.linalg.norm(unit)

    def reward(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
        _, rotation = tool_trajectory(fk, actions)
        axis = rotation[..., :, tool_axis]  # (B, Ta, 3)
        return -(1.0 - (axis * _tensor(unit, actions)).sum(dim=-1)).mean(dim=1)

    return Guidance(name, reward, weight)


def gripper_command(opening: float, *, gripper_index: int = -1, weight: float = 1.0, name: str = "gripper") -> Guidance:
    """Reward -mean_t (g_t - opening)² (m²) on the gripper component of the actions."""

    def reward(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
        return -((actions[..., gripper_index] - opening) ** 2).mean(dim=1)

    return Guidance(name, reward, weight)


def follow_path(
    fk: ArmFK,
    path: EEPath,
    *,
    start_time: float,
    dt: float,
    weight: float = 1.0,
    gripper_weight: float = 1.0,
    clock: Callable[[Observation | None], float] | None = None,
    name: str = "track:path",
) -> Guidance:
    """Path-tracking reward: -mean_t ||p_t - path(τ + (t+1)·dt)||² (m²) - gripper_weight · mean_t (g_t - g_ref)².

    τ is the time into the path at the chunk's start: ``observation.timestamp - start_time`` (or ``clock``'s
    value); action t of the chunk is the target reached one control period later, hence (t+1)·dt.
    """

    def reward(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
        if clock is not None:
            tau = clock(observation)
        else:
            tau = (observation.timestamp - start_time) if observation is not None else 0.0
        times = np.clip(tau + dt * np.arange(1, actions.shape[1] + 1), 0.0, path.times[-1])
        reference, grippers = path.sample(times)  # (Ta, 7), (Ta,)
        position, _ = tool_trajectory(fk, actions)
        error = ((position - _tensor(reference[:, :3], actions)) ** 2).sum(dim=-1).mean(dim=1)
        grip = ((actions[..., -1] - _tensor(grippers, actions)) ** 2).mean(dim=1)
        return -(error + gripper_weight * grip)

    return Guidance(name, reward, weight)
