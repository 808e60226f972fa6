"""Code as Policies end to end: a real chat server writes code, helpers are generated recursively through the
AST, programs run in the real sandbox against real primitives in MuJoCo (the kitchen binding,
:mod:`tiers.apps.evaluation.kitchen_primitives`)."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tiers.apps.evaluation.kitchen_primitives import KitchenPrimitives
from tiers.apps.scripted_server import ScriptedChatServer, grammar_code_script
from tiers.commands.subtasks import Subtask
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import HighLevelPlanner, MidLevelPlan
from tiers.policies.high.code_as_policies import (
    CodeAsPoliciesConfig,
    CodeAsPoliciesPlanner,
    CodeAsPoliciesRunner,
    undefined_functions,
)
from tiers.policies.high.primitives import (
    PRIMITIVE_NAMES,
    ObservationPerception,
    PrimitiveApi,
    commands_from_program_calls,
    planning_api,
    program_for_subtasks,
)
from tiers.services.chat import OpenAIChatBackend, OpenAIChatConfig, message_text
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.expert import ScriptedExpert

POLICY = (
    "```python\nothers = [n for n in get_obj_names() if n not in ['bowl', 'apple']]\n"
    "name = closest_to('bowl', others)\nsay('moving the ' + name)\ngrasp(name)\nplace(name, 'in', 'bowl')\n```"
)
HELPERS = {
    "closest_to": "def closest_to(anchor, names):\n"
    "    here = get_obj_pos(anchor)\n    return min(names, key=lambda n: distance(get_obj_pos(n), here))",
    "distance": "def distance(a, b):\n    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))",
}


def _script(policy: str, helpers: dict[str, str]) -> Callable[[dict[str, Any]], str]:
    """Answer policy queries with ``policy`` and "define function: name(...)" queries from ``helpers``."""

    def reply(body: dict[str, Any]) -> str:
        query = message_text(body["messages"][-1])
        if query.startswith("# define function: "):
            name = query.removeprefix("# define function: ").split("(")[0]
            return helpers[name]
        return policy

    return reply


def _backend(server: ScriptedChatServer) -> OpenAIChatBackend:
    return OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted", backoff_s=0.01))


def test_undefined_functions_are_found_through_the_ast() -> None:
    code = "def near(a):\n    return a\nx = near(1)\ny = closest_to(x, items=[1])\nz = len([sort_by(x), helper(2)])"
    assert undefined_functions(code, {"len"}) == [
        ("closest_to", "closest_to(x, items=items)"),
        ("sort_by", "sort_by(x)"),
        ("helper", "helper(arg0)"),
    ]


def test_planner_generates_helpers_recursively_and_plans_from_perception(
    reset_kitchen: Callable[..., Observation],
) -> None:
    observation = reset_kitchen()
    with ScriptedChatServer(_script(POLICY, HELPERS)) as server:
        planner = CodeAsPoliciesPlanner(_backend(server))
        assert isinstance(planner, HighLevelPlanner)
        planner.reset("put the thing closest to the bowl into the bowl")
        first = planner.next_command(observation)
        second = planner.next_command(observation)
        assert planner.next_command(observation) is None
    assert planner.error is None, planner.error
    queries = [message_text(request["messages"][-1]) for request in server.requests]
    assert queries == [
        "# put the thing closest to the bowl into the bowl.",
        "# define function: closest_to(arg0, others).",
        "# define function: distance(arg0, here).",  # found inside the generated closest_to: depth 2
    ]
    assert set(planning_api(observation)[0]) == set(PRIMITIVE_NAMES)  # the planner's programs see the same API
    perception = ObservationPerception(observation)
    bowl = perception.position("bowl")
    others = [n for n in perception.object_names() if n not in ("bowl", "apple")]
    nearest = min(others, key=lambda n: float(np.linalg.norm(perception.position(n) - bowl)))
    assert first is not None and second is not None
    assert [first.text, second.text] == [f"pick up the {nearest}", f"put the {nearest} in the bowl"]
    assert first.source is CommandSource.PLANNER and first.style is CommandStyle.SUBTASK
    assert planner.program is not None and set(planner.program.helpers) == {"closest_to", "distance"}
    assert planner.result is not None and [c[0] for c in planner.result.calls][-2:] == ["grasp", "place"]
    assert planner.overhead_seconds > 0


def test_helper_recursion_stops_at_the_depth_limit(reset_kitchen: Callable[..., Observation]) -> None:
    chain = {f"f{k}": f"def f{k}():\n    return f{k + 1}()" for k in range(10)}
    with ScriptedChatServer(_script("f0()", chain)) as server:
        planner = CodeAsPoliciesPlanner(_backend(server), CodeAsPoliciesConfig(max_depth=2))
        planner.reset("do something deep")
        assert planner.next_command(reset_kitchen()) is None
    assert planner.error is not None and "helper f2() is 3 levels deep; the limit is 2" in planner.error
    assert len(server.requests) == 3  # the policy, f0, f1


def test_a_correction_continues_the_session(reset_kitchen: Callable[..., Observation]) -> None:
    observation = reset_kitchen()
    replies = iter(['grasp("apple")\nplace("apple", "in", "bowl")', 'push("can", "forward")'])
    with ScriptedChatServer(lambda body: next(replies)) as server:
        planner = CodeAsPoliciesPlanner(_backend(server))
        planner.reset("put the apple in the bowl")
        assert planner.next_command(observation) is not None
        correction = LanguageCommand("push the can away instead", CommandStyle.CORRECTION, "human_live", 2.0)
        planner.handle_correction(correction)
        command = planner.next_command(observation)
    assert command is not None and command.text == "push the can forward" and command.replaces is correction
    turns = [message_text(m) for m in server.requests[1]["messages"]]
    assert "# put the apple in the bowl." in turns and 'grasp("apple")\nplace("apple", "in", "bowl")' in turns


def test_unsafe_motion_is_refused_before_the_robot_moves(
    kitchen: KitchenEnv, reset_kitchen: Callable[..., Observation]
) -> None:
    before = reset_kitchen().joint_positions
    program = "try:\n    move_to([2.0, 0.0, 0.3])\nexcept ApiError as e:\n    ret_val = str(e)"
    with ScriptedChatServer([program]) as server:
        runner = CodeAsPoliciesRunner(_backend(server))
        outcome = runner.run(KitchenPrimitives(kitchen), kitchen.task.instruction)
    assert outcome.result is not None and "UnsafeMotionError" in outcome.result.value
    assert "outside the workspace" in outcome.result.value
    np.testing.assert_allclose(kitchen.backend.observe(render=False).joint_positions, before, atol=1e-3)


class _ExpertLowTier:
    """A low-tier driver (start / act / finished) over the scripted expert, recording what it was told."""

    def __init__(self, env: KitchenEnv):
        self.env = env
        self.expert = ScriptedExpert.from_kitchen(env.backend)  # type: ignore[arg-type]
        self.commands: list[LanguageCommand] = []
        self.done = False

    def reset(self) -> None:
        self.done = False

    def start(self, plan: MidLevelPlan, observation: Observation) -> None:
        self.commands.append(plan.command)
        self.expert.reset([Subtask.parse(plan.command.text)], self.env.scene_state(), observation)
        self.done = False

    def act(self, observation: Observation) -> np.ndarray:
        step = self.expert.act(observation, self.env.scene_state())
        self.done = step.done
        return step.action

    def finished(self, observation: Observation) -> bool:
        return self.done

    def drop_queued_actions(self) -> None:
        pass


def test_runner_executes_in_mujoco_through_the_low_tier_and_the_primitives(
    kitchen: KitchenEnv, reset_kitchen: Callable[..., Observation]
) -> None:
    """The pick goes to the low tier (execute), the place runs a primitive; the task's predicate judges."""
    reset_kitchen()
    low_tier = _ExpertLowTier(kitchen)
    said: list[str] = []
    code = (
        'say("on it")\nexecute("pick up the apple")\nif get_gripper_opening() < 0.07:\n'
        '    place("apple", "in", "bowl")\nret_val = get_obj_pos("apple")'
    )
    with ScriptedChatServer([code]) as server:
        primitives = KitchenPrimitives(kitchen, low_tier=low_tier, on_say=said.append)
        assert isinstance(primitives, PrimitiveApi) and set(primitives.api()) == set(PRIMITIVE_NAMES)
        runner = CodeAsPoliciesRunner(_backend(server))
        outcome = runner.run(primitives, kitchen.task.instruction)
    assert outcome.error is None, outcome.error
    assert outcome.success  # the apple is in the bowl
    assert said == ["on it"]
    assert [c.text for c in low_tier.commands] == ["pick up the apple"]
    assert low_tier.commands[0].style is CommandStyle.SUBTASK and low_tier.commands[0].source is CommandSource.PLANNER
    assert runner.primitives is primitives
    assert [(e.name, e.ok) for e in primitives.events] == [("execute", True), ("place", True)]
    bowl = kitchen.scene_state().objects["bowl"].bounds
    assert outcome.result is not None and bowl.contains(np.asarray(outcome.result.value), margin=0.03)
    with ScriptedChatServer(['execute("juggle the apple")']) as server:
        outcome = CodeAsPoliciesRunner(_backend(server)).run(
            KitchenPrimitives(kitchen, low_tier=low_tier), kitchen.task.instruction
        )
    assert outcome.error is not None and "cannot parse subtask 'juggle the apple'" in outcome.error


def test_perception_reads_the_depth_camera_and_agrees_with_the_simulator(
    reset_kitchen: Callable[..., Observation], kitchen: KitchenEnv
) -> None:
    perception = ObservationPerception(reset_kitchen())
    state = kitchen.scene_state()
    assert {"apple", "bowl"} <= set(perception.object_names()) <= set(state.objects)
    for name in perception.object_names():
        bounds = state.objects[name].bounds
        assert bounds.contains(perception.position(name), margin=0.02), name  # visible-surface centroid
        low, high = perception.bbox(name)
        assert bounds.contains(low, margin=0.02) and bounds.contains(high, margin=0.02), name
        assert perception.points(name, max_points=20).shape == (20, 3)
    with pytest.raises(ValueError, match="unknown object 'fridge'"):
        perception.position("fridge")


def test_tiers_eval_scores_code_as_policies_on_the_endpoint_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plumbing: the endpoint answers with code for the grammar planner's plan; eval reads it from the env."""
    from tiers.cli.main import main

    with ScriptedChatServer(grammar_code_script) as server:
        monkeypatch.setenv("TIERS_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("TIERS_LLM_MODEL", "scripted-cap")
        monkeypatch.delenv("TIERS_LLM_MODEL_PATH", raising=False)
        argv = ["eval", "--mode", "planner", "--planner", "code_as_policies", "--split", "train", "--limit", "2"]
        assert main([*argv, "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "results.json").read_text())["summary"]["overall"]
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    assert len(server.requests) == 2 and all("grasp(name)" in json.dumps(r["messages"]) for r in server.requests)


class _JumpyLowTier:
    """A low tier that asks joint 1 to move 0.08 rad per step from rest: within its velocity limit
    (check_motion lets it through) but far over its acceleration limit (the robot's filter must slow it)."""

    def __init__(self) -> None:
        self.target: np.ndarray | None = None
        self.steps = 0

    def reset(self) -> None:
        self.target = None

    def start(self, plan: MidLevelPlan, observation: Observation) -> None:
        self.target = np.append(observation.joint_positions, observation.gripper_opening)
        self.steps = 0

    def act(self, observation: Observation) -> np.ndarray:
        assert self.target is not None
        self.target = self.target.copy()
        self.target[0] += 0.08
        self.steps += 1
        return self.target

    def finished(self, observation: Observation) -> bool:
        return self.steps >= 3

    def drop_queued_actions(self) -> None:
        pass


def test_low_tier_commands_pass_the_robot_safety_filter(
    kitchen: KitchenEnv, reset_kitchen: Callable[..., Observation]
) -> None:
    start = reset_kitchen().joint_positions[0]
    primitives = KitchenPrimitives(kitchen, low_tier=_JumpyLowTier())
    primitives.execute("open the drawer")  # the text is handed down; this low tier ignores it
    assert primitives.interventions >= 1
    moved = kitchen.backend.observe(render=False).joint_positions[0] - start
    assert 0 < moved < 0.2  # asked for 0.24 rad in 3 steps; the filter's acceleration limit slowed it


def test_program_for_subtasks_is_the_inverse_of_the_recorded_calls() -> None:
    """The plumbing server's code for a plan, run against the planning API, records that plan again."""
    plan = [
        Subtask.parse(text)
        for text in (
            "open the drawer",
            "pick up the can",
            "put the can in the drawer",
            "close the drawer",
            "push the box to the left",
        )
    ]
    code = program_for_subtasks(plan)
    assert code.splitlines()[0] == "open_fixture('drawer')"
    statements = [statement.value for statement in ast.parse(code).body if isinstance(statement, ast.Expr)]
    calls = [
        (call.func.id, [ast.literal_eval(arg) for arg in call.args], {})
        for call in statements
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
    ]
    assert len(calls) == len(plan)
    assert commands_from_program_calls(calls) == plan
    assert program_for_subtasks([]) == "say('I cannot do that')"
