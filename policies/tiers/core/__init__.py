"""tiers.core: the contracts every tier, simulator, dataset and deployment shares.

Import the types from here: ``from tiers.core import Observation, ActionChunk, LanguageCommand``.
The names that need torch (``Guidance``, the tier protocols) are loaded on first use, so that importing
the contracts (and running ``tiers --help``) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tiers.core.actions import ActionChunk
from tiers.core.config import Config, load_config
from tiers.core.ee_path import EEPath
from tiers.core.embodiment import ActionSpace, CameraSpec, EmbodimentSpec, GripperSpec, JointSpec
from tiers.core.errors import (
    ConfigError,
    ContractError,
    EmbodimentMismatchError,
    MissingExtraError,
    SimulationError,
    TiersError,
)
from tiers.core.features import CommandSource, CommandStyle, FeatureKey
from tiers.core.language import LanguageCommand
from tiers.core.observation import CameraModel, Observation

if TYPE_CHECKING:
    from tiers.core.guidance import Guidance, RewardFunction, guidance_gradient
    from tiers.core.protocols import HighLevelPlanner, LowLevelPolicy, LowTierDriver, MidLevelPlan, MidLevelPlanner
    from tiers.core.sampling import SamplerStep, StateHook, SteerablePolicy, StepFactory, StepwiseSampler

# name -> module, imported on first attribute access (PEP 562)
_TORCH_NAMES = {
    "Guidance": "tiers.core.guidance",
    "RewardFunction": "tiers.core.guidance",
    "guidance_gradient": "tiers.core.guidance",
    "HighLevelPlanner": "tiers.core.protocols",
    "LowLevelPolicy": "tiers.core.protocols",
    "MidLevelPlan": "tiers.core.protocols",
    "MidLevelPlanner": "tiers.core.protocols",
    "LowTierDriver": "tiers.core.protocols",
    "SamplerStep": "tiers.core.sampling",
    "StateHook": "tiers.core.sampling",
    "SteerablePolicy": "tiers.core.sampling",
    "StepFactory": "tiers.core.sampling",
    "StepwiseSampler": "tiers.core.sampling",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module 'tiers.core' has no attribute {name!r}")


__all__ = [
    "ActionChunk",
    "ActionSpace",
    "CameraModel",
    "CameraSpec",
    "CommandSource",
    "CommandStyle",
    "Config",
    "ConfigError",
    "ContractError",
    "EEPath",
    "EmbodimentMismatchError",
    "EmbodimentSpec",
    "FeatureKey",
    "GripperSpec",
    "Guidance",
    "HighLevelPlanner",
    "JointSpec",
    "LanguageCommand",
    "LowLevelPolicy",
    "LowTierDriver",
    "MidLevelPlan",
    "MidLevelPlanner",
    "MissingExtraError",
    "Observation",
    "RewardFunction",
    "SamplerStep",
    "SimulationError",
    "StateHook",
    "SteerablePolicy",
    "StepFactory",
    "StepwiseSampler",
    "TiersError",
    "guidance_gradient",
    "load_config",
]
