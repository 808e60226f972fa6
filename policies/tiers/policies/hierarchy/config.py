"""A hierarchy as one YAML file under ``configs/hierarchies/``: which planner, mid tier and low tier.

::

    name: offline_paths
    description: grammar planner -> keypoint-affordance paths from RGB-D -> IK path following
    robot: panda
    planner: {kind: grammar}
    mid: {kind: affordance_paths, settings: {clearance: 0.03}}
    low: {kind: ik_path}
    runtime: {command_timeout_s: 30, budgets_s: {low: 0.05}}

Each tier's ``kind`` names an entry of :data:`tiers.policies.hierarchy.registry.TIER_KINDS`, and its
``settings`` are validated by that entry's own config class when the hierarchy is built; relative paths in
settings (checkpoints) resolve against the YAML file's folder, then the working directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiers.core.config import Config, load_config
from tiers.core.locations import preset_path


@dataclass
class TierSpec(Config):
    """One tier of a hierarchy."""

    kind: str  # an entry of TIER_KINDS for this tier ("grammar", "affordance_paths", "policy", ...)
    settings: dict[str, Any] = field(default_factory=dict)  # validated by the kind's own config class


@dataclass
class RuntimeSpec(Config):
    """Scheduling of the tiers (see :class:`tiers.policies.hierarchy.runtime.RuntimeSettings`)."""

    planner_period_s: float | None = None  # re-ask the planner this often (steering planners); None: on events
    command_timeout_s: float = 30.0  # s a command may run before the planner is asked for the next
    budgets_s: dict[str, float] = field(default_factory=dict)  # per-tier latency budget ("planner", "mid", "low")
    recovery: bool = True  # retry / re-plan a subtask whose effect is not sensed (False: log it and go on)
    max_retries: int = 1  # mid-tier re-plans of a failed command before the planner is told
    max_replans: int = 2  # failures per instruction handed back to the planner before the instruction fails

    def __post_init__(self) -> None:
        if self.planner_period_s is not None and self.planner_period_s <= 0:
            raise ValueError(f"planner_period_s must be positive or null, got {self.planner_period_s}")
        if self.command_timeout_s <= 0:
            raise ValueError(f"command_timeout_s must be positive, got {self.command_timeout_s}")
        if self.max_retries < 0 or self.max_replans < 0:
            raise ValueError(f"max_retries and max_replans must be >= 0, got {self.max_retries}, {self.max_replans}")
        unknown = sorted(set(self.budgets_s) - {"planner", "mid", "low"})
        if unknown:
            raise ValueError(f"budgets_s names unknown tiers {unknown}; tiers are planner, mid, low")


@dataclass
class HierarchyConfig(Config):
    """A high × (mid) × low composition."""

    name: str  # short identifier, used in reports
    planner: TierSpec  # high tier
    low: TierSpec  # low tier
    mid: TierSpec | None = None  # optional mid tier
    description: str = ""  # one line for humans
    robot: str = "panda"  # robot preset (configs/robots/<robot>.yaml) or path
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)

    @classmethod
    def load(cls, name_or_path: str | Path, overrides: list[str] | None = None) -> HierarchyConfig:
        """Load a preset by name (``offline_paths`` -> ``configs/hierarchies/offline_paths.yaml``) or a path."""
        return load_config(cls, preset_path("hierarchies", name_or_path), overrides=overrides or [])
