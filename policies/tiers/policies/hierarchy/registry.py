"""Which planners, mid tiers and low tiers a hierarchy YAML may name, and whether they fit together.

Each kind declares its hand-off types, and :func:`check_handoffs` refuses a composition whose parts do not
fit, naming every mismatch at once:

    planner emits      subtask and/or motion commands
    mid tier provides  a path and/or guidance terms (from subtask commands)
    low tier needs     a subtask, motion or task text; a path; and says whether it takes guidance

A planner that emits motion commands ("move arm forward") needs a low tier conditioned on them: nothing else
in a hierarchy executes a language motion (the mid tier plans subtasks only).

Kinds marked ``privileged`` read the simulator's ground truth (the gold plan, the scene state): they exist
to evaluate the other tiers (Kitchen-R's "perfect planner" / "perfect controller") and cannot run on a robot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError
from tiers.core.features import CommandStyle

PRETRAINED_PREFIX = "pretrained:"  # checkpoint paths naming a checkpoint shipped with tiers
PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"  # where those checkpoints are


def shipped_checkpoint(path: str | Path) -> Path:
    """``pretrained:<name>`` -> the checkpoint folder shipped in ``tiers/policies/pretrained/``; else ``path``."""
    if str(path).startswith(PRETRAINED_PREFIX):
        return PRETRAINED_DIR / str(path).removeprefix(PRETRAINED_PREFIX)
    return Path(path)


@dataclass
class HierarchyContext:
    """What building a tier may use.

    Attributes:
        embodiment: the robot.
        base_dir: folder of the hierarchy YAML (relative checkpoint paths resolve against it, then the cwd).
        env: the kitchen env when running in simulation (privileged kinds need it), else None.
        task: the kitchen task of the episode (the gold-plan planner needs it), else None.
        device: torch device for learned tiers.
        mid: the hierarchy's built mid tier (built before the planner), for planners that perceive through it
            (``code_as_policies``); None without one.
    """

    embodiment: EmbodimentSpec
    base_dir: Path = field(default_factory=Path.cwd)
    env: Any = None
    task: Any = None
    device: str = "cpu"
    mid: Any = None

    def resolve(self, path: str | Path) -> Path:
        """``pretrained:<name>`` is a checkpoint shipped in ``tiers/policies/pretrained/``; other paths are taken
        as given if absolute or present from the cwd, else relative to the YAML's folder."""
        if str(path).startswith(PRETRAINED_PREFIX):
            return shipped_checkpoint(path)
        candidate = Path(path)
        if candidate.is_absolute() or candidate.exists():
            return candidate
        return self.base_dir / candidate


@dataclass(frozen=True)
class TierKind:
    """One buildable kind of a tier and its hand-off types.

    Attributes:
        name: the ``kind`` written in YAML.
        tier: "planner" | "mid" | "low".
        build: (settings, context) -> the tier object (planner, mid planner, or low-tier driver).
        summary: one line for ``tiers run --list`` and error messages.
        emits: planner: the command styles it hands down.
        provides: mid: "path" and/or "guidance".
        needs: low: texts it conditions on ("subtask", "motion", "task") and "path" if it needs one;
            ``None`` means "decided by its settings" (a checkpoint): see ``needs_of``.
        takes_guidance: low: whether guidance terms can steer it.
        privileged: reads simulator ground truth (evaluation only).
        needs_of: low: (settings, context) -> (needs, takes_guidance) when they depend on the settings.
        emits_of: planner: settings -> the command styles it emits, when they depend on the settings.
        adapt_embodiment: (robot spec, settings) -> the spec with the cameras this kind needs.
    """

    name: str
    tier: str
    build: Callable[[dict[str, Any], HierarchyContext], Any]
    summary: str
    emits: frozenset[CommandStyle] = frozenset()
    provides: frozenset[str] = frozenset()
    needs: frozenset[str] | None = frozenset()
    takes_guidance: bool = False
    privileged: bool = False
    needs_of: Callable[[dict[str, Any], HierarchyContext], tuple[frozenset[str], bool]] | None = None
    emits_of: Callable[[dict[str, Any]], frozenset[CommandStyle]] | None = None
    # the cameras this kind needs, as a change of the robot's spec (e.g. higher-resolution RGB-D for perception)
    adapt_embodiment: Callable[[EmbodimentSpec, dict[str, Any]], EmbodimentSpec] | None = None


TIER_KINDS: dict[str, dict[str, TierKind]] = {"planner": {}, "mid": {}, "low": {}}


def register(kind: TierKind) -> TierKind:
    """Add ``kind`` to :data:`TIER_KINDS` (a second kind of the same name and tier replaces the first)."""
    TIER_KINDS[kind.tier][kind.name] = kind
    return kind


def kind_of(tier: str, name: str) -> TierKind:
    """The registered kind, or a :class:`ConfigError` listing the kinds of that tier.

    The built-in kinds are registered when :mod:`tiers.policies.hierarchy.kinds` is imported (the builder
    imports it); the simulator's privileged kinds get their builders from :mod:`tiers.apps.evaluation.kinds`.
    """
    try:
        return TIER_KINDS[tier][name]
    except KeyError:
        known = ", ".join(sorted(TIER_KINDS[tier]))
        raise ConfigError(f"{tier}: unknown kind {name!r}; known {tier} kinds: {known}") from None


def check_handoffs(
    planner: TierKind,
    mid: TierKind | None,
    low: TierKind,
    low_needs: frozenset[str],
    low_takes_guidance: bool,
) -> list[str]:
    """Every way the three tiers do not fit together (empty when they do)."""
    problems = []
    texts = {"subtask": CommandStyle.SUBTASK, "motion": CommandStyle.MOTION}
    for text, style in texts.items():
        if text in low_needs and style not in planner.emits:
            emitted = ", ".join(sorted(s.value for s in planner.emits)) or "nothing"
            problems.append(
                f"low tier {low.name!r} is conditioned on {text} commands, but planner {planner.name!r} emits {emitted}"
            )
    if CommandStyle.MOTION in planner.emits and "motion" not in low_needs:
        conditioned = ", ".join(sorted(low_needs - {"path"})) or "no text"
        problems.append(
            f"planner {planner.name!r} emits motion commands, which only a motion-conditioned low tier executes; "
            f"low tier {low.name!r} is conditioned on {conditioned}"
        )
    if "path" in low_needs and (mid is None or "path" not in mid.provides):
        got = "no mid tier" if mid is None else f"mid tier {mid.name!r}, which provides {sorted(mid.provides)}"
        problems.append(f"low tier {low.name!r} follows an end-effector path, but the hierarchy has {got}")
    if mid is not None:
        if CommandStyle.SUBTASK not in planner.emits:
            problems.append(f"mid tier {mid.name!r} plans subtasks, but planner {planner.name!r} emits none")
        if mid.provides == frozenset({"guidance"}) and not low_takes_guidance:
            problems.append(f"mid tier {mid.name!r} only provides guidance, which low tier {low.name!r} cannot take")
    return problems
