"""ActionChunk: what the low tier hands to the robot.

Timeline of a chunk predicted at time ``start_time`` (one row per control tick, ``dt`` apart)::

    t:        start_time   +dt    +2dt   ...   +(Ta-1)dt
    actions:  [:, 0]       [:, 1] [:, 2] ...   [:, Ta-1]

A chunk never holds a NaN or an infinity: it refuses them at construction, and its array is read-only
afterwards, so a non-finite action cannot be written in later on its way to a robot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tiers.core.errors import ContractError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ActionChunk:
    """A batch of action sequences in the embodiment's action space.

    Attributes:
        actions: (B, Ta, A) float32, read-only; B batch (environments or samples), Ta steps, A action size.
        start_time: s, time at which ``actions[:, 0]`` is applied (sim or robot clock).
        dt: s between consecutive actions (1 / control rate).
    """

    actions: NDArray[np.float32]
    start_time: float
    dt: float

    def __post_init__(self) -> None:
        actions = np.array(self.actions, dtype=np.float32)  # a private copy we can freeze
        if actions.ndim != 3:
            raise ContractError(f"ActionChunk.actions must be (B, Ta, A), got shape {actions.shape}")
        if 0 in actions.shape:
            raise ContractError(f"ActionChunk.actions has an empty axis: shape {actions.shape}")
        bad = ~np.isfinite(actions)
        if bad.any():
            b, t, a = (int(i) for i in np.argwhere(bad)[0])
            raise ContractError(
                f"ActionChunk.actions has {int(bad.sum())} non-finite value(s); first at batch {b}, "
                f"step {t}, dim {a}: {actions[b, t, a]}"
            )
        if not self.dt > 0:
            raise ContractError(f"ActionChunk.dt must be positive seconds, got {self.dt}")
        actions.setflags(write=False)
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "start_time", float(self.start_time))
        object.__setattr__(self, "dt", float(self.dt))

    @classmethod
    def from_tensor(cls, actions: torch.Tensor, *, start_time: float, dt: float) -> ActionChunk:
        """Build from a policy's (B, Ta, A) tensor (any device/dtype); (Ta, A) is taken as B=1."""
        array = actions.detach().to("cpu").float().numpy()
        if array.ndim == 2:
            array = array[None]
        return cls(array, start_time=start_time, dt=dt)

    @property
    def batch_size(self) -> int:
        return int(self.actions.shape[0])

    @property
    def horizon(self) -> int:
        """Ta, the number of steps."""
        return int(self.actions.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[2])

    @property
    def end_time(self) -> float:
        """s, time just after the last action's tick."""
        return self.start_time + self.horizon * self.dt

    def times(self) -> NDArray[np.float64]:
        """(Ta,) s, the time at which each step is applied."""
        return self.start_time + self.dt * np.arange(self.horizon, dtype=np.float64)

    def step_at(self, time: float) -> int | None:
        """Index of the step applied at ``time`` (s), or None when the chunk does not cover it."""
        index = int(np.floor((time - self.start_time) / self.dt + 1e-6))
        return index if 0 <= index < self.horizon else None

    def from_step(self, index: int) -> ActionChunk:
        """The remainder of the chunk from step ``index`` on (receding-horizon execution)."""
        if not 0 <= index < self.horizon:
            raise ContractError(f"step {index} is outside a chunk of {self.horizon} steps")
        return ActionChunk(self.actions[:, index:], start_time=self.start_time + index * self.dt, dt=self.dt)
