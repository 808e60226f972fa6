"""GrammarPlanner: scored on both instruction splits without gold plans, the planner protocol, corrections, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tiers.apps.evaluation.planning import collect_plan, score_plan
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import HighLevelPlanner
from tiers.policies.high import grammar_planner
from tiers.policies.high.grammar_planner import GrammarPlanner
from tiers.sim.kitchen.instructions import HELD_OUT_WORDS
from tiers.sim.kitchen.tasks import all_tasks, split


def _observation(timestamp: float = 1.5) -> Observation:
    return Observation(np.zeros(7), np.zeros(7), np.array([0.3, 0, 0.4, 1, 0, 0, 0]), 0.08, timestamp)


def test_knows_no_held_out_word() -> None:
    """Its lexicon comes from the train forms only, so the held-out score measures generalisation."""
    lexicon = set(grammar_planner.NOUNS) | set(grammar_planner.SPATIAL_KEYWORDS) | set(grammar_planner.DIRECTION_STEMS)
    lexicon |= set(grammar_planner.CONTAINMENT_KEYWORDS) | set(grammar_planner.STATE_WORDS)
    held_out_single_words = {word for word in HELD_OUT_WORDS if " " not in word}
    assert not lexicon & held_out_single_words


def test_scores_on_train_and_held_out_splits() -> None:
    train, held_out = split(all_tasks())
    planner = GrammarPlanner()
    figures = {}
    for name, tasks in (("train", train), ("held_out", held_out)):
        scores = [score_plan(collect_plan(planner, task.instruction, _observation()), task.plan) for task in tasks]
        figures[name] = (np.mean([s.exact for s in scores]), np.mean([s.step_accuracy for s in scores]))
    assert figures["train"][0] == 1.0  # the grammar covers every train phrasing
    assert 0.8 <= figures["held_out"][0] < 1.0  # unseen words ("scrubber", "closer to you") are not guessed
    assert figures["held_out"][1] >= figures["held_out"][0]


def test_commands_carry_provenance_and_corrections_replace_the_rest() -> None:
    planner = GrammarPlanner()
    assert isinstance(planner, HighLevelPlanner)
    planner.reset("open the drawer, put the red mug inside, then close it")
    assert [s.text for s in planner.plan] == [
        "open the drawer",
        "pick up the cup",
        "put the cup in the drawer",
        "close the drawer",
    ]
    first = planner.next_command(_observation(2.0))
    assert first is not None and first.text == "open the drawer"
    assert first.style is CommandStyle.SUBTASK and first.source is CommandSource.PLANNER and first.timestamp == 2.0
    correction = LanguageCommand("put the apple in the bowl instead", CommandStyle.CORRECTION, "human_live", 3.0)
    planner.handle_correction(correction)
    corrected = planner.next_command(_observation(3.5))
    assert corrected is not None and corrected.text == "pick up the apple" and corrected.replaces is correction
    assert [c.text for c in corrected.history()] == ["pick up the apple", "put the apple in the bowl instead"]
    planner.handle_correction(LanguageCommand("stop", CommandStyle.STOP, "human_live", 4.0))
    assert planner.next_command(_observation()) is None


def test_unreadable_instructions_give_an_empty_plan_and_say_why() -> None:
    planner = GrammarPlanner()
    planner.reset("juggle three oranges")
    assert planner.next_command(_observation()) is None
    assert planner.error is not None and "juggle three oranges" in planner.error


def test_tiers_eval_planner_mode_with_the_grammar_planner(tmp_path: Path) -> None:
    from tiers.cli.main import main

    argv = ["eval", "--mode", "planner", "--planner", "grammar", "--split", "train", "--limit", "3"]
    code = main([*argv, "--out", str(tmp_path)])
    assert code == 0
    summary = json.loads((tmp_path / "results.json").read_text())["summary"]["overall"]
    assert summary["episodes"] == 3 and summary["success_rate"] == 1.0


def test_tiers_eval_integrated_mode_executes_the_grammar_plan(tmp_path: Path) -> None:
    from tiers.cli.main import main

    argv = ["eval", "--mode", "integrated", "--planner", "grammar", "--task", "open/drawer/0", "--videos", "0"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    (episode,) = json.loads((tmp_path / "results.json").read_text())["episodes"]
    assert episode["success"] and episode["extra"]["plan_exact"] == 1.0


def test_a_subtask_the_runtime_already_executes_is_followed_by_the_interrupted_step_and_the_rest() -> None:
    planner = GrammarPlanner()
    planner.reset("open the drawer, put the red mug inside, then close it")
    in_force = planner.next_command(_observation(1.0))
    assert in_force is not None and in_force.text == "open the drawer"
    # "no, pick up the cup first": the runtime executes "pick up the cup" now; the drawer comes back after it
    correction = LanguageCommand("pick up the cup", CommandStyle.SUBTASK, "human_live", 2.0, replaces=in_force)
    planner.handle_correction(correction)
    rest = []
    while (command := planner.next_command(_observation(3.0))) is not None:
        rest.append(command.text)
    assert rest == ["open the drawer", "put the cup in the drawer", "close the drawer"]
