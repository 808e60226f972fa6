"""Instruction phrasing: templates per task pattern, synonym/colour realisation, and the held-out phrasings.

An instruction is a :class:`Template` of its :class:`Pattern` with every slot filled by a phrase: a noun
phrase for an object or fixture ("the red mug", "the cupboard"), a relation phrase ("into", "to the left of")
or a push phrase ("away from you"). Every phrase has a key (``noun:cup=mug``) so the split can be checked.

Held-out phrasings: templates marked ``held_out`` and the ``held_out`` words of
:mod:`tiers.commands.vocabulary`. A train instruction uses neither; a held-out instruction uses at least
one (:func:`is_held_out`). Colour adjectives are not part of the split: both splits use them.

Sampling is deterministic: :func:`phrasings` draws from ``random.Random(seed)`` with a string seed, which
Python hashes with SHA-512, so the result does not depend on ``PYTHONHASHSEED`` or the platform.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from tiers.commands.vocabulary import (
    FIXTURES,
    OBJECTS,
    PUSH_WORDS,
    RELATION_WORDS,
    FixtureName,
    ObjectName,
    PushDirection,
    Relation,
    Words,
)


class Pattern(StrEnum):
    """What an instruction asks for, independent of wording; each has its own templates and slots."""

    PICK_PLACE = "pick_place"
    OPEN = "open"
    CLOSE = "close"
    STACK = "stack"
    SPATIAL = "spatial"
    PUSH = "push"
    PLACE_CLOSE = "place_close"
    OPEN_PLACE = "open_place"
    OPEN_PLACE_CLOSE = "open_place_close"
    OPEN_PLACE_TWO_CLOSE = "open_place_two_close"
    TWO_PLACES = "two_places"
    PLACE_PUSH = "place_push"
    OPEN_BOTH = "open_both"
    CLOSE_BOTH = "close_both"
    OPEN_AND_CLOSE = "open_and_close"


class Slot(StrEnum):
    """Template fields. Objects/fixtures get noun phrases; PREP/REL relation phrases; DIR push phrases."""

    # definition order is the order of values in task ids ("apple-in-drawer")
    OBJ = "obj"
    PREP = "prep"
    REL = "rel"
    BASE = "base"
    PLACE = "place"
    FIX = "fix"
    OBJ2 = "obj2"
    PREP2 = "prep2"
    PLACE2 = "place2"
    DIR = "dir"
    FIX2 = "fix2"


SlotValue = ObjectName | FixtureName | Relation | PushDirection

# Which slots each pattern fills. PREP/PREP2 may be left out of a template whose wording implies them ("inside").
PATTERN_SLOTS: dict[Pattern, frozenset[Slot]] = {
    Pattern.PICK_PLACE: frozenset({Slot.OBJ, Slot.PREP, Slot.PLACE}),
    Pattern.OPEN: frozenset({Slot.FIX}),
    Pattern.CLOSE: frozenset({Slot.FIX}),
    Pattern.STACK: frozenset({Slot.OBJ, Slot.BASE}),
    Pattern.SPATIAL: frozenset({Slot.OBJ, Slot.REL, Slot.BASE}),
    Pattern.PUSH: frozenset({Slot.OBJ, Slot.DIR}),
    Pattern.PLACE_CLOSE: frozenset({Slot.OBJ, Slot.PREP, Slot.FIX}),
    Pattern.OPEN_PLACE: frozenset({Slot.FIX, Slot.OBJ, Slot.PREP}),
    Pattern.OPEN_PLACE_CLOSE: frozenset({Slot.FIX, Slot.OBJ, Slot.PREP}),
    Pattern.OPEN_PLACE_TWO_CLOSE: frozenset({Slot.FIX, Slot.OBJ, Slot.OBJ2, Slot.PREP}),
    Pattern.TWO_PLACES: frozenset({Slot.OBJ, Slot.PREP, Slot.PLACE, Slot.OBJ2, Slot.PREP2, Slot.PLACE2}),
    Pattern.PLACE_PUSH: frozenset({Slot.OBJ, Slot.PREP, Slot.PLACE, Slot.OBJ2, Slot.DIR}),
    Pattern.OPEN_BOTH: frozenset({Slot.FIX, Slot.FIX2}),
    Pattern.CLOSE_BOTH: frozenset({Slot.FIX, Slot.FIX2}),
    Pattern.OPEN_AND_CLOSE: frozenset({Slot.FIX, Slot.FIX2}),
}
_OPTIONAL_SLOTS = frozenset({Slot.PREP, Slot.PREP2})


@dataclass(frozen=True)
class Template:
    """One wording of a pattern; ``text`` has ``{slot}`` fields. ``id`` is ``<pattern>.<name>``."""

    id: str
    pattern: Pattern
    text: str
    held_out: bool = False


def _templates(pattern: Pattern, train: tuple[str, ...], held_out: tuple[str, ...]) -> tuple[Template, ...]:
    return tuple(
        Template(f"{pattern.value}.{'h' if is_held else 't'}{index}", pattern, text, is_held)
        for is_held, texts in ((False, train), (True, held_out))
        for index, text in enumerate(texts)
    )


TEMPLATES: dict[Pattern, tuple[Template, ...]] = {
    pattern: _templates(pattern, train, held_out)
    for pattern, train, held_out in (
        (
            Pattern.PICK_PLACE,
            (
                "put {obj} {prep} {place}",
                "place {obj} {prep} {place}",
                "pick up {obj} and put it {prep} {place}",
                "move {obj} {prep} {place}",
                "take {obj} and place it {prep} {place}",
            ),
            ("grab {obj} and set it {prep} {place}", "{obj} goes {prep} {place}", "please put {obj} {prep} {place}"),
        ),
        (
            Pattern.OPEN,
            ("open {fix}", "pull {fix} open", "open up {fix}"),
            ("can you open {fix}", "make sure {fix} is open"),
        ),
        (
            Pattern.CLOSE,
            ("close {fix}", "shut {fix}", "push {fix} closed"),
            ("can you close {fix}", "make sure {fix} is closed"),
        ),
        (
            Pattern.STACK,
            ("stack {obj} on {base}", "put {obj} on top of {base}", "place {obj} on top of {base}"),
            ("set {obj} on top of {base}", "balance {obj} on top of {base}"),
        ),
        (
            Pattern.SPATIAL,
            ("put {obj} {rel} {base}", "place {obj} {rel} {base}", "move {obj} {rel} {base}"),
            ("set {obj} down {rel} {base}", "{obj} should go {rel} {base}"),
        ),
        (
            Pattern.PUSH,
            ("push {obj} {dir}", "slide {obj} {dir}", "nudge {obj} {dir}"),
            ("give {obj} a push {dir}", "shove {obj} {dir}"),
        ),
        (
            Pattern.PLACE_CLOSE,
            (
                "put {obj} {prep} {fix} and close it",
                "place {obj} {prep} {fix}, then shut it",
                "put {obj} {prep} {fix} and then close {fix}",
            ),
            ("drop {obj} {prep} {fix} and shut it afterwards", "after putting {obj} {prep} {fix}, close it"),
        ),
        (
            Pattern.OPEN_PLACE,
            (
                "open {fix} and put {obj} {prep} it",
                "open {fix}, then place {obj} {prep} it",
                "open {fix} and put {obj} inside",
            ),
            ("get {fix} open so you can put {obj} {prep} it", "first open {fix}, then put {obj} {prep} it"),
        ),
        (
            Pattern.OPEN_PLACE_CLOSE,
            (
                "open {fix}, put {obj} inside, then close it",
                "open {fix}, put {obj} {prep} it, then close it",
                "open {fix}, place {obj} {prep} it and shut it",
            ),
            (
                "first open {fix}, then put {obj} {prep} it, and finally close it",
                "get {fix} open, put {obj} {prep} it, then shut it again",
            ),
        ),
        (
            Pattern.OPEN_PLACE_TWO_CLOSE,
            (
                "open {fix}, put {obj} {prep} it, put {obj2} {prep} it too, then close it",
                "open {fix}, place {obj} and {obj2} inside, then close it",
            ),
            ("first open {fix}, put {obj} and {obj2} {prep} it, and finally shut it",),
        ),
        (
            Pattern.TWO_PLACES,
            (
                "put {obj} {prep} {place} and {obj2} {prep2} {place2}",
                "put {obj} {prep} {place}, then put {obj2} {prep2} {place2}",
                "place {obj} {prep} {place} and then {obj2} {prep2} {place2}",
            ),
            (
                "first put {obj} {prep} {place}, then {obj2} {prep2} {place2}",
                "{obj} goes {prep} {place} and {obj2} goes {prep2} {place2}",
            ),
        ),
        (
            Pattern.PLACE_PUSH,
            ("put {obj} {prep} {place}, then push {obj2} {dir}", "place {obj} {prep} {place} and push {obj2} {dir}"),
            (
                "put {obj} {prep} {place} and then give {obj2} a push {dir}",
                "first put {obj} {prep} {place}, then shove {obj2} {dir}",
            ),
        ),
        (
            Pattern.OPEN_BOTH,
            ("open {fix} and {fix2}", "open both {fix} and {fix2}", "open {fix}, then open {fix2}"),
            ("can you open {fix} and {fix2}",),
        ),
        (
            Pattern.CLOSE_BOTH,
            ("close {fix} and {fix2}", "shut {fix} and {fix2}", "close {fix}, then close {fix2}"),
            ("make sure {fix} and {fix2} are closed",),
        ),
        (
            Pattern.OPEN_AND_CLOSE,
            ("open {fix} and close {fix2}", "open {fix}, then shut {fix2}", "close {fix2} after opening {fix}"),
            ("can you open {fix} and close {fix2}",),
        ),
    )
}  # fmt: skip

TEMPLATE_BY_ID: dict[str, Template] = {t.id: t for templates in TEMPLATES.values() for t in templates}
HELD_OUT_TEMPLATE_IDS = frozenset(t.id for t in TEMPLATE_BY_ID.values() if t.held_out)


def _check_templates() -> None:
    """Fail at import on a template with unknown/missing fields or a wording used twice."""
    texts: dict[str, str] = {}
    for pattern, templates in TEMPLATES.items():
        allowed = PATTERN_SLOTS[pattern]
        for template in templates:
            fields = {Slot(name) for _, name, _, _ in string.Formatter().parse(template.text) if name}
            if not (allowed - _OPTIONAL_SLOTS) <= fields <= allowed:
                raise ValueError(f"template {template.id} {template.text!r} must use slots {sorted(allowed)}")
            if template.text in texts:
                raise ValueError(f"templates {texts[template.text]} and {template.id} share the text {template.text!r}")
            texts[template.text] = template.id
    if set(TEMPLATES) != set(Pattern):
        raise ValueError(f"patterns without templates: {sorted(set(Pattern) - set(TEMPLATES))}")


_check_templates()


# --- phrases ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phrase:
    """One surface form filling a slot. ``key`` (``<kind>:<canonical>=<text>``) identifies it in the split."""

    kind: str  # "noun", "rel" or "dir"
    canonical: str
    text: str
    held_out: bool

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.canonical}={self.text}"


def _phrases(kind: str, canonical: str, words: Words) -> tuple[Phrase, ...]:
    return tuple(Phrase(kind, canonical, text, False) for text in words.train) + tuple(
        Phrase(kind, canonical, text, True) for text in words.held_out
    )


def slot_phrases(value: SlotValue) -> tuple[Phrase, ...]:
    """Every surface form of a slot value, train forms first."""
    if isinstance(value, ObjectName):
        return _phrases("noun", value.value, OBJECTS[value].nouns)
    if isinstance(value, FixtureName):
        return _phrases("noun", value.value, FIXTURES[value].nouns)
    if isinstance(value, Relation):
        return _phrases("rel", value.value, RELATION_WORDS[value])
    return _phrases("dir", value.value, PUSH_WORDS[value])


HELD_OUT_PHRASE_KEYS = frozenset(
    phrase.key
    for values in (ObjectName, FixtureName, Relation, PushDirection)
    for value in values
    for phrase in slot_phrases(value)
    if phrase.held_out
)
HELD_OUT_WORDS = frozenset(key.split("=", 1)[1] for key in HELD_OUT_PHRASE_KEYS)


def is_held_out(template_id: str, phrase_keys: tuple[str, ...]) -> bool:
    """Whether an instruction with this template and these phrases belongs to the held-out split."""
    return template_id in HELD_OUT_TEMPLATE_IDS or any(key in HELD_OUT_PHRASE_KEYS for key in phrase_keys)


# --- realisation -------------------------------------------------------------------------------------------

COLOR_PROBABILITY = 1 / 3  # chance that an object's noun phrase carries its colour word


@dataclass(frozen=True)
class Instruction:
    """One realised instruction.

    Attributes:
        text: lowercase, no final punctuation ("put the red mug into the drawer").
        template_id: the :class:`Template` used.
        phrase_keys: keys of the phrases filling its slots, in slot order.
        colors: (object, colour) pairs for the objects the text names by colour; the scene must match them.
    """

    text: str
    template_id: str
    phrase_keys: tuple[str, ...]
    colors: tuple[tuple[str, str], ...]

    @property
    def held_out(self) -> bool:
        return is_held_out(self.template_id, self.phrase_keys)


def _draw(
    template: Template,
    slots: Mapping[Slot, SlotValue],
    rng: random.Random,
    allow_held_out: bool,
    force_held_out: Slot | None,
    colors: dict[ObjectName, str],
) -> Instruction:
    filled: dict[str, str] = {}
    keys: list[str] = []
    named_colors: list[tuple[str, str]] = []
    nouns: dict[SlotValue, tuple[Phrase, str]] = {}  # a thing named twice keeps its wording
    for slot in (s for s in Slot if s in slots):
        value = slots[slot]
        if value in nouns:
            phrase, text = nouns[value]
        else:
            options = [p for p in slot_phrases(value) if allow_held_out or not p.held_out]
            if slot == force_held_out:
                options = [p for p in options if p.held_out]
            phrase = rng.choice(options)
            text = phrase.text
            if isinstance(value, ObjectName | FixtureName):
                if isinstance(value, ObjectName) and rng.random() < COLOR_PROBABILITY:
                    text = f"{colors.setdefault(value, rng.choice(OBJECTS[value].colors))} {text}"
                text = f"the {text}"
                nouns[value] = phrase, text
        filled[slot.value] = text
        if f"{{{slot.value}}}" in template.text:
            keys.append(phrase.key)
            if isinstance(value, ObjectName) and value in colors and text.startswith(f"the {colors[value]} "):
                named_colors.append((value.value, colors[value]))
    return Instruction(
        text=" ".join(template.text.format(**filled).split()),
        template_id=template.id,
        phrase_keys=tuple(keys),
        colors=tuple(sorted(set(named_colors))),
    )


def phrasings(
    pattern: Pattern,
    slots: Mapping[Slot, SlotValue],
    *,
    n_train: int,
    n_held_out: int,
    seed: str,
) -> list[Instruction]:
    """Up to ``n_train`` distinct train and ``n_held_out`` distinct held-out wordings of one goal.

    Held-out wordings alternate between a held-out template (any words) and a train template with one slot
    forced to a held-out word (when some slot has one). Fewer come back when the goal has fewer wordings.
    Within one goal an object keeps one colour, so the colour requirement of each wording is consistent.

    Raises:
        ValueError: ``slots`` does not fill exactly the pattern's slots.
    """
    if set(slots) != PATTERN_SLOTS[pattern]:
        raise ValueError(f"{pattern} needs slots {sorted(PATTERN_SLOTS[pattern])}, got {sorted(slots)}")
    rng = random.Random(seed)
    colors: dict[ObjectName, str] = {}
    train_templates = [t for t in TEMPLATES[pattern] if not t.held_out]
    held_templates = [t for t in TEMPLATES[pattern] if t.held_out]
    word_slots = sorted(s for s, v in slots.items() if any(p.held_out for p in slot_phrases(v)))
    results: dict[str, Instruction] = {}

    def collect(count: int, held: bool) -> None:
        wanted = len(results) + count
        for attempt in range(40 * count):
            if len(results) >= wanted:
                return
            if not held:
                instruction = _draw(rng.choice(train_templates), slots, rng, False, None, colors)
            elif attempt % 2 == 0 or not word_slots:
                instruction = _draw(rng.choice(held_templates), slots, rng, True, None, colors)
            else:
                forced = rng.choice(word_slots)
                template = rng.choice(train_templates)
                if f"{{{forced.value}}}" not in template.text:
                    continue
                instruction = _draw(template, slots, rng, True, forced, colors)
            results.setdefault(instruction.text, instruction)

    collect(n_train, held=False)
    collect(n_held_out, held=True)
    return list(results.values())
