"""Simulator backends by name: what ``--backend`` and ``KitchenEnv(backend="...")`` accept.

Each entry builds a :class:`~tiers.sim.backend.SimBackend` for a robot preset and must pass
``tests/sim/test_backend_conformance.py``, which runs over every entry. ``"isaacsim"`` (Isaac Sim 6.2)
needs the ``isaacsim`` extra and an RTX GPU: where either is missing, building it raises
:class:`~tiers.sim.isaac.preflight.IsaacUnavailableError` naming what is missing, before anything starts.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError
from tiers.sim.backend import SimBackend


def _mujoco(embodiment: str | EmbodimentSpec, **kwargs: Any) -> SimBackend:
    from tiers.sim.mujoco.kitchen import MujocoKitchen

    return MujocoKitchen(embodiment, **kwargs)


def _isaacsim(embodiment: str | EmbodimentSpec, **kwargs: Any) -> SimBackend:
    from tiers.core.extras import require
    from tiers.sim.isaac.preflight import ensure_isaac_available

    ensure_isaac_available()  # says which requirement is missing; importing isaacsim first could exit
    require("isaacsim", purpose="the Isaac Sim backend")
    from tiers.sim.isaac.kitchen import IsaacKitchen

    return IsaacKitchen(embodiment, **kwargs)


BACKENDS: MappingProxyType[str, Callable[..., SimBackend]] = MappingProxyType(
    {"mujoco": _mujoco, "isaacsim": _isaacsim}
)
DEFAULT_BACKEND = "mujoco"


def check_backend_available(name: str) -> None:
    """Fail now, with the reason, if backend ``name`` cannot be built on this machine (nothing is started).

    Raises:
        ConfigError: no backend of that name.
        IsaacUnavailableError: ``"isaacsim"`` and a requirement of Isaac Sim is missing.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown simulator backend {name!r}; available: {', '.join(BACKENDS)}")
    if name == "isaacsim":
        from tiers.sim.isaac.preflight import ensure_isaac_available

        ensure_isaac_available()


def make_backend(name: str = DEFAULT_BACKEND, embodiment: str | EmbodimentSpec = "panda", **kwargs: Any) -> SimBackend:
    """Build the backend called ``name`` for ``embodiment``; keyword arguments go to its constructor.

    Raises:
        ConfigError: no backend of that name; the message lists the available ones.
        IsaacUnavailableError: ``"isaacsim"`` on a machine lacking one of its requirements.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown simulator backend {name!r}; available: {', '.join(BACKENDS)}")
    return BACKENDS[name](embodiment, **kwargs)
