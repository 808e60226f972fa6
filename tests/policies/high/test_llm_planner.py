"""LLMPlanner through a real local chat server: prompt, parsing, repair, images, session history, plumbing."""

from __future__ import annotations

import numpy as np

from tiers.apps.evaluation.planning import collect_plan
from tiers.apps.scripted_server import ScriptedChatServer, grammar_planner_script
from tiers.core.features import CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import CameraModel, Observation
from tiers.core.protocols import HighLevelPlanner
from tiers.policies.high.grammar_planner import GrammarPlanner
from tiers.policies.high.llm_planner import PLAN_EXAMPLES, LLMPlanner, LLMPlannerConfig, few_shot_examples, plan_lines
from tiers.services.chat import (
    OpenAIChatBackend,
    OpenAIChatConfig,
    decode_data_url,
    message_images,
    message_text,
)
from tiers.sim.kitchen.tasks import all_tasks, split


def _observation(image: np.ndarray | None = None) -> Observation:
    images, cameras = {}, {}
    if image is not None:
        images = {"front": image}
        cameras = {"front": CameraModel.from_fovy(width=8, height=6, fovy_deg=45, base_from_camera=np.eye(4))}
    pose = np.array([0.3, 0, 0.4, 1, 0, 0, 0])
    return Observation(np.zeros(7), np.zeros(7), pose, 0.08, 0.5, images=images, cameras=cameras)


def _planner(server: ScriptedChatServer, **config: object) -> LLMPlanner:
    backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted", backoff_s=0.01))
    return LLMPlanner(backend, LLMPlannerConfig.from_dict(config))


def test_plans_from_a_numbered_reply_with_the_grammar_in_the_prompt() -> None:
    reply = "```\n1. Pick up the apple\n2. put the apple in the bowl.\n```"
    with ScriptedChatServer([reply]) as server:
        planner = _planner(server, few_shot=3)
        assert isinstance(planner, HighLevelPlanner)
        texts = collect_plan(planner, "put the green apple into the bowl", _observation())
    assert texts == ["pick up the apple", "put the apple in the bowl"]
    (request,) = server.requests
    messages = request["messages"]
    assert messages[0]["role"] == "system" and "put the <object> <relation> the <target>" in messages[0]["content"]
    assert len(messages) == 1 + 2 * 3 + 1  # system, three worked examples, the instruction
    train_instructions = {task.instruction for task in split(all_tasks())[0]}
    assert message_text(messages[1]).removeprefix("Instruction: ") in train_instructions
    assert message_text(messages[-1]) == "Instruction: put the green apple into the bowl"


def test_non_canonical_lines_are_sent_back_once_for_repair() -> None:
    with ScriptedChatServer(
        ["grab the apple\nput it in the bowl", "pick up the apple\nput the apple in the bowl"]
    ) as s:
        planner = _planner(s, few_shot=0)
        texts = collect_plan(planner, "put the apple in the bowl", _observation())
    assert texts == ["pick up the apple", "put the apple in the bowl"] and planner.error is None
    assert planner.requests == 2
    repair = message_text(s.requests[1]["messages"][-1])
    assert "not canonical" in repair and "grab the apple" in repair


def test_a_vlm_planner_sends_the_current_camera_image() -> None:
    image = np.random.default_rng(1).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    with ScriptedChatServer(["open the drawer"]) as server:
        planner = _planner(server, few_shot=0, images=True)
        assert collect_plan(planner, "open the drawer", _observation(image)) == ["open the drawer"]
    (url,) = message_images(server.requests[0]["messages"][-1])
    np.testing.assert_array_equal(decode_data_url(url), image)


def test_corrections_continue_the_session_and_link_provenance() -> None:
    with ScriptedChatServer(["pick up the apple\nput the apple in the bowl", "put the apple in the basket"]) as s:
        planner = _planner(s, few_shot=0)
        planner.reset("put the apple in the bowl")
        first = planner.next_command(_observation())
        correction = LanguageCommand("no, in the basket", CommandStyle.CORRECTION, "human_live", 1.0)
        planner.handle_correction(correction)
        second = planner.next_command(_observation())
        assert planner.next_command(_observation()) is None
    assert first is not None and second is not None
    assert second.text == "put the apple in the basket" and second.replaces is correction
    history = s.requests[1]["messages"]
    assert message_text(history[-1]).startswith("Correction from the person watching: no, in the basket")
    assert "pick up the apple" in message_text(history[-1])  # the steps already handed out
    assert history[-2] == {"role": "assistant", "content": "pick up the apple\nput the apple in the bowl"}


def test_a_failed_subtask_is_told_to_the_model_which_replans_from_the_current_state() -> None:
    plan = "pick up the can\nput the can in the drawer"
    with ScriptedChatServer([plan, plan]) as s:
        planner = _planner(s, few_shot=0)
        planner.reset("put the can in the drawer")
        pick = planner.next_command(_observation())
        place = planner.next_command(_observation())
        assert pick is not None and place is not None and place.text == "put the can in the drawer"
        reason = "the can is not in the hand: pick it up first"
        planner.handle_failure(place, reason)  # as the runtime's recovery calls it
        again = [planner.next_command(_observation()) for _ in range(3)]
    assert [command.text if command else None for command in again] == [*plan.split("\n"), None]
    assert again[0] is not None and again[0].replaces is place  # provenance: the re-plan replaces the failure
    assert planner.requests == 2
    history = s.requests[1]["messages"]
    told = message_text(history[-1])
    assert told.startswith("The subtask 'put the can in the drawer' failed: " + reason)
    assert "Steps done so far: pick up the can." in told  # the failed step is not counted as done
    assert history[-2] == {"role": "assistant", "content": plan}  # the session goes on


def test_plumbing_through_the_grammar_backed_server_matches_the_grammar_planner() -> None:
    """Not a language model: the server answers with the grammar planner, so both must agree exactly."""
    tasks = list(all_tasks())[::40]
    grammar = GrammarPlanner()
    with ScriptedChatServer(grammar_planner_script) as server:
        planner = _planner(server, few_shot=2)
        for task in tasks:
            expected = (
                [step.text for step in grammar.parse(task.instruction)] if _parses(grammar, task.instruction) else []
            )
            got = collect_plan(planner, task.instruction, _observation())
            assert got == expected or (not expected and planner.error), task.instruction


def _parses(planner: GrammarPlanner, instruction: str) -> bool:
    planner.reset(instruction)
    return planner.error is None


def test_plan_lines_strips_formatting() -> None:
    assert plan_lines("Plan:\n- Open the drawer\n* close the drawer\nStep 3: push the box forward\n# done") == [
        "open the drawer",
        "close the drawer",
        "push the box forward",
    ]


def test_worked_examples_are_train_tasks_with_their_gold_plans() -> None:
    """The prompt library is data kept in the tier (it never reads the benchmark); it must stay honest: every
    example is a train-split instruction with its gold plan."""
    train, held_out = split(all_tasks())
    gold = {task.instruction: [step.text for step in task.plan] for task in train}
    held_out_instructions = {task.instruction for task in held_out}
    for instruction, plan in PLAN_EXAMPLES:
        assert instruction not in held_out_instructions, instruction
        assert gold.get(instruction) == list(plan), instruction
    # the default prompt: every 104th train task, as when the examples were read from the split
    assert few_shot_examples(6) == [(task.instruction, gold[task.instruction]) for task in train[::104][:6]]
    assert few_shot_examples(0) == []
