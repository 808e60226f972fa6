"""The canonical subtask grammar: what planners emit, what the scripted expert executes, what gold plans hold.

A :class:`Subtask` is one step of a plan. Its canonical text is the only spelling the grammar accepts, with
canonical names only (no synonyms, no colours):

=======  =================================================  ====================================
action   canonical text                                     fields
=======  =================================================  ====================================
pick     ``pick up the apple``                              object
place    ``put the apple in the drawer``                    object, relation, target
place    ``put the cup to the left of the bowl``            (relations: in, on, to the left of,
                                                            to the right of, in front of, behind,
                                                            next to)
open     ``open the drawer``                                object (an articulated fixture)
close    ``close the cabinet``                              object (an articulated fixture)
push     ``push the box to the left``                       object, direction (to the left, to the
                                                            right, forward, backward)
=======  =================================================  ====================================

``Subtask.parse(subtask.text) == subtask`` for every valid subtask; :func:`Subtask.parse` is strict (it
collapses runs of whitespace, nothing else) and its errors quote the text it could not read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from tiers.commands.vocabulary import (
    ARTICULATED,
    PUSH_TEXT,
    RELATION_TEXT,
    ObjectName,
    PushDirection,
    Relation,
    accepted_relations,
)
from tiers.core.errors import ContractError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand


class Action(StrEnum):
    """The verb of a subtask."""

    PICK = "pick"
    PLACE = "place"
    OPEN = "open"
    CLOSE = "close"
    PUSH = "push"


class SubtaskError(ContractError):
    """A subtask text or field does not fit the grammar; the message quotes the offending text or value."""


@dataclass(frozen=True)
class Subtask:
    """One canonical plan step.

    Attributes:
        action: the verb.
        object: the movable object acted on (pick, place, push) or the articulated fixture (open, close).
        target: where a ``place`` puts the object: a fixture ("drawer") or another object ("bowl").
        relation: how a ``place`` puts it relative to ``target`` (in, on, or a spatial relation; spatial
            relations are in the base frame, see :mod:`tiers.commands.vocabulary`).
        direction: which way a ``push`` moves the object, in the base frame.
    """

    action: Action
    object: str
    target: str | None = None
    relation: Relation | None = None
    direction: PushDirection | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", _member(Action, self.action, "action"))
        if self.relation is not None:
            object.__setattr__(self, "relation", _member(Relation, self.relation, "relation"))
        if self.direction is not None:
            object.__setattr__(self, "direction", _member(PushDirection, self.direction, "direction"))
        self._validate()

    def _validate(self) -> None:
        place = self.action is Action.PLACE
        push = self.action is Action.PUSH
        if place != (self.target is not None) or place != (self.relation is not None):
            raise SubtaskError(f"{self.action} takes {'a' if place else 'no'} target and relation: {self!r}")
        if push != (self.direction is not None):
            raise SubtaskError(f"{self.action} takes {'a' if push else 'no'} direction: {self!r}")
        if self.action in (Action.OPEN, Action.CLOSE):
            if self.object not in ARTICULATED:
                raise SubtaskError(
                    f"cannot {self.action} {self.object!r}; articulated fixtures: {[a.value for a in ARTICULATED]}"
                )
            return
        if self.object not in set(ObjectName):
            raise SubtaskError(f"unknown object {self.object!r}; valid objects: {[o.value for o in ObjectName]}")
        if place:
            assert self.target is not None and self.relation is not None
            try:
                accepted = accepted_relations(self.target)
            except ValueError as error:
                raise SubtaskError(str(error)) from None
            if self.relation not in accepted:
                valid = sorted(RELATION_TEXT[r] for r in accepted)
                raise SubtaskError(
                    f"the {self.target} does not take {RELATION_TEXT[self.relation]!r}; it takes {valid}"
                )
            if self.target == self.object:
                raise SubtaskError(f"cannot put the {self.object} relative to itself")

    @property
    def text(self) -> str:
        """The canonical text (see the module table)."""
        if self.action is Action.PICK:
            return f"pick up the {self.object}"
        if self.action is Action.PLACE:
            assert self.relation is not None
            return f"put the {self.object} {RELATION_TEXT[self.relation]} the {self.target}"
        if self.action is Action.PUSH:
            assert self.direction is not None
            return f"push the {self.object} {PUSH_TEXT[self.direction]}"
        return f"{self.action.value} the {self.object}"

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str) -> Subtask:
        """Read a canonical subtask text back; raises :class:`SubtaskError` quoting ``text`` if it is not one."""
        normalized = " ".join(str(text).split())
        for pattern, build in _PATTERNS:
            match = pattern.fullmatch(normalized)
            if match is None:
                continue
            try:
                return build(match)
            except SubtaskError as error:
                raise SubtaskError(f"cannot parse subtask {text!r}: {error}") from None
        raise SubtaskError(f"cannot parse subtask {text!r}; canonical forms: {list(CANONICAL_FORMS)}")

    def to_command(self, timestamp: float, source: CommandSource = CommandSource.PLANNER) -> LanguageCommand:
        """This step as a subtask-style :class:`LanguageCommand` (``timestamp`` in s on the runtime clock)."""
        return LanguageCommand(text=self.text, style=CommandStyle.SUBTASK, source=source, timestamp=timestamp)


def parse_plan(texts: list[str] | tuple[str, ...]) -> tuple[Subtask, ...]:
    """Parse a plan given as canonical texts; the error names the step index and its text."""
    steps = []
    for index, text in enumerate(texts):
        try:
            steps.append(Subtask.parse(text))
        except SubtaskError as error:
            raise SubtaskError(f"plan step {index}: {error}") from None
    return tuple(steps)


def plan_text(plan: tuple[Subtask, ...] | list[Subtask]) -> list[str]:
    """The canonical texts of a plan's steps."""
    return [step.text for step in plan]


def _member[E: (Action, Relation, PushDirection)](kind: type[E], value: object, name: str) -> E:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return kind(value)
    except ValueError:
        raise SubtaskError(f"Subtask.{name} must be one of {[m.value for m in kind]}, got {value!r}") from None


_WORD = r"(?P<object>[a-z]+)"
_RELATIONS = "|".join(re.escape(RELATION_TEXT[r]) for r in Relation)
_DIRECTIONS = "|".join(re.escape(PUSH_TEXT[d]) for d in PushDirection)
_RELATION_BY_TEXT = {text: relation for relation, text in RELATION_TEXT.items()}
_DIRECTION_BY_TEXT = {text: direction for direction, text in PUSH_TEXT.items()}

CANONICAL_FORMS = (
    "pick up the <object>",
    "put the <object> <relation> the <target>",
    "open the <fixture>",
    "close the <fixture>",
    "push the <object> <direction>",
)

_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], Subtask]], ...] = (
    (re.compile(rf"pick up the {_WORD}"), lambda m: Subtask(Action.PICK, m["object"])),
    (
        re.compile(rf"put the {_WORD} (?P<relation>{_RELATIONS}) the (?P<target>[a-z]+)"),
        lambda m: Subtask(Action.PLACE, m["object"], m["target"], _RELATION_BY_TEXT[m["relation"]]),
    ),
    (re.compile(rf"(?P<action>open|close) the {_WORD}"), lambda m: Subtask(Action(m["action"]), m["object"])),
    (
        re.compile(rf"push the {_WORD} (?P<direction>{_DIRECTIONS})"),
        lambda m: Subtask(Action.PUSH, m["object"], direction=_DIRECTION_BY_TEXT[m["direction"]]),
    ),
)
