"""The Isaac Sim application: one headless ``SimulationApp`` per process, and the stage it simulates.

Kit allows one application per process and Isaac/Omniverse modules can only be imported after it has
started (``isaacsim/__init__.py`` of the 6.2 kernel wheel), so :func:`simulation_app` starts it on first
use and returns the same one afterwards. It is never closed by a backend: with ``fast_shutdown`` (the
default) ``SimulationApp.close`` ends the process, and ``SimulationApp`` closes itself at interpreter exit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiers.core.extras import require
from tiers.sim.isaac.preflight import ensure_isaac_available

# Deterministic, cheap rendering for observations: ray-traced lighting without temporal anti-aliasing
# (DLSS, the default, accumulates over frames, so the same state could give different pixels).
APP_CONFIG: dict[str, Any] = {"headless": True, "renderer": "RaytracedLighting", "anti_aliasing": 0}
_APP: Any = None


def simulation_app(config: dict[str, Any] | None = None) -> Any:
    """The process's ``isaacsim.SimulationApp``, started headless on the first call.

    Raises:
        IsaacUnavailableError: a requirement is missing (checked before anything starts).
        MissingExtraError: ``isaacsim`` cannot be imported.
    """
    global _APP
    if _APP is None:
        ensure_isaac_available()
        isaacsim = require("isaacsim", purpose="the Isaac Sim backend")
        _APP = isaacsim.SimulationApp({**APP_CONFIG, **(config or {})})  # isaacsim.simulation_app.SimulationApp
    return _APP


def open_stage(path: Path) -> Any:
    """Open the USD file at ``path`` as the app's stage, wait until it has loaded, and return it."""
    app = simulation_app()
    import isaacsim.core.utils.stage as stage_utils  # isaacsim.core.utils (6.2: extsDeprecated)

    if not stage_utils.open_stage(str(path)):  # isaacsim.core.utils.stage.open_stage
        raise RuntimeError(f"Isaac Sim could not open the stage {path}")
    while stage_utils.is_stage_loading():  # isaacsim.core.utils.stage.is_stage_loading
        app.update()  # SimulationApp.update: one Kit frame
    return stage_utils.get_current_stage()  # isaacsim.core.utils.stage.get_current_stage
