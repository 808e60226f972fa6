"""Benchmark tasks: instruction, gold plan, success predicate and initial-state requirements.

:func:`generate_tasks` enumerates goals per :class:`~tiers.sim.kitchen.instructions.Pattern` (which objects,
places, relations and directions are physically sensible), builds each goal's gold plan of canonical
:class:`~tiers.commands.subtasks.Subtask` s, derives from the plan

* the success predicate: the conjunction of the plan's final effects (a later step on the same object or
  fixture replaces an earlier one: "open the drawer, put the apple in it, then close it" succeeds when the
  apple is in the drawer and the drawer is closed), evaluated at the end of the episode;
* the initial-state requirements: the objects the plan names, and for each articulated fixture the opening
  its first use needs (closed before an ``open``, fully open before a ``close`` or a ``place`` into it);

and realises a few train and held-out wordings per goal. The result is deterministic (same list, same order,
same ids on every run and machine). :func:`split` separates train from held-out phrasings.

Families and what they hold:

============  ===============================================================================
family        patterns
============  ===============================================================================
pick_place    put a small object in/on a container (bowl, plate, basket) or fixture (drawer,
              cabinet, sink, shelf); dishes and the box into the sink or onto the shelf
open_close    open or close the drawer or the cabinet
stack         small items on the box, the bowl on the plate
spatial       put an object left of / right of / in front of / behind / next to another
push          push a flat-bottomed object left, right, forward or backward
multi_step    2–4 instruction steps: place+close, open+place, open+place+close,
              open+place+place+close, two placements, place+push, two articulations
============  ===============================================================================

The counter is never a placement target: the layout starts every object on it, so "put X on the counter"
would succeed at once.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from tiers.commands.subtasks import Action, Subtask
from tiers.commands.vocabulary import (
    ARTICULATED,
    FIXTURES,
    OBJECTS,
    STACKS,
    FixtureName,
    ObjectName,
    PushDirection,
    Relation,
    Size,
    fits,
)
from tiers.core.errors import TiersError
from tiers.sim.kitchen.instructions import Pattern, Slot, SlotValue, is_held_out, phrasings
from tiers.sim.kitchen.predicates import AllOf, Closed, Goal, Held, Opened, Placed, Pushed, Verdict
from tiers.sim.scene_state import SceneState


class TaskFamily(StrEnum):
    """Task families, the unit of per-family evaluation results."""

    PICK_PLACE = "pick_place"
    OPEN_CLOSE = "open_close"
    STACK = "stack"
    SPATIAL = "spatial"
    PUSH = "push"
    MULTI_STEP = "multi_step"


# family of each pattern, and how many instruction-level steps it has (a "put X in Y" is one step)
PATTERN_FAMILY: dict[Pattern, TaskFamily] = {
    Pattern.PICK_PLACE: TaskFamily.PICK_PLACE,
    Pattern.OPEN: TaskFamily.OPEN_CLOSE,
    Pattern.CLOSE: TaskFamily.OPEN_CLOSE,
    Pattern.STACK: TaskFamily.STACK,
    Pattern.SPATIAL: TaskFamily.SPATIAL,
    Pattern.PUSH: TaskFamily.PUSH,
    **{
        pattern: TaskFamily.MULTI_STEP
        for pattern in (
            Pattern.PLACE_CLOSE,
            Pattern.OPEN_PLACE,
            Pattern.OPEN_PLACE_CLOSE,
            Pattern.OPEN_PLACE_TWO_CLOSE,
            Pattern.TWO_PLACES,
            Pattern.PLACE_PUSH,
            Pattern.OPEN_BOTH,
            Pattern.CLOSE_BOTH,
            Pattern.OPEN_AND_CLOSE,
        )
    },
}
PATTERN_STEPS: dict[Pattern, int] = {
    **{pattern: 1 for pattern, family in PATTERN_FAMILY.items() if family is not TaskFamily.MULTI_STEP},
    Pattern.PLACE_CLOSE: 2,
    Pattern.OPEN_PLACE: 2,
    Pattern.OPEN_PLACE_CLOSE: 3,
    Pattern.OPEN_PLACE_TWO_CLOSE: 4,
    Pattern.TWO_PLACES: 2,
    Pattern.PLACE_PUSH: 2,
    Pattern.OPEN_BOTH: 2,
    Pattern.CLOSE_BOTH: 2,
    Pattern.OPEN_AND_CLOSE: 2,
}

# Initial opening fraction (0 closed .. 1 fully open) required of a fixture before its first use in a plan.
INITIAL_CLOSED = 0.0
INITIAL_OPEN = 1.0


class UnknownTaskError(TiersError, LookupError):
    """A task id or instruction is not in the benchmark; the message lists close matches."""


@dataclass(frozen=True)
class InitialRequirements:
    """What the layout sampler must produce for a task.

    Attributes:
        objects: objects that must be present (the layout may add distractors).
        articulations: fixture -> initial opening fraction (0 closed .. 1 fully open), only for the fixtures
            the plan uses; others are left to the sampler.
        colors: object -> colour word, for the objects the instruction names by colour.
    """

    objects: tuple[str, ...]
    articulations: Mapping[str, float] = field(default_factory=dict)
    colors: Mapping[str, str] = field(default_factory=dict)

    def articulation_values(self, limits: Mapping[str, tuple[float, float]]) -> dict[str, float]:
        """Initial joint values (drawer m, cabinet rad) from the opening fractions and ``limits``.

        ``limits`` maps a fixture to its joint's (lower, upper); opening 0 is ``lower``, 1 is ``upper``
        (as :attr:`~tiers.sim.scene_state.ArticulationState.opening`).
        """
        missing = sorted(set(self.articulations) - set(limits))
        if missing:
            raise ValueError(f"no joint limits for {missing}; given for {sorted(limits)}")
        return {
            name: limits[name][0] + fraction * (limits[name][1] - limits[name][0])
            for name, fraction in self.articulations.items()
        }


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    Attributes:
        id: ``<pattern>/<slot values>/<n>``, e.g. ``pick_place/apple-in-drawer/0``; unique and stable.
        family: its :class:`TaskFamily`.
        pattern: its :class:`~tiers.sim.kitchen.instructions.Pattern` (finer than the family).
        instruction: the natural-language instruction given to the robot.
        plan: the gold plan, canonical subtasks in order.
        success: conjunction of goal terms, called as ``success(initial, final) -> Verdict``.
        requirements: initial-state requirements for the layout sampler.
        template_id: the phrasing template of ``instruction``.
        phrase_keys: the synonym phrases filling the template (``noun:cup=mug``).
    """

    id: str
    family: TaskFamily
    pattern: Pattern
    instruction: str
    plan: tuple[Subtask, ...]
    success: AllOf
    requirements: InitialRequirements
    template_id: str
    phrase_keys: tuple[str, ...]

    @property
    def held_out(self) -> bool:
        """Whether the instruction uses a held-out template or synonym."""
        return is_held_out(self.template_id, self.phrase_keys)

    @property
    def steps(self) -> int:
        """Instruction-level steps (1 for single-step families, 2–4 for multi-step)."""
        return PATTERN_STEPS[self.pattern]

    @property
    def multi_step(self) -> bool:
        return self.family is TaskFamily.MULTI_STEP

    def check(self, initial: SceneState, final: SceneState) -> Verdict:
        """Evaluate the success predicate on the episode's initial and final states."""
        return self.success(initial, final)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for reports and dataset metadata (the plan as canonical texts)."""
        return {
            "id": self.id,
            "family": self.family.value,
            "pattern": self.pattern.value,
            "instruction": self.instruction,
            "plan": [step.text for step in self.plan],
            "success": self.success.describe(),
            "objects": list(self.requirements.objects),
            "articulations": dict(self.requirements.articulations),
            "colors": dict(self.requirements.colors),
            "template_id": self.template_id,
            "phrase_keys": list(self.phrase_keys),
            "held_out": self.held_out,
            "steps": self.steps,
        }


# --- plans, goals, requirements ---------------------------------------------------------------------------


def _place(obj: str, relation: Relation, target: str) -> tuple[Subtask, ...]:
    return Subtask(Action.PICK, obj), Subtask(Action.PLACE, obj, target, relation)


def _open(fixture: str) -> tuple[Subtask, ...]:
    return (Subtask(Action.OPEN, fixture),)


def _close(fixture: str) -> tuple[Subtask, ...]:
    return (Subtask(Action.CLOSE, fixture),)


def _push(obj: str, direction: PushDirection) -> tuple[Subtask, ...]:
    return (Subtask(Action.PUSH, obj, direction=direction),)


Slots = Mapping[Slot, SlotValue]
S = Slot


def _rel(slots: Slots, slot: Slot) -> Relation:
    value = slots[slot]
    if not isinstance(value, Relation):
        raise TypeError(f"slot {slot} must hold a Relation, got {value!r}")
    return value


def _dir(slots: Slots) -> PushDirection:
    value = slots[S.DIR]
    if not isinstance(value, PushDirection):
        raise TypeError(f"slot {S.DIR} must hold a PushDirection, got {value!r}")
    return value


# gold plan of each pattern from its slot values
PLANS: dict[Pattern, Callable[[Slots], tuple[Subtask, ...]]] = {
    Pattern.PICK_PLACE: lambda s: _place(s[S.OBJ], _rel(s, S.PREP), s[S.PLACE]),
    Pattern.OPEN: lambda s: _open(s[S.FIX]),
    Pattern.CLOSE: lambda s: _close(s[S.FIX]),
    Pattern.STACK: lambda s: _place(s[S.OBJ], Relation.ON, s[S.BASE]),
    Pattern.SPATIAL: lambda s: _place(s[S.OBJ], _rel(s, S.REL), s[S.BASE]),
    Pattern.PUSH: lambda s: _push(s[S.OBJ], _dir(s)),
    Pattern.PLACE_CLOSE: lambda s: _place(s[S.OBJ], _rel(s, S.PREP), s[S.FIX]) + _close(s[S.FIX]),
    Pattern.OPEN_PLACE: lambda s: _open(s[S.FIX]) + _place(s[S.OBJ], _rel(s, S.PREP), s[S.FIX]),
    Pattern.OPEN_PLACE_CLOSE: lambda s: (
        _open(s[S.FIX]) + _place(s[S.OBJ], _rel(s, S.PREP), s[S.FIX]) + _close(s[S.FIX])
    ),
    Pattern.OPEN_PLACE_TWO_CLOSE: lambda s: (
        _open(s[S.FIX])
        + _place(s[S.OBJ], _rel(s, S.PREP), s[S.FIX])
        + _place(s[S.OBJ2], _rel(s, S.PREP), s[S.FIX])
        + _close(s[S.FIX])
    ),
    Pattern.TWO_PLACES: lambda s: (
        _place(s[S.OBJ], _rel(s, S.PREP), s[S.PLACE]) + _place(s[S.OBJ2], _rel(s, S.PREP2), s[S.PLACE2])
    ),
    Pattern.PLACE_PUSH: lambda s: _place(s[S.OBJ], _rel(s, S.PREP), s[S.PLACE]) + _push(s[S.OBJ2], _dir(s)),
    Pattern.OPEN_BOTH: lambda s: _open(s[S.FIX]) + _open(s[S.FIX2]),
    Pattern.CLOSE_BOTH: lambda s: _close(s[S.FIX]) + _close(s[S.FIX2]),
    Pattern.OPEN_AND_CLOSE: lambda s: _open(s[S.FIX]) + _close(s[S.FIX2]),
}


def success_of(plan: Sequence[Subtask]) -> AllOf:
    """The conjunction of a plan's final effects; a later step on the same object/fixture replaces an earlier one."""
    effects: dict[str, Goal] = {}  # object or fixture -> its last effect, in order of first mention
    for step in plan:
        goal: Goal
        if step.action is Action.PICK:
            goal = Held(step.object)
        elif step.action is Action.PLACE:
            assert step.relation is not None and step.target is not None
            goal = Placed(step.object, step.relation, step.target)
        elif step.action is Action.PUSH:
            assert step.direction is not None
            goal = Pushed(step.object, step.direction)
        elif step.action is Action.OPEN:
            goal = Opened(FixtureName(step.object))
        else:
            goal = Closed(FixtureName(step.object))
        effects[step.object] = goal
    return AllOf(tuple(effects.values()))


def requirements_of(plan: Sequence[Subtask], colors: Mapping[str, str] | None = None) -> InitialRequirements:
    """Objects the plan names, and the initial opening of each articulated fixture before its first use."""
    objects: dict[str, None] = {}  # ordered set
    articulations: dict[str, float] = {}
    for step in plan:
        for name in (step.object, step.target):
            if name in OBJECTS:
                objects[str(name)] = None
        if step.action in (Action.OPEN, Action.CLOSE):
            articulations.setdefault(str(step.object), INITIAL_CLOSED if step.action is Action.OPEN else INITIAL_OPEN)
        elif step.target in ARTICULATED:
            articulations.setdefault(str(step.target), INITIAL_OPEN)
    return InitialRequirements(
        objects=tuple(objects),
        articulations=MappingProxyType(articulations),
        colors=MappingProxyType(dict(colors or {})),
    )


# --- goal enumeration --------------------------------------------------------------------------------------

SMALL_ITEMS = tuple(name for name, info in OBJECTS.items() if info.size is Size.SMALL and not info.accepts)
MOVABLE = tuple(name for name, info in OBJECTS.items() if info.size <= Size.MEDIUM)
PUSHABLE = tuple(name for name, info in OBJECTS.items() if info.pushable)
# receivers that are always reachable (no door): containers and the open fixtures except the counter
OPEN_RECEIVERS: tuple[ObjectName | FixtureName, ...] = (
    FixtureName.SINK,
    FixtureName.SHELF,
    *(name for name, info in OBJECTS.items() if info.container),
)
PLACE_TARGETS: tuple[ObjectName | FixtureName, ...] = (*ARTICULATED, *OPEN_RECEIVERS)
SPATIAL_ORDER = (Relation.LEFT_OF, Relation.RIGHT_OF, Relation.IN_FRONT_OF, Relation.BEHIND, Relation.NEXT_TO)
SAMPLED_GOALS = 20  # goals drawn (deterministically) for the combinatorial multi-step patterns


def _containment(target: ObjectName | FixtureName) -> Relation:
    info = FIXTURES[target] if isinstance(target, FixtureName) else OBJECTS[target]
    (relation,) = info.accepts
    return relation


def _placements(
    items: Sequence[ObjectName], targets: Sequence[ObjectName | FixtureName]
) -> list[dict[Slot, SlotValue]]:
    """(obj, prep, place) for every sensible item × target, stacking pairs excluded (the stack family has them)."""
    goals: list[dict[Slot, SlotValue]] = []
    for obj, target in itertools.product(items, targets):
        relation = _containment(target)
        stack = isinstance(target, ObjectName) and obj in STACKS.get(target, ())
        if fits(obj, relation, target) and not stack:
            goals.append({S.OBJ: obj, S.PREP: relation, S.PLACE: target})
    return goals


def _sample(goals: list[dict[Slot, SlotValue]], seed: str) -> list[dict[Slot, SlotValue]]:
    if len(goals) <= SAMPLED_GOALS:
        return goals
    picked = sorted(random.Random(seed).sample(range(len(goals)), SAMPLED_GOALS))
    return [goals[index] for index in picked]


def _goals(pattern: Pattern) -> list[dict[Slot, SlotValue]]:
    """Every goal (slot values) of a pattern, in a fixed order."""
    fixtures: list[dict[Slot, SlotValue]] = [{S.FIX: f, S.PREP: Relation.IN} for f in ARTICULATED]
    if pattern is Pattern.PICK_PLACE:
        return _placements(MOVABLE, PLACE_TARGETS)
    if pattern in (Pattern.OPEN, Pattern.CLOSE):
        return [{S.FIX: f} for f in ARTICULATED]
    if pattern is Pattern.STACK:
        return [{S.OBJ: top, S.BASE: base} for base, tops in STACKS.items() for top in tops]
    if pattern is Pattern.SPATIAL:
        return [
            {S.OBJ: obj, S.REL: SPATIAL_ORDER[(i + j) % len(SPATIAL_ORDER)], S.BASE: anchor}
            for i, obj in enumerate(MOVABLE)
            for j, anchor in enumerate(OBJECTS)
            if anchor != obj
        ]
    if pattern is Pattern.PUSH:
        return [{S.OBJ: obj, S.DIR: d} for obj in PUSHABLE for d in PushDirection]
    if pattern in (Pattern.PLACE_CLOSE, Pattern.OPEN_PLACE, Pattern.OPEN_PLACE_CLOSE):
        return [{**fixture, S.OBJ: obj} for fixture in fixtures for obj in SMALL_ITEMS]
    if pattern is Pattern.OPEN_PLACE_TWO_CLOSE:
        items = itertools.combinations(SMALL_ITEMS, 2)
        return _sample([{**fixture, S.OBJ: a, S.OBJ2: b} for a, b in items for fixture in fixtures], pattern.value)
    if pattern is Pattern.TWO_PLACES:
        singles = _placements(SMALL_ITEMS, OPEN_RECEIVERS)
        pairs = [
            {**a, S.OBJ2: b[S.OBJ], S.PREP2: b[S.PREP], S.PLACE2: b[S.PLACE]}
            for a, b in itertools.permutations(singles, 2)
            if a[S.OBJ] != b[S.OBJ]
        ]
        return _sample(pairs, pattern.value)
    if pattern is Pattern.PLACE_PUSH:
        combos = [
            {**single, S.OBJ2: obj2, S.DIR: d}
            for single in _placements(SMALL_ITEMS, OPEN_RECEIVERS)
            for obj2 in PUSHABLE
            if obj2 not in (single[S.OBJ], single[S.PLACE])
            for d in PushDirection
        ]
        return _sample(combos, pattern.value)
    first, second = ARTICULATED
    return [{S.FIX: first, S.FIX2: second}, {S.FIX: second, S.FIX2: first}]


# wordings per goal: (train, held-out); patterns with few goals get more wordings each
WORDINGS: dict[Pattern, tuple[int, int]] = {
    Pattern.PICK_PLACE: (3, 1),
    Pattern.OPEN: (6, 3),
    Pattern.CLOSE: (6, 3),
    Pattern.STACK: (6, 2),
    Pattern.SPATIAL: (2, 1),
    Pattern.PUSH: (3, 1),
    Pattern.PLACE_CLOSE: (3, 1),
    Pattern.OPEN_PLACE: (3, 1),
    Pattern.OPEN_PLACE_CLOSE: (3, 1),
    Pattern.OPEN_PLACE_TWO_CLOSE: (2, 1),
    Pattern.TWO_PLACES: (2, 1),
    Pattern.PLACE_PUSH: (2, 1),
    Pattern.OPEN_BOTH: (3, 1),
    Pattern.CLOSE_BOTH: (3, 1),
    Pattern.OPEN_AND_CLOSE: (3, 1),
}


def _slug(slots: Slots) -> str:
    return "-".join(slots[slot].value for slot in Slot if slot in slots)


def generate_tasks() -> list[Task]:
    """Every benchmark task, in a fixed order (patterns, then goals, then wordings); texts are distinct."""
    tasks: list[Task] = []
    seen: set[str] = set()
    numbers: Counter[str] = Counter()  # wordings kept per goal, for the ids
    for pattern in Pattern:
        n_train, n_held_out = WORDINGS[pattern]
        for slots in _goals(pattern):
            plan = PLANS[pattern](slots)
            slug = _slug(slots)
            wordings = phrasings(pattern, slots, n_train=n_train, n_held_out=n_held_out, seed=f"{pattern}/{slug}")
            for instruction in wordings:
                if instruction.text in seen:
                    continue
                seen.add(instruction.text)
                goal_id = f"{pattern.value}/{slug}"
                tasks.append(
                    Task(
                        id=f"{goal_id}/{numbers[goal_id]}",
                        family=PATTERN_FAMILY[pattern],
                        pattern=pattern,
                        instruction=instruction.text,
                        plan=plan,
                        success=success_of(plan),
                        requirements=requirements_of(plan, dict(instruction.colors)),
                        template_id=instruction.template_id,
                        phrase_keys=instruction.phrase_keys,
                    )
                )
                numbers[goal_id] += 1
    return tasks


def split(tasks: Sequence[Task]) -> tuple[list[Task], list[Task]]:
    """(train, held_out): held-out tasks use a template or synonym that no train task uses."""
    train = [task for task in tasks if not task.held_out]
    held_out = [task for task in tasks if task.held_out]
    return train, held_out


def family_counts(tasks: Sequence[Task]) -> dict[TaskFamily, int]:
    """Number of tasks per family, in :class:`TaskFamily` order."""
    counts = Counter(task.family for task in tasks)
    return {family: counts[family] for family in TaskFamily}


# --- registry ------------------------------------------------------------------------------------------


@functools.cache
def _registry() -> Mapping[str, Task]:
    tasks = generate_tasks()
    registry = {task.id: task for task in tasks}
    if len(registry) != len(tasks):
        raise RuntimeError("task ids are not unique")  # a bug in _slug or the numbering, never user input
    return MappingProxyType(registry)


@functools.cache
def _by_instruction() -> Mapping[str, Task]:
    return MappingProxyType({task.instruction: task for task in _registry().values()})


def all_tasks() -> tuple[Task, ...]:
    """Every task (cached :func:`generate_tasks`)."""
    return tuple(_registry().values())


def task_ids() -> tuple[str, ...]:
    return tuple(_registry())


def get_task(task_id: str) -> Task:
    """The task with this id; :class:`UnknownTaskError` with the closest ids and the id scheme otherwise."""
    registry = _registry()
    if task_id in registry:
        return registry[task_id]
    close = difflib.get_close_matches(task_id, registry, n=5, cutoff=0.5)
    patterns = sorted({task_id.split("/", 1)[0] for task_id in registry})
    raise UnknownTaskError(
        f"unknown task {task_id!r}; closest: {close or 'none'}; ids are <pattern>/<slots>/<n> with patterns "
        f"{patterns} ({len(registry)} tasks, list them with task_ids())"
    )


def task_for_instruction(text: str) -> Task:
    """The task whose instruction is ``text`` (whitespace- and case-insensitive)."""
    normalized = " ".join(text.lower().split())
    by_text = _by_instruction()
    if normalized in by_text:
        return by_text[normalized]
    close = difflib.get_close_matches(normalized, by_text, n=3, cutoff=0.6)
    raise UnknownTaskError(f"no task has the instruction {text!r}; closest: {close or 'none'}")


def tasks_by_family(family: TaskFamily | str) -> tuple[Task, ...]:
    """Every task of one family; ``ValueError`` listing the families if unknown."""
    try:
        wanted = TaskFamily(family)
    except ValueError:
        raise ValueError(f"unknown task family {family!r}; families: {[f.value for f in TaskFamily]}") from None
    return tuple(task for task in _registry().values() if task.family is wanted)
