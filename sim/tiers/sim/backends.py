"""Simulator backends by name: what ``--backend`` and ``KitchenEnv(backend="...")`` accept.

Each entry builds a :class:`~tiers.sim.backend.SimBackend` for a robot preset. A new backend (Isaac Sim)
registers here and must pass ``tests/sim/test_backend_conformance.py``, which runs over every entry.
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


BACKENDS: MappingProxyType[str, Callable[..., SimBackend]] = MappingProxyType({"mujoco": _mujoco})
DEFAULT_BACKEND = "mujoco"


def make_backend(name: str = DEFAULT_BACKEND, embodiment: str | EmbodimentSpec = "panda", **kwargs: Any) -> SimBackend:
    """Build the backend called ``name`` for ``embodiment``; keyword arguments go to its constructor.

    Raises:
        ConfigError: no backend of that name; the message lists the available ones.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown simulator backend {name!r}; available: {', '.join(BACKENDS)}")
    return BACKENDS[name](embodiment, **kwargs)
