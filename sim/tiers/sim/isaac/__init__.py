"""tiers.sim.isaac: the kitchen in NVIDIA Isaac Sim 6.2 (optional backend ``"isaacsim"``, needs an RTX GPU).

Nothing here imports Isaac Sim at import time: :mod:`~tiers.sim.isaac.preflight` says what is missing
without starting anything, and :class:`~tiers.sim.isaac.kitchen.IsaacKitchen` starts the headless
``SimulationApp`` on first use. :mod:`~tiers.sim.isaac.stage` and :mod:`~tiers.sim.isaac.geometry` read the
exported stage and compute the privileged state with ``pxr`` and numpy only (tested on the CPU).
"""

from __future__ import annotations

from tiers.sim.isaac.preflight import IsaacUnavailableError, check_isaac_requirements, ensure_isaac_available

__all__ = ["IsaacUnavailableError", "check_isaac_requirements", "ensure_isaac_available"]
