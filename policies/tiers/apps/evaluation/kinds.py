"""The builders of the hierarchy kinds that read the kitchen simulator's ground truth, registered on import.

:mod:`tiers.policies.hierarchy.kinds` declares ``gold_plan`` (planner: the task's gold plan) and ``expert``
(low tier: the scripted expert) with their hand-offs, so a YAML naming them is checked and listed anywhere;
building them needs the simulator's privileged state (the episode's task, the scene state), which only the
applications that run the kitchen have. Every path that builds a hierarchy in the kitchen (``tiers run``,
``tiers eval --hierarchy``, the benchmarks, the demo) imports this module first::

    import tiers.apps.evaluation.kinds  # noqa: F401  (the privileged kinds can be built)
    hierarchy = load_hierarchy("expert_reference", env=KitchenEnv(render=False))
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tiers.apps.evaluation.expert_driver import ExpertDriver
from tiers.apps.evaluation.planning import GoldPlanEcho
from tiers.core.errors import ConfigError
from tiers.policies.hierarchy.kinds import kitchen_backend, no_settings
from tiers.policies.hierarchy.registry import HierarchyContext, kind_of, register


def _gold_plan(settings: dict[str, Any], context: HierarchyContext) -> GoldPlanEcho:
    no_settings("gold_plan", settings)
    if context.task is None:
        raise ConfigError("gold_plan: needs the kitchen task of the episode (privileged; evaluation only)")
    return GoldPlanEcho(context.task.plan)


def _expert(settings: dict[str, Any], context: HierarchyContext) -> ExpertDriver:
    no_settings("expert", settings)
    kitchen_backend(context, "expert")
    return ExpertDriver(context.env)


# the declarations keep their hand-offs and summaries; only what builds them changes
register(replace(kind_of("planner", "gold_plan"), build=_gold_plan))
register(replace(kind_of("low", "expert"), build=_expert))
