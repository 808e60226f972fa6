"""Generative cores by name: ``"beso"``, ``"flow"``, ``"ddpm"``.

A policy config names its core and carries that core's config (a dict read from YAML, or the dataclass)::

    generator = make_generator("beso", {"steps": 3, "network": {"kind": "unet", "action_dim": 7}})
    loss = generator.loss(actions, Conditioning(tokens, null_tokens), mask=real_steps)
    chunk = generator.sample(Conditioning(tokens, null_tokens), cfg_scale=2.0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from tiers.core.config import Config
from tiers.core.errors import ConfigError
from tiers.policies.low.beso import BesoConfig, BesoGenerator
from tiers.policies.low.ddpm import DdpmConfig, DdpmGenerator
from tiers.policies.low.flow import FlowConfig, FlowMatchingGenerator

# name -> (config class, generator class); every generator is an nn.Module satisfying ActionGenerator
GENERATORS: dict[str, tuple[type[Config], type[nn.Module]]] = {
    "beso": (BesoConfig, BesoGenerator),
    "flow": (FlowConfig, FlowMatchingGenerator),
    "ddpm": (DdpmConfig, DdpmGenerator),
}


def generator_config(name: str, values: Mapping[str, Any] | Config | None = None) -> Config:
    """The validated config of generator ``name`` from a mapping (e.g. YAML), a config, or the defaults.

    Raises:
        ConfigError: unknown name, a config of another generator, or values that do not validate (the
            message names the key and the value).
    """
    if name not in GENERATORS:
        raise ConfigError(f"unknown generator {name!r}; known: {', '.join(GENERATORS)}")
    config_class = GENERATORS[name][0]
    if values is None:
        return config_class.from_dict({}, source=f"generator {name!r}")
    if isinstance(values, Config):
        if not isinstance(values, config_class):
            raise ConfigError(f"generator {name!r} needs a {config_class.__name__}, got {type(values).__name__}")
        return values
    return config_class.from_dict(values, source=f"generator {name!r}")


def make_generator(name: str, config: Mapping[str, Any] | Config | None = None) -> nn.Module:
    """Build generator ``name`` ("beso", "flow" or "ddpm") from its config; see :func:`generator_config`."""
    validated = generator_config(name, config)
    generator_class = GENERATORS[name][1]
    return generator_class(validated)
