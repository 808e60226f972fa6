"""The kitchen's words: objects, places, relations, push directions and colours, with their synonyms.

Everything that names a thing in the benchmark comes from here, so that the scene, the instruction
generator, the subtask grammar and the success predicates agree on one spelling. Canonical names are single
lowercase words and equal the names the scene uses (``ObjectState.name``, ``SceneState.regions`` and
``SceneState.articulations`` keys).

Frame of every spatial word: the robot base frame (see :mod:`tiers.sim.scene_state`), x away from the robot
over the counter, y to the robot's left, z up. Words are from the robot's point of view, as a person standing
behind the robot would say them:

====================  =====================  ====================================================
word                  direction              note
====================  =====================  ====================================================
left (of)             +y
right (of)            -y
in front of           -x                     between the anchor and the robot
behind                +x                     further from the robot than the anchor
push forward          +x                     away from the robot
push backward         -x                     toward the robot
next to               any horizontal         near, on the same level, footprints apart
====================  =====================  ====================================================

Synonyms come in two groups: ``words`` (the first is the canonical one) appear in the train split;
``held_out_words`` only ever appear in held-out instructions (see :mod:`tiers.sim.kitchen.instructions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

import numpy as np
from numpy.typing import NDArray


class ObjectName(StrEnum):
    """Movable objects of the kitchen; the value is ``ObjectState.name``."""

    CUP = "cup"
    BOWL = "bowl"
    PLATE = "plate"
    APPLE = "apple"
    BANANA = "banana"
    SPONGE = "sponge"
    CAN = "can"
    BOX = "box"
    BASKET = "basket"


class FixtureName(StrEnum):
    """Fixed parts of the kitchen; the value is the ``SceneState.regions`` key (and articulation name)."""

    COUNTER = "counter"
    DRAWER = "drawer"
    CABINET = "cabinet"
    SINK = "sink"
    SHELF = "shelf"


class Relation(StrEnum):
    """Where a placed object ends up relative to its target (a fixture region or another object)."""

    IN = "in"
    ON = "on"
    LEFT_OF = "left_of"
    RIGHT_OF = "right_of"
    IN_FRONT_OF = "in_front_of"
    BEHIND = "behind"
    NEXT_TO = "next_to"


class PushDirection(StrEnum):
    """Horizontal directions of a push, in the base frame (see :data:`PUSH_VECTORS`)."""

    LEFT = "left"
    RIGHT = "right"
    FORWARD = "forward"
    BACKWARD = "backward"


class Size(IntEnum):
    """Coarse object size; a receiver takes objects up to its ``max_load``."""

    SMALL = 1  # fits in a hand: cup, apple, banana, sponge, can, box
    MEDIUM = 2  # the bowl and the plate
    LARGE = 3  # the basket


CONTAINMENT_RELATIONS = frozenset({Relation.IN, Relation.ON})
SPATIAL_RELATIONS = frozenset(
    {Relation.LEFT_OF, Relation.RIGHT_OF, Relation.IN_FRONT_OF, Relation.BEHIND, Relation.NEXT_TO}
)

# Canonical phrase of each relation, used by the subtask grammar (the first entry of RELATION_WORDS).
RELATION_TEXT: dict[Relation, str] = {
    Relation.IN: "in",
    Relation.ON: "on",
    Relation.LEFT_OF: "to the left of",
    Relation.RIGHT_OF: "to the right of",
    Relation.IN_FRONT_OF: "in front of",
    Relation.BEHIND: "behind",
    Relation.NEXT_TO: "next to",
}

# Unit vector (x, y) in the base frame of each directional relation: where the object lies seen from its anchor.
RELATION_VECTORS: dict[Relation, NDArray[np.float64]] = {
    Relation.LEFT_OF: np.array([0.0, 1.0]),
    Relation.RIGHT_OF: np.array([0.0, -1.0]),
    Relation.IN_FRONT_OF: np.array([-1.0, 0.0]),
    Relation.BEHIND: np.array([1.0, 0.0]),
}

# Canonical phrase of each push direction (subtask grammar) and its unit vector (x, y) in the base frame.
PUSH_TEXT: dict[PushDirection, str] = {
    PushDirection.LEFT: "to the left",
    PushDirection.RIGHT: "to the right",
    PushDirection.FORWARD: "forward",
    PushDirection.BACKWARD: "backward",
}
PUSH_VECTORS: dict[PushDirection, NDArray[np.float64]] = {
    PushDirection.LEFT: np.array([0.0, 1.0]),
    PushDirection.RIGHT: np.array([0.0, -1.0]),
    PushDirection.FORWARD: np.array([1.0, 0.0]),
    PushDirection.BACKWARD: np.array([-1.0, 0.0]),
}


@dataclass(frozen=True)
class Words:
    """Surface forms of one canonical name or phrase.

    Attributes:
        train: forms the train split may use; ``train[0]`` is the canonical form.
        held_out: forms only held-out instructions use (never seen in training).
    """

    train: tuple[str, ...]
    held_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("Words needs at least one train form (the canonical one)")
        overlap = set(self.train) & set(self.held_out)
        if overlap:
            raise ValueError(f"forms {sorted(overlap)} are both train and held-out")

    @property
    def canonical(self) -> str:
        return self.train[0]


@dataclass(frozen=True)
class ObjectInfo:
    """What the language and the predicates need to know about a movable object.

    Attributes:
        name: canonical name, equal to ``ObjectState.name``.
        nouns: what an instruction may call it ("mug" for the cup).
        size: coarse size; decides which receivers it fits.
        colors: colour words this object may have in an episode (the layout sampler draws from them).
        accepts: relations under which other objects can be put into/onto it as a container (empty: not a
            container; stacking on flat-topped objects is listed in :data:`STACKS` instead).
        max_load: largest size it receives (None when ``accepts`` is empty).
        container: whether it is a container (bowl, plate, basket): "in"/"on" it is judged from its bounds.
        pushable: whether pushing it along the counter is sensible (flat-bottomed, does not roll or tip).
    """

    name: ObjectName
    nouns: Words
    size: Size
    colors: tuple[str, ...]
    accepts: frozenset[Relation] = frozenset()
    max_load: Size | None = None
    container: bool = False
    pushable: bool = False


@dataclass(frozen=True)
class FixtureInfo:
    """A fixed part of the kitchen.

    Attributes:
        name: canonical name, equal to its ``SceneState.regions`` key.
        nouns: what an instruction may call it.
        accepts: relations under which objects can be put in/on it.
        max_load: largest object size it receives.
        articulated: whether it opens and closes (a ``SceneState.articulations`` entry of the same name).
    """

    name: FixtureName
    nouns: Words
    accepts: frozenset[Relation]
    max_load: Size
    articulated: bool = False


_IN = frozenset({Relation.IN})
_ON = frozenset({Relation.ON})

OBJECTS: dict[ObjectName, ObjectInfo] = {
    info.name: info
    for info in (
        ObjectInfo(ObjectName.CUP, Words(("cup", "mug"), ("coffee mug",)), Size.SMALL,
                   ("red", "blue", "white", "green", "yellow")),
        ObjectInfo(ObjectName.BOWL, Words(("bowl",), ("serving bowl",)), Size.MEDIUM,
                   ("white", "blue", "red", "green"), _IN, Size.SMALL, container=True, pushable=True),
        ObjectInfo(ObjectName.PLATE, Words(("plate",), ("dinner plate",)), Size.MEDIUM,
                   ("white", "blue", "yellow"), _ON, Size.SMALL, container=True),
        ObjectInfo(ObjectName.APPLE, Words(("apple",)), Size.SMALL, ("red", "green", "yellow")),
        ObjectInfo(ObjectName.BANANA, Words(("banana",)), Size.SMALL, ("yellow", "green")),
        ObjectInfo(ObjectName.SPONGE, Words(("sponge", "dish sponge"), ("scrubber",)), Size.SMALL,
                   ("yellow", "green", "pink", "blue"), pushable=True),
        ObjectInfo(ObjectName.CAN, Words(("can", "soda can"), ("tin can",)), Size.SMALL,
                   ("red", "blue", "green", "orange"), pushable=True),
        ObjectInfo(ObjectName.BOX, Words(("box", "carton"), ("cardboard box",)), Size.SMALL,
                   ("red", "blue", "white", "orange"), pushable=True),
        ObjectInfo(ObjectName.BASKET, Words(("basket",), ("wicker basket",)), Size.LARGE,
                   ("white", "grey"), _IN, Size.SMALL, container=True, pushable=True),
    )
}  # fmt: skip

FIXTURES: dict[FixtureName, FixtureInfo] = {
    info.name: info
    for info in (
        FixtureInfo(FixtureName.COUNTER, Words(("counter", "countertop")), _ON, Size.LARGE),
        FixtureInfo(FixtureName.DRAWER, Words(("drawer", "kitchen drawer"), ("sliding drawer",)), _IN, Size.SMALL,
                    articulated=True),
        FixtureInfo(FixtureName.CABINET, Words(("cabinet", "cupboard"), ("kitchen cabinet",)), _IN, Size.SMALL,
                    articulated=True),
        FixtureInfo(FixtureName.SINK, Words(("sink",), ("kitchen sink",)), _IN, Size.MEDIUM),
        FixtureInfo(FixtureName.SHELF, Words(("shelf",), ("wall shelf",)), _ON, Size.MEDIUM),
    )
}  # fmt: skip

ARTICULATED = tuple(name for name, info in FIXTURES.items() if info.articulated)

# Which objects may be stacked on which base (stack family): flat small items on each other, the bowl on the
# plate. A stack base accepts "on" for these tops only; a container's ``max_load`` does not limit stacking.
STACKS: dict[ObjectName, tuple[ObjectName, ...]] = {
    ObjectName.BOX: (ObjectName.CAN, ObjectName.SPONGE),
    ObjectName.SPONGE: (ObjectName.CAN, ObjectName.BOX),
    ObjectName.PLATE: (ObjectName.BOWL,),
}

# Phrases per relation and push direction (train[0] is the canonical text of the subtask grammar).
RELATION_WORDS: dict[Relation, Words] = {
    Relation.IN: Words(("in", "into", "inside")),
    Relation.ON: Words(("on", "onto")),
    Relation.LEFT_OF: Words(("to the left of",), ("on the left side of",)),
    Relation.RIGHT_OF: Words(("to the right of",), ("on the right side of",)),
    Relation.IN_FRONT_OF: Words(("in front of",)),
    Relation.BEHIND: Words(("behind",), ("in back of",)),
    Relation.NEXT_TO: Words(("next to", "beside"), ("alongside",)),
}
PUSH_WORDS: dict[PushDirection, Words] = {
    PushDirection.LEFT: Words(("to the left", "left"), ("leftward",)),
    PushDirection.RIGHT: Words(("to the right", "right"), ("rightward",)),
    PushDirection.FORWARD: Words(("forward", "away from you"), ("further away",)),
    PushDirection.BACKWARD: Words(("backward", "toward you"), ("closer to you",)),
}

COLORS = tuple(sorted({color for info in OBJECTS.values() for color in info.colors}))

PlaceName = ObjectName | FixtureName


def _check_tables() -> None:
    """Fail at import if the tables disagree with the grammar (canonical forms must match the grammar's)."""
    for relation, text in RELATION_TEXT.items():
        if RELATION_WORDS[relation].canonical != text:
            raise ValueError(f"RELATION_WORDS[{relation}] must start with the canonical {text!r}")
    for direction, text in PUSH_TEXT.items():
        if PUSH_WORDS[direction].canonical != text:
            raise ValueError(f"PUSH_WORDS[{direction}] must start with the canonical {text!r}")
    infos: list[ObjectInfo | FixtureInfo] = [*OBJECTS.values(), *FIXTURES.values()]
    for info in infos:
        if info.nouns.canonical != info.name.value:
            raise ValueError(f"the first noun of {info.name} must be its name, got {info.nouns.canonical!r}")
        if bool(info.accepts) != (info.max_load is not None):
            raise ValueError(f"{info.name}: accepts and max_load must be set together")


_check_tables()


def object_info(name: str) -> ObjectInfo:
    """The :class:`ObjectInfo` of ``name``; ``ValueError`` listing the valid names if unknown."""
    try:
        return OBJECTS[ObjectName(name)]
    except ValueError:
        raise ValueError(f"unknown object {name!r}; valid objects: {[o.value for o in ObjectName]}") from None


def place_kind(name: str) -> ObjectInfo | FixtureInfo:
    """The info of a place that can be a placement target (a fixture or a movable object)."""
    if name in FIXTURES:
        return FIXTURES[FixtureName(name)]
    if name in OBJECTS:
        return OBJECTS[ObjectName(name)]
    valid = [f.value for f in FixtureName] + [o.value for o in ObjectName]
    raise ValueError(f"unknown place {name!r}; valid places: {valid}")


def accepted_relations(target: str) -> frozenset[Relation]:
    """Relations a ``place`` subtask may use with ``target``.

    Fixtures accept their containment relation only. Objects accept their containment relation (if they
    are containers), "on" if they are a stack base (:data:`STACKS`), and every spatial relation (any object
    can be an anchor).
    """
    info = place_kind(target)
    if isinstance(info, FixtureInfo):
        return info.accepts
    stack = frozenset({Relation.ON}) if info.name in STACKS else frozenset()
    return info.accepts | stack | SPATIAL_RELATIONS


def fits(obj: str, relation: Relation, target: str) -> bool:
    """Whether putting ``obj`` ``relation`` ``target`` is physically sensible.

    Spatial relations fit any two distinct objects. Containment needs the pair to be listed in
    :data:`STACKS`, or the target to accept the relation as a container or fixture and take the object's size.
    """
    if obj == target or relation not in accepted_relations(target):
        return False
    if relation in SPATIAL_RELATIONS:
        return True
    info = place_kind(target)
    size = object_info(obj).size
    stack = target in OBJECTS and ObjectName(obj) in STACKS.get(ObjectName(target), ())
    container = relation in info.accepts and info.max_load is not None and size <= info.max_load
    return stack or container
