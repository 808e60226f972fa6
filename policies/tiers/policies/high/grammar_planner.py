"""GrammarPlanner: a hand-written rule-based parser of the kitchen's instructions into canonical subtask plans.

It is not a learned or language-model planner: it is the offline baseline every run can use, and a yardstick
for how much of the benchmark a fixed grammar covers. It never sees a gold plan.

What it knows (all from :mod:`tiers.commands.vocabulary`, **train forms only**, so its held-out score is an
honest test of generalisation):

* nouns: the train forms of every object and fixture, and their head words ("soda can" -> "can"), so a new
  modifier in front of a known head ("coffee mug") still resolves; colour words are ignored;
* relations: the train keywords (in, into, inside, on, onto, top, left, right, front, behind, next, beside);
  a spatial keyword wins over a containment one ("on the left side of" is left of), and "in"/"on" resolve to
  the containment relation the target accepts (in the bowl, on the plate);
* push directions: the train stems (left, right, forward, away, backward, toward), matched as word prefixes;
* states: open/opening/opened, close/closed/closing/shut.

How it reads an instruction (no templates): split it into clauses at commas, "and", "then", "so" and "after"
("A after B" runs B first), give each clause a frame from the entities and keywords in it, not from its verb
(so "grab", "shove" or "goes" need no rule):

* an articulated fixture (or "it") with a state word -> open/close it;
* a movable object with a relation and a target (an entity, "it", or nothing after "inside": the last place
  mentioned) -> pick it up and put it there;
* a movable object with a direction and no target -> push it;
* a movable object alone ("take the apple", "place the cup and ...") -> the next place frame's target
  ("place the cup and the can inside") or, if the next frame puts "it" somewhere, that frame's object;
* a fixture alone ("open the drawer and the cabinet") -> the action of the previous frame (or of the next one:
  "make sure the drawer and the cabinet are closed").

Pronouns: "it" before a relation is the last movable object; after a relation or with a state word, the last
place or fixture mentioned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from tiers.commands.recovery import recovery_steps
from tiers.commands.subtasks import Action, Subtask, SubtaskError
from tiers.commands.vocabulary import (
    ARTICULATED,
    COLORS,
    FIXTURES,
    OBJECTS,
    FixtureInfo,
    ObjectInfo,
    ObjectName,
    PushDirection,
    Relation,
    accepted_relations,
)
from tiers.core.errors import ContractError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation


class GrammarParseError(ContractError):
    """An instruction the grammar cannot read; the message quotes it and says which clause failed."""


def _noun_table() -> dict[str, str]:
    """Word -> canonical name, from the train noun forms and their head words."""
    table: dict[str, str] = {}
    infos: list[ObjectInfo | FixtureInfo] = [*OBJECTS.values(), *FIXTURES.values()]
    for info in infos:
        for form in info.nouns.train:
            table[form.split()[-1]] = info.name.value
    return table


NOUNS = _noun_table()
STATE_WORDS = {
    "open": Action.OPEN,
    "opened": Action.OPEN,
    "opening": Action.OPEN,
    "close": Action.CLOSE,
    "closed": Action.CLOSE,
    "closing": Action.CLOSE,
    "shut": Action.CLOSE,
}
SPATIAL_KEYWORDS = {
    "left": Relation.LEFT_OF,
    "right": Relation.RIGHT_OF,
    "front": Relation.IN_FRONT_OF,
    "behind": Relation.BEHIND,
    "next": Relation.NEXT_TO,
    "beside": Relation.NEXT_TO,
}
CONTAINMENT_KEYWORDS = {"in": "in", "into": "in", "inside": "in", "on": "on", "onto": "on", "top": "on"}
DIRECTION_STEMS = {
    "left": PushDirection.LEFT,
    "right": PushDirection.RIGHT,
    "forward": PushDirection.FORWARD,
    "away": PushDirection.FORWARD,
    "backward": PushDirection.BACKWARD,
    "toward": PushDirection.BACKWARD,
}
PICK_WORDS = frozenset({"pick", "take", "grab", "lift"})
SUBJECT_PRONOUNS = frozenset({"you", "i", "we"})  # "can you ..." / "you can put": "can" is a verb there
CLAUSE_BREAK = re.compile(r"\s*,\s*(?:and\s+)?(?:then\s+)?|\s+and\s+then\s+|\s+and\s+|\s+then\s+|\s+so\s+")


@dataclass
class _Frame:
    """What one clause asks for (filled progressively; see the module docstring)."""

    text: str
    action: Action | None = None
    objects: list[str] = field(default_factory=list)  # movable objects acted on ("it" resolved)
    fixture: str | None = None  # open/close target, or a fixture mentioned alone
    relation: str | Relation | None = None  # a Relation, or "in"/"on" before the target is known
    target: str | None = None
    direction: PushDirection | None = None
    object_is_pronoun: bool = False  # "put it in the bowl": the object is the previous frame's


class GrammarPlanner:
    """Offline rule-based planner for the kitchen's instruction grammar (implements ``HighLevelPlanner``).

    ``reset`` parses the instruction into canonical subtasks; ``next_command`` hands them out one by one as
    subtask :class:`LanguageCommand` s. An instruction it cannot read gives an empty plan and sets ``error``.
    A correction that reads as an instruction replaces the rest of the plan; a stop clears it. A subtask the
    runtime reports failed (``handle_failure``) is planned again, after the step its failure says is missing.
    """

    name = "grammar"

    def __init__(self) -> None:
        self.plan: tuple[Subtask, ...] = ()
        self.error: str | None = None  # why the last instruction could not be parsed, None if it could
        self._queue: list[Subtask] = []
        self._pending_correction: LanguageCommand | None = None

    # -- HighLevelPlanner -----------------------------------------------------------------------------------

    def reset(self, instruction: str) -> None:
        self._pending_correction = None
        try:
            self.plan = self.parse(instruction)
            self.error = None
        except GrammarParseError as error:
            self.plan, self.error = (), str(error)
        self._queue = list(self.plan)

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        if not self._queue:
            return None
        step = self._queue.pop(0)
        command = LanguageCommand(
            step.text,
            CommandStyle.SUBTASK,
            CommandSource.PLANNER,
            observation.timestamp,
            replaces=self._pending_correction,
        )
        self._pending_correction = None
        return command

    def handle_correction(self, correction: LanguageCommand) -> None:
        """Follow a live correction from the next command on; anything it cannot read is ignored by this tier.

        - a stop clears the plan;
        - a ``subtask`` correction is one the hierarchy runtime is already executing ("no, open the drawer
          first"): the plan continues after it with the interrupted step (``correction.replaces``) and the
          remaining steps, minus those the correction does;
        - any other correction that parses as an instruction ("put the apple in the bowl instead") replaces
          the remaining steps (the next command names the correction in ``replaces``).
        """
        if correction.style is CommandStyle.STOP:
            self._queue = []
            return
        try:
            steps = self.parse(correction.text)
        except GrammarParseError:
            return
        if correction.style is CommandStyle.SUBTASK:
            interrupted: list[Subtask] = []
            if correction.replaces is not None and correction.replaces.style is CommandStyle.SUBTASK:
                try:
                    interrupted = [Subtask.parse(correction.replaces.text)]
                except SubtaskError:
                    interrupted = []
            self._queue = [step for step in [*interrupted, *self._queue] if step not in steps]
            self._pending_correction = correction
            return
        self._queue = list(steps)
        self._pending_correction = correction

    def handle_failure(self, failed: LanguageCommand, reason: str) -> None:
        """Re-plan from the current state after ``failed`` did not achieve its effect (the runtime's outcome
        check or the mid tier said why in ``reason``): the failed step goes back to the front of the plan,
        after the step its reason says is missing (:func:`tiers.commands.recovery.recovery_steps`: "not in the
        hand" -> pick it up first; "open it first" -> open the target first; else the step again).

        A command that is not a kitchen subtask is ignored; the runtime bounds how often this is called.
        """
        try:
            step = Subtask.parse(failed.text)
        except SubtaskError:
            return
        self._queue = [*recovery_steps(step, reason), *self._queue]

    # -- parsing ----------------------------------------------------------------------------------------------

    def parse(self, instruction: str) -> tuple[Subtask, ...]:
        """The canonical plan of ``instruction``; :class:`GrammarParseError` quoting it when it cannot be read."""
        text = " ".join(re.sub(r"[^a-z,' ]", " ", instruction.lower()).split())
        if not text:
            raise GrammarParseError(f"cannot plan {instruction!r}: empty instruction")
        clauses = [clause.strip(" ,") for clause in CLAUSE_BREAK.split(text) if clause.strip(" ,")]
        clauses = _reorder_after(clauses)
        frames: list[_Frame] = []
        context = _Context()
        for clause in clauses:
            frames.append(_frame(clause, context, instruction))
        frames = _fill_ellipses(frames, instruction)
        steps: list[Subtask] = []
        for frame in frames:
            steps.extend(_subtasks(frame, instruction))
        return tuple(steps)


@dataclass
class _Context:
    """What pronouns and implicit targets refer to: the last movable object and the last place mentioned."""

    last_object: str | None = None
    last_place: str | None = None  # a fixture or a container object
    last_fixture: str | None = None  # an articulated fixture


def _reorder_after(clauses: list[str]) -> list[str]:
    """Split "A after B" and move B (and "after B, A" stays) so that clauses are in execution order."""
    ordered: list[str] = []
    for clause in clauses:
        head, sep, tail = clause.partition(" after ")
        if sep and head:
            ordered.extend([tail, head])
        else:
            ordered.append(clause.removeprefix("after "))
    return ordered


def _frame(clause: str, context: _Context, instruction: str) -> _Frame:
    words = clause.split()
    frame = _Frame(clause)
    entities: list[tuple[int, str]] = []  # (word index, canonical name or "it")
    for index, word in enumerate(words):
        if word in COLORS:
            continue
        if word == "it":
            entities.append((index, "it"))
        elif word in NOUNS:
            if word == "can" and (
                (index > 0 and words[index - 1] in SUBJECT_PRONOUNS)
                or (index + 1 < len(words) and words[index + 1] in SUBJECT_PRONOUNS)
            ):
                continue  # the verb "can"
            entities.append((index, NOUNS[word]))
    state = next((STATE_WORDS[w] for w in words if w in STATE_WORDS), None)
    movable = [(i, name) for i, name in entities if name in OBJECTS]
    fixtures = [(i, name) for i, name in entities if name in ARTICULATED]
    pronoun = next((i for i, name in entities if name == "it"), None)

    if state is not None and not movable and (fixtures or pronoun is not None):
        fixture = fixtures[0][1] if fixtures else context.last_fixture
        if fixture is None:
            raise GrammarParseError(f"cannot plan {instruction!r}: {clause!r} says 'it' before naming a fixture")
        frame.action, frame.fixture = state, fixture
        context.last_fixture = context.last_place = fixture
        return frame
    if not movable and pronoun is None:
        if entities:  # a place named alone: "... and the cabinet"
            frame.fixture = entities[0][1]
            if frame.fixture in ARTICULATED:
                context.last_fixture = frame.fixture
            return frame
        raise GrammarParseError(f"cannot plan {instruction!r}: no object or fixture in {clause!r}")

    # the acted-on object: the first movable object, or "it" standing before any relation word
    first_relation = next(
        (i for i, w in enumerate(words) if w in SPATIAL_KEYWORDS or w in CONTAINMENT_KEYWORDS), len(words)
    )
    if movable and (pronoun is None or movable[0][0] < pronoun or pronoun > first_relation):
        subject_index, subject = movable[0]
    else:
        assert pronoun is not None
        subject_index, subject = pronoun, "it"
        frame.object_is_pronoun = True
    relation_words = [w for w in words[subject_index + 1 :] if w in SPATIAL_KEYWORDS or w in CONTAINMENT_KEYWORDS]
    after = [(i, name) for i, name in entities if i > subject_index]
    objects = [subject] + [name for i, name in movable if i < first_relation and name != subject]
    if subject == "it":
        objects = [context.last_object or "it"]
    frame.objects = objects
    spatial = next((SPATIAL_KEYWORDS[w] for w in relation_words if w in SPATIAL_KEYWORDS), None)
    containment = next((CONTAINMENT_KEYWORDS[w] for w in relation_words if w in CONTAINMENT_KEYWORDS), None)
    target: str | None = None
    if after and (spatial is not None or containment is not None):
        target = after[-1][1]
        if target == "it":
            target = context.last_place
    elif containment is not None and words[-1] in ("inside", "in", "on"):
        target = context.last_place  # "put the apple inside"
    if target is not None and (spatial is not None or containment is not None):
        frame.action, frame.target = Action.PLACE, target
        frame.relation = spatial if spatial is not None else containment
        if target in ARTICULATED:
            context.last_fixture = target
        if target in FIXTURES or (target in OBJECTS and OBJECTS[ObjectName(target)].container):
            context.last_place = target
    else:
        direction = next(
            (d for w in words[subject_index + 1 :] for stem, d in DIRECTION_STEMS.items() if w.startswith(stem)),
            None,
        )
        if direction is not None:
            frame.action, frame.direction = Action.PUSH, direction
        elif any(w in PICK_WORDS for w in words[:subject_index]):
            frame.action = Action.PICK
    if objects[0] != "it":
        context.last_object = objects[-1]
    return frame


def _fill_ellipses(frames: list[_Frame], instruction: str) -> list[_Frame]:
    """Complete frames that only name things, from their neighbours (see the module docstring)."""
    result: list[_Frame] = []
    for index, frame in enumerate(frames):
        following = frames[index + 1 :]
        if frame.objects and frame.action in (None, Action.PICK):
            nxt = following[0] if following else None
            if nxt is not None and nxt.action is Action.PLACE and nxt.object_is_pronoun:
                continue  # "take the apple and place it in the bowl": the next frame carries it
            place = next((f for f in following if f.action is Action.PLACE), None)
            if place is not None and frame.action is None:
                frame = replace(frame, action=Action.PLACE, relation=place.relation, target=place.target)
            elif frame.action is None:
                raise GrammarParseError(f"cannot plan {instruction!r}: what to do with {frame.text!r}?")
        if frame.action is None and frame.fixture is not None:
            previous = next((f for f in reversed(result) if f.action in (Action.OPEN, Action.CLOSE)), None)
            later = next((f for f in following if f.action in (Action.OPEN, Action.CLOSE)), None)
            source = previous or later
            if source is None:
                raise GrammarParseError(f"cannot plan {instruction!r}: what to do with {frame.text!r}?")
            frame = replace(frame, action=source.action)
        result.append(frame)
    return result


def _subtasks(frame: _Frame, instruction: str) -> list[Subtask]:
    try:
        if frame.action in (Action.OPEN, Action.CLOSE):
            assert frame.fixture is not None and frame.action is not None
            return [Subtask(frame.action, frame.fixture)]
        if frame.action is Action.PUSH:
            return [Subtask(Action.PUSH, obj, direction=frame.direction) for obj in frame.objects]
        if frame.action is Action.PICK:
            return [Subtask(Action.PICK, obj) for obj in frame.objects]
        assert frame.target is not None
        steps: list[Subtask] = []
        for obj in frame.objects:
            relation = _relation(frame.relation, frame.target)
            steps += [Subtask(Action.PICK, obj), Subtask(Action.PLACE, obj, frame.target, relation)]
        return steps
    except (ContractError, AssertionError) as error:
        raise GrammarParseError(f"cannot plan {instruction!r}: clause {frame.text!r}: {error}") from None


def _relation(relation: str | Relation | None, target: str) -> Relation:
    """The relation for ``target``: spatial ones as given; "in"/"on" as the containment the target accepts."""
    if isinstance(relation, Relation):
        return relation
    accepted = accepted_relations(target) & {Relation.IN, Relation.ON}
    if len(accepted) == 1:
        return next(iter(accepted))
    return Relation.IN if relation == "in" else Relation.ON
