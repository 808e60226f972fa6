"""Kitchen benchmark tasks: instruction set, gold plans, split, determinism, success predicates."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tiers.commands.subtasks import Action, Subtask, SubtaskError, parse_plan, plan_text
from tiers.commands.vocabulary import (
    OBJECTS,
    FixtureName,
    PushDirection,
    Relation,
    fits,
    object_info,
)
from tiers.core.features import CommandStyle
from tiers.sim.kitchen import predicates as pred
from tiers.sim.kitchen.instructions import (
    HELD_OUT_PHRASE_KEYS,
    HELD_OUT_TEMPLATE_IDS,
    HELD_OUT_WORDS,
    TEMPLATE_BY_ID,
    Pattern,
)
from tiers.sim.kitchen.tasks import (
    INITIAL_CLOSED,
    INITIAL_OPEN,
    PATTERN_STEPS,
    Task,
    TaskFamily,
    UnknownTaskError,
    all_tasks,
    family_counts,
    generate_tasks,
    get_task,
    split,
    success_of,
    task_for_instruction,
    tasks_by_family,
)
from tiers.sim.scene_state import ArticulationState, Box, ObjectState, SceneState

# --- hand-built scenes -------------------------------------------------------------------------------------

REGIONS = {
    "drawer": Box(np.array([0.30, -0.45, -0.20]), np.array([0.50, -0.25, -0.08])),
    "cabinet": Box(np.array([0.55, 0.30, 0.20]), np.array([0.80, 0.60, 0.50])),
    "sink": Box(np.array([0.30, 0.35, -0.15]), np.array([0.50, 0.60, 0.00])),
    "shelf": Box(np.array([0.70, -0.30, 0.40]), np.array([0.85, 0.30, 0.55])),
    "counter": Box(np.array([0.20, -0.30, 0.00]), np.array([0.70, 0.30, 0.15])),
}
DRAWER_TRAVEL = 0.22  # m
CABINET_SWING = 1.75  # rad


def obj(name: str, centre: tuple[float, float, float], size: float | tuple[float, float, float] = 0.06) -> ObjectState:
    """An object whose bounds are a box of ``size`` m around ``centre``; body frame at its bottom face."""
    half = np.broadcast_to(np.asarray(size, dtype=np.float64) / 2, (3,))
    centre_array = np.asarray(centre, dtype=np.float64)
    return ObjectState(
        name=name,
        category=name,
        color=object_info(name).colors[0],
        position=centre_array - np.array([0.0, 0.0, half[2]]),
        quaternion=np.array([1.0, 0.0, 0.0, 0.0]),
        bounds=Box(centre_array - half, centre_array + half),
    )


def scene(*objects: ObjectState, drawer: float = 0.0, cabinet: float = 0.0, grasped: str | None = None) -> SceneState:
    """A scene with the given objects; ``drawer``/``cabinet`` are opening fractions."""
    return SceneState(
        time=0.0,
        objects={o.name: o for o in objects},
        articulations={
            "drawer": ArticulationState("drawer", drawer * DRAWER_TRAVEL, 0.0, DRAWER_TRAVEL),
            "cabinet": ArticulationState("cabinet", cabinet * CABINET_SWING, 0.0, CABINET_SWING),
        },
        regions=REGIONS,
        ee_position=np.array([0.3, 0.0, 0.4]),
        gripper_opening=0.08,
        grasped=grasped,
    )


IN_DRAWER = (0.40, -0.35, -0.15)
ON_COUNTER = (0.45, 0.0, 0.03)


@pytest.fixture(scope="module")
def tasks() -> tuple[Task, ...]:
    return all_tasks()


# --- instruction set ---------------------------------------------------------------------------------------


def test_at_least_500_distinct_instructions_with_unique_ids(tasks: tuple[Task, ...]) -> None:
    texts = [task.instruction for task in tasks]
    assert len(set(texts)) == len(texts) >= 500
    assert len({task.id for task in tasks}) == len(tasks)
    assert all(text == text.strip().lower() and "  " not in text for text in texts)


def test_every_family_and_pattern_is_present(tasks: tuple[Task, ...]) -> None:
    counts = family_counts(tasks)
    assert set(counts) == set(TaskFamily)
    assert all(count >= 30 for count in counts.values()), counts
    assert {task.pattern for task in tasks} == set(Pattern)
    assert sum(counts.values()) == len(tasks)
    assert len(tasks_by_family("stack")) == counts[TaskFamily.STACK]
    with pytest.raises(ValueError, match=r"'cooking'.*families"):
        tasks_by_family("cooking")


def test_multi_step_tasks_have_two_to_four_steps_and_single_ones_one(tasks: tuple[Task, ...]) -> None:
    for task in tasks:
        if task.multi_step:
            assert 2 <= task.steps <= 4, task.id
            assert len(task.success.terms) >= 2, task.id
        else:
            assert task.steps == 1 and len(task.plan) <= 2, task.id
    assert {PATTERN_STEPS[task.pattern] for task in tasks if task.multi_step} == {2, 3, 4}


def test_generation_is_deterministic_within_and_across_processes(tasks: tuple[Task, ...]) -> None:
    again = generate_tasks()
    assert [(t.id, t.instruction, t.plan) for t in again] == [(t.id, t.instruction, t.plan) for t in tasks]
    script = (
        "import hashlib, json\n"
        "from tiers.sim.kitchen.tasks import generate_tasks\n"
        "rows = [[t.id, t.instruction, [s.text for s in t.plan]] for t in generate_tasks()]\n"
        "print(hashlib.sha256(json.dumps(rows).encode()).hexdigest())\n"
    )
    rows = [[t.id, t.instruction, [s.text for s in t.plan]] for t in tasks]
    expected = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == expected


# --- gold plans --------------------------------------------------------------------------------------------


def test_gold_plans_round_trip_through_the_canonical_text(tasks: tuple[Task, ...]) -> None:
    for task in tasks:
        assert parse_plan(plan_text(task.plan)) == task.plan, task.id
        for step in task.plan:
            assert Subtask.parse(step.text) == step
            assert Subtask.parse(f"  {step.text}  ".replace(" ", "  ")) == step


@pytest.mark.parametrize(
    ("subtask", "text"),
    [
        (Subtask(Action.PICK, "apple"), "pick up the apple"),
        (Subtask(Action.PLACE, "apple", "drawer", Relation.IN), "put the apple in the drawer"),
        (Subtask(Action.PLACE, "cup", "plate", Relation.ON), "put the cup on the plate"),
        (Subtask(Action.PLACE, "cup", "bowl", Relation.IN_FRONT_OF), "put the cup in front of the bowl"),
        (Subtask(Action.PLACE, "can", "box", Relation.LEFT_OF), "put the can to the left of the box"),
        (Subtask(Action.OPEN, "drawer"), "open the drawer"),
        (Subtask(Action.CLOSE, "cabinet"), "close the cabinet"),
        (Subtask(Action.PUSH, "box", direction=PushDirection.LEFT), "push the box to the left"),
        (Subtask(Action.PUSH, "box", direction=PushDirection.FORWARD), "push the box forward"),
    ],
)
def test_canonical_text(subtask: Subtask, text: str) -> None:
    assert subtask.text == str(subtask) == text
    assert Subtask.parse(text) == subtask
    command = subtask.to_command(timestamp=1.5)
    assert command.text == text and command.style is CommandStyle.SUBTASK


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("put the bowl in the cup", "does not take 'in'"),
        ("put the apple on the drawer", "does not take 'on'"),
        ("pick up the mug", "unknown object 'mug'"),
        ("pick up the red apple", "canonical forms"),
        ("open the sink", "articulated fixtures"),
        ("push the box sideways", "canonical forms"),
        ("put the apple in the apple", "does not take|itself"),
        ("Pick up the apple", "canonical forms"),
        ("", "canonical forms"),
    ],
)
def test_parser_rejects_non_canonical_text_naming_it(text: str, why: str) -> None:
    with pytest.raises(SubtaskError, match=why) as error:
        Subtask.parse(text)
    assert repr(text) in str(error.value)


def test_plan_parse_error_names_the_step() -> None:
    with pytest.raises(SubtaskError, match=r"plan step 1: cannot parse subtask 'grab the cup'"):
        parse_plan(["open the drawer", "grab the cup"])


def test_subtask_fields_are_validated() -> None:
    with pytest.raises(SubtaskError, match="target and relation"):
        Subtask(Action.PLACE, "apple")
    with pytest.raises(SubtaskError, match="direction"):
        Subtask(Action.PUSH, "box")
    with pytest.raises(SubtaskError, match="action must be one of"):
        Subtask("fly", "apple")  # type: ignore[arg-type]
    assert Subtask("place", "apple", "bowl", "in") == Subtask(Action.PLACE, "apple", "bowl", Relation.IN)  # type: ignore[arg-type]


def test_gold_plans_are_physically_sensible(tasks: tuple[Task, ...]) -> None:
    for task in tasks:
        held: str | None = None
        for step in task.plan:
            if step.action is Action.PICK:
                assert held is None, task.id
                held = step.object
            elif step.action is Action.PLACE:
                assert held == step.object, task.id
                assert step.relation is not None and step.target is not None
                assert fits(step.object, step.relation, step.target), (task.id, step.text)
                held = None
            else:
                assert held is None, task.id
        assert held is None, task.id


def test_initial_requirements_follow_the_plan(tasks: tuple[Task, ...]) -> None:
    from tiers.commands.palette import PALETTE

    for task in tasks:
        named = {s.object for s in task.plan} | {s.target for s in task.plan if s.target in OBJECTS}
        assert set(task.requirements.objects) == named - set(FixtureName), task.id
        first_use: dict[str, Action] = {}
        for step in task.plan:
            fixture = step.object if step.action in (Action.OPEN, Action.CLOSE) else step.target
            if fixture in ("drawer", "cabinet"):
                first_use.setdefault(fixture, step.action)
        expected = {f: INITIAL_CLOSED if a is Action.OPEN else INITIAL_OPEN for f, a in first_use.items()}
        assert dict(task.requirements.articulations) == expected, task.id
        for name, color in task.requirements.colors.items():
            assert color in object_info(name).colors and color in PALETTE
            assert re.search(rf"\b{color}\b", task.instruction), task.id
    close = next(t for t in tasks if t.pattern is Pattern.CLOSE and t.plan[0].object == "drawer")
    assert close.requirements.articulation_values({"drawer": (0.0, 0.22), "cabinet": (0.0, 1.75)}) == {"drawer": 0.22}


# --- split ---------------------------------------------------------------------------------------------


def test_held_out_split_uses_phrasings_train_never_uses(tasks: tuple[Task, ...]) -> None:
    train, held_out = split(tasks)
    assert len(train) + len(held_out) == len(tasks)
    assert 0.15 <= len(held_out) / len(tasks) <= 0.4
    train_templates = {t.template_id for t in train}
    train_keys = {key for t in train for key in t.phrase_keys}
    assert not train_templates & HELD_OUT_TEMPLATE_IDS
    assert not train_keys & HELD_OUT_PHRASE_KEYS
    for task in held_out:
        assert task.template_id not in train_templates or set(task.phrase_keys) - train_keys, task.id
    # no held-out synonym shows up in a train instruction, whatever slot it would fill
    for word in HELD_OUT_WORDS:
        pattern = re.compile(rf"\b{re.escape(word)}\b")
        assert not any(pattern.search(t.instruction) for t in train), word
    # every template and every held-out word is used, and both splits cover every family
    assert {t.template_id for t in tasks} == set(TEMPLATE_BY_ID)
    assert {key for t in held_out for key in t.phrase_keys} >= HELD_OUT_PHRASE_KEYS
    assert {t.family for t in train} == {t.family for t in held_out} == set(TaskFamily)


# --- registry --------------------------------------------------------------------------------------------


def test_registry_lookup_by_id_and_instruction(tasks: tuple[Task, ...]) -> None:
    task = tasks[123]
    assert get_task(task.id) is task
    row = json.loads(json.dumps(task.to_dict()))
    assert row["id"] == task.id and parse_plan(row["plan"]) == task.plan
    assert task_for_instruction(task.instruction.upper()) is task
    with pytest.raises(UnknownTaskError, match=r"closest: .*'pick_place/apple-in-drawer/0'"):
        get_task("pick_place/apple-in-drawer/99")
    with pytest.raises(UnknownTaskError, match="no task has the instruction"):
        task_for_instruction("make me a sandwich")


# --- predicates ------------------------------------------------------------------------------------------


def test_inside_region() -> None:
    inside = scene(obj("apple", IN_DRAWER), drawer=1.0)
    assert pred.inside_region(inside, "apple", "drawer")
    outside = pred.inside_region(scene(obj("apple", ON_COUNTER)), "apple", "drawer")
    assert not outside and "apple is outside the drawer" in outside.reason
    held = pred.inside_region(scene(obj("apple", IN_DRAWER), grasped="apple"), "apple", "drawer")
    assert not held and held.reason == "apple is still held"
    with pytest.raises(pred.PredicateError, match=r"no region 'oven'.*present: \['cabinet'"):
        pred.inside_region(inside, "apple", "oven")
    with pytest.raises(pred.PredicateError, match=r"no object 'pear'.*present: \['apple'\]"):
        pred.inside_region(inside, "pear", "drawer")


@pytest.mark.parametrize(
    ("opening", "is_open", "is_closed"),
    [
        (1.0, True, False),
        (0.8, True, False),
        (0.79, False, False),
        (0.5, False, False),
        (0.05, False, True),
        (0.0, False, True),
    ],
)
def test_articulation_thresholds(opening: float, is_open: bool, is_closed: bool) -> None:
    state = scene(drawer=opening)
    assert bool(pred.is_open(state, "drawer")) is is_open
    assert bool(pred.is_closed(state, "drawer")) is is_closed
    if not is_open:
        assert "needs 0.8" in pred.is_open(state, "drawer").reason


def test_in_container_and_stacking() -> None:
    bowl = obj("bowl", (0.45, 0.0, 0.03), (0.14, 0.14, 0.06))
    assert pred.in_container(scene(bowl, obj("apple", (0.45, 0.01, 0.04), 0.07)), "apple", "bowl")
    beside = pred.in_container(scene(bowl, obj("apple", (0.45, 0.15, 0.035), 0.07)), "apple", "bowl")
    assert not beside and "not over the bowl" in beside.reason
    above = pred.in_container(scene(bowl, obj("apple", (0.45, 0.0, 0.2), 0.07)), "apple", "bowl")
    assert not above and "above the bowl" in above.reason

    box = obj("box", (0.5, 0.1, 0.04), 0.08)
    assert pred.stacked_on(scene(box, obj("can", (0.5, 0.11, 0.14), (0.066, 0.066, 0.12))), "can", "box")
    assert not pred.stacked_on(scene(box, obj("can", (0.5, 0.2, 0.06), (0.066, 0.066, 0.12))), "can", "box")
    floating = pred.stacked_on(scene(box, obj("can", (0.5, 0.1, 0.25), (0.066, 0.066, 0.12))), "can", "box")
    assert not floating and "from the box's top" in floating.reason
    assert pred.Placed("can", Relation.ON, "box")(scene(box), scene(box, obj("can", (0.5, 0.1, 0.14), 0.12)))
    assert pred.Placed("apple", Relation.IN, "drawer")(scene(), scene(obj("apple", IN_DRAWER)))


@pytest.mark.parametrize(
    ("where", "true_relations"),
    [
        ((0.50, 0.15, 0.03), {Relation.LEFT_OF, Relation.NEXT_TO}),
        ((0.50, -0.15, 0.03), {Relation.RIGHT_OF, Relation.NEXT_TO}),
        ((0.38, 0.02, 0.03), {Relation.IN_FRONT_OF, Relation.NEXT_TO}),
        ((0.62, -0.02, 0.03), {Relation.BEHIND, Relation.NEXT_TO}),
        ((0.40, 0.14, 0.03), {Relation.LEFT_OF, Relation.NEXT_TO}),  # 45° cone: more left than front
        ((0.50, 0.45, 0.03), set()),  # too far
        ((0.50, 0.03, 0.03), set()),  # overlapping
        ((0.50, 0.15, 0.30), set()),  # not on the same level
    ],
)
def test_spatial_relations(where: tuple[float, float, float], true_relations: set[Relation]) -> None:
    state = scene(obj("bowl", (0.5, 0.0, 0.03), (0.12, 0.12, 0.06)), obj("apple", where, 0.06))
    for relation in (Relation.LEFT_OF, Relation.RIGHT_OF, Relation.IN_FRONT_OF, Relation.BEHIND, Relation.NEXT_TO):
        verdict = pred.spatial_relation(state, "apple", relation, "bowl")
        assert bool(verdict) is (relation in true_relations), (relation, verdict.reason)
        assert verdict.reason.startswith("apple")
    with pytest.raises(ValueError, match="not a spatial relation"):
        pred.spatial_relation(state, "apple", Relation.IN, "bowl")


def test_push_needs_distance_along_the_direction_without_lifting() -> None:
    start = scene(obj("box", (0.5, 0.0, 0.04), 0.08))
    moved_left = scene(obj("box", (0.5, 0.10, 0.04), 0.08))
    assert pred.pushed(start, moved_left, "box", PushDirection.LEFT)
    assert not pred.pushed(start, moved_left, "box", PushDirection.RIGHT)
    short = pred.pushed(start, scene(obj("box", (0.5, 0.05, 0.04), 0.08)), "box", PushDirection.LEFT)
    assert not short and "needs 0.08" in short.reason
    lifted = pred.pushed(start, scene(obj("box", (0.5, 0.10, 0.20), 0.08)), "box", PushDirection.LEFT)
    assert not lifted and "lifted" in lifted.reason
    forward = scene(obj("box", (0.62, 0.0, 0.04), 0.08))
    assert pred.Pushed("box", PushDirection.FORWARD)(start, forward)
    assert not pred.Pushed("box", PushDirection.BACKWARD)(start, forward)


# --- compositions --------------------------------------------------------------------------------------


def test_composition_success_needs_every_part() -> None:
    plan = parse_plan(["open the drawer", "pick up the apple", "put the apple in the drawer", "close the drawer"])
    success = success_of(plan)
    assert success.terms == (pred.Closed(FixtureName.DRAWER), pred.Placed("apple", Relation.IN, "drawer"))
    initial = scene(obj("apple", ON_COUNTER))
    assert success(initial, scene(obj("apple", IN_DRAWER), drawer=0.0))
    left_open = success(initial, scene(obj("apple", IN_DRAWER), drawer=1.0))
    assert not left_open and "drawer is still 1.00 open" in left_open.reason
    not_inside = success(initial, scene(obj("apple", ON_COUNTER), drawer=0.0))
    assert not not_inside and "outside the drawer" in not_inside.reason
    both_wrong = success(initial, scene(obj("apple", ON_COUNTER), drawer=1.0))
    assert both_wrong.reason.count(";") == 1


def test_every_part_of_a_composition_is_in_its_success_predicate(tasks: tuple[Task, ...]) -> None:
    """The final effect of every step (the last one on each object or fixture) is a term; no stray terms."""
    for task in (t for t in tasks if t.multi_step):
        last = {step.object: step for step in task.plan}
        expected: set[object] = set()
        for step in last.values():
            if step.action is Action.PLACE:
                assert step.relation is not None and step.target is not None
                expected.add(pred.Placed(step.object, step.relation, step.target))
            elif step.action is Action.PUSH:
                assert step.direction is not None
                expected.add(pred.Pushed(step.object, step.direction))
            elif step.action is Action.OPEN:
                expected.add(pred.Opened(FixtureName(step.object)))
            elif step.action is Action.CLOSE:
                expected.add(pred.Closed(FixtureName(step.object)))
        assert set(task.success.terms) == expected, task.id
        assert len(task.success.terms) == len(expected) >= 2, task.id


def test_two_placements_need_both() -> None:
    success = success_of(
        parse_plan(["pick up the apple", "put the apple in the bowl", "pick up the can", "put the can on the shelf"])
    )
    bowl = obj("bowl", (0.45, 0.0, 0.03), (0.14, 0.14, 0.06))
    apple_in_bowl = obj("apple", (0.45, 0.0, 0.04), 0.07)
    can_on_shelf = obj("can", (0.78, 0.0, 0.47), (0.066, 0.066, 0.12))
    can_on_counter = obj("can", (0.40, 0.2, 0.06), (0.066, 0.066, 0.12))
    initial = scene(bowl, obj("apple", (0.4, -0.2, 0.035), 0.07), can_on_counter)
    assert success(initial, scene(bowl, apple_in_bowl, can_on_shelf))
    only_apple = success(initial, scene(bowl, apple_in_bowl, can_on_counter))
    assert not only_apple and "can is outside the shelf" in only_apple.reason
    assert not success(initial, scene(bowl, obj("apple", (0.4, -0.2, 0.035), 0.07), can_on_shelf))


def test_generated_task_success_on_hand_built_states() -> None:
    task = next(t for t in all_tasks() if t.pattern is Pattern.PLACE_CLOSE and t.plan[1].target == "drawer")
    apple = task.plan[0].object
    initial = scene(obj(apple, ON_COUNTER), drawer=1.0)
    assert task.check(initial, scene(obj(apple, IN_DRAWER), drawer=0.02))
    assert not task.check(initial, scene(obj(apple, IN_DRAWER), drawer=0.5))
    assert not task.check(initial, initial)
