"""Build a :class:`~tiers.policies.hierarchy.runtime.HierarchyRuntime` from a hierarchy YAML.

::

    hierarchy = load_hierarchy("offline_paths", env=KitchenEnv(render=False))   # configs/hierarchies/offline_paths.yaml
    runtime = hierarchy.runtime_for(task)   # rebuilds only what depends on the task (a privileged planner)
    runtime.reset(task.instruction, observation)
    step = runtime.step(observation)

The hand-offs are checked before anything heavy is built (no checkpoint weights are read when the
composition cannot work); every mismatch is listed in one :class:`~tiers.core.errors.ConfigError`.
The privileged kinds (``gold_plan``, ``expert``) read the simulator: import :mod:`tiers.apps.evaluation.kinds`
before loading a hierarchy that names them in the kitchen.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError
from tiers.core.locations import preset_path
from tiers.policies.hierarchy import kinds as _builtin_kinds  # noqa: F401  (registers the built-in kinds)
from tiers.policies.hierarchy.config import HierarchyConfig
from tiers.policies.hierarchy.registry import TIER_KINDS, HierarchyContext, TierKind, check_handoffs, kind_of
from tiers.policies.hierarchy.runtime import ActionFilter, HierarchyRuntime, RuntimeSettings


class DeferredPlanner:
    """Stands for a privileged planner until :meth:`Hierarchy.runtime_for` builds it for a task."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def _refuse(self, *_: Any) -> Any:
        raise ConfigError(f"planner {self.kind!r} reads the task's gold plan: get the runtime from runtime_for(task)")

    reset = next_command = handle_correction = _refuse


@dataclass
class Hierarchy:
    """A loaded hierarchy: its config, the kinds of its tiers, and a runtime over the built tiers."""

    config: HierarchyConfig
    context: HierarchyContext
    kinds: tuple[TierKind, TierKind | None, TierKind]  # planner, mid, low
    runtime: HierarchyRuntime

    @property
    def privileged(self) -> list[str]:
        """Names of the tiers that read simulator ground truth."""
        return [kind.name for kind in self.kinds if kind is not None and kind.privileged]

    def runtime_for(self, task: Any) -> HierarchyRuntime:
        """The runtime for an episode of ``task``: a privileged planner is rebuilt for it, the rest is reused."""
        planner_kind = self.kinds[0]
        if planner_kind.privileged:
            context = replace(self.context, task=task)
            self.runtime.planner = planner_kind.build(dict(self.config.planner.settings), context)
        return self.runtime


def load_hierarchy(
    name_or_path: str | Path,
    *,
    robot: str | EmbodimentSpec | None = None,
    env: Any = None,
    task: Any = None,
    device: str = "cpu",
    overrides: list[str] | None = None,
    action_filter: ActionFilter | None = None,
) -> Hierarchy:
    """Load ``configs/hierarchies/<name>.yaml`` (or a path), check its hand-offs and build its tiers.

    Args:
        name_or_path: preset name or YAML path.
        robot: the robot (default: the YAML's ``robot``; with ``env`` given, the env's embodiment).
        env: the kitchen env, for simulation-only kinds (the expert, privileged planners, fixture maps).
        task: the first episode's kitchen task, for the gold-plan planner.
        device: torch device of learned tiers.
        overrides: ``key=value`` overrides of the YAML (``low.settings.sampler_steps=1``).
        action_filter: the safety filter every action passes on its way to the robot.

    Raises:
        ConfigError: unknown kinds, settings they reject, or tiers whose hand-offs do not fit.
    """
    path = preset_path("hierarchies", name_or_path)
    config = HierarchyConfig.load(path, overrides)
    if env is not None:
        embodiment = env.embodiment
    elif isinstance(robot, EmbodimentSpec):
        embodiment = robot
    else:
        embodiment = EmbodimentSpec.load(robot or config.robot)
    context = HierarchyContext(embodiment=embodiment, base_dir=Path(path).parent, env=env, task=task, device=device)
    planner_kind = kind_of("planner", config.planner.kind)
    if planner_kind.emits_of is not None:  # what this planner emits depends on its settings (steering levels)
        planner_kind = replace(planner_kind, emits=planner_kind.emits_of(dict(config.planner.settings)))
    mid_kind = kind_of("mid", config.mid.kind) if config.mid is not None else None
    low_kind = kind_of("low", config.low.kind)
    if low_kind.needs_of is not None:
        needs, takes_guidance = low_kind.needs_of(dict(config.low.settings), context)
    else:
        needs, takes_guidance = low_kind.needs or frozenset(), low_kind.takes_guidance
    problems = check_handoffs(planner_kind, mid_kind, low_kind, needs, takes_guidance)
    if problems:
        raise ConfigError(f"{path}: the tiers do not fit together:\n  - " + "\n  - ".join(problems))
    # the mid tier first: a planner may perceive through it (code_as_policies reads its point cloud)
    mid = mid_kind.build(dict(config.mid.settings), context) if mid_kind is not None and config.mid else None
    context.mid = mid
    if planner_kind.privileged and task is None:
        planner: Any = DeferredPlanner(planner_kind.name)  # built per episode by Hierarchy.runtime_for(task)
    else:
        planner = planner_kind.build(dict(config.planner.settings), context)
    low = low_kind.build(dict(config.low.settings), context)
    # a planner with its own rate (steering, motion prediction) is asked that often unless the YAML says otherwise
    period = config.runtime.planner_period_s
    if period is None:
        period = getattr(planner, "period_s", None)
    settings = RuntimeSettings(
        planner_period_s=period,
        command_timeout_s=config.runtime.command_timeout_s,
        budgets_s=dict(config.runtime.budgets_s),
        recovery=config.runtime.recovery,
        max_retries=config.runtime.max_retries,
        max_replans=config.runtime.max_replans,
    )
    runtime = HierarchyRuntime(
        planner, low, embodiment=embodiment, mid=mid, settings=settings, action_filter=action_filter
    )
    return Hierarchy(config=config, context=context, kinds=(planner_kind, mid_kind, low_kind), runtime=runtime)


def hierarchy_embodiment(name_or_path: str | Path, robot: str | EmbodimentSpec | None = None) -> EmbodimentSpec:
    """The robot spec a hierarchy runs on: its robot with the cameras its tiers need (build the sim with it)."""
    config = HierarchyConfig.load(preset_path("hierarchies", name_or_path))
    spec = robot if isinstance(robot, EmbodimentSpec) else EmbodimentSpec.load(robot or config.robot)
    for tier, spec_of_tier in (("planner", config.planner), ("mid", config.mid), ("low", config.low)):
        if spec_of_tier is None:
            continue
        kind = kind_of(tier, spec_of_tier.kind)
        if kind.adapt_embodiment is not None:
            spec = kind.adapt_embodiment(spec, dict(spec_of_tier.settings))
    return spec


def describe_kinds() -> str:
    """Every registered kind, one per line, for ``tiers run --list-kinds``."""
    lines = []
    for tier, kinds in TIER_KINDS.items():
        for name, kind in sorted(kinds.items()):
            flag = " (privileged: simulation only)" if kind.privileged else ""
            lines.append(f"{tier:8s} {name:16s} {kind.summary}{flag}")
    if not lines:
        raise ConfigError("no tier kinds are registered")
    return "\n".join(lines)
