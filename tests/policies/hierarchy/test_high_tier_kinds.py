"""Every high-tier method runs as a hierarchy kind, built from its shipped YAML.

``code_as_policies`` and ``steering`` run kitchen episodes through the local scripted chat server over real
HTTP (the endpoint is a YAML override, as it would be for any OpenAI-compatible server); ``motion`` runs a
(random-weight) predictor at its own rate into a motion-conditioned low tier, and is refused on a low tier
that is not motion-conditioned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tiers.apps.evaluation.kinds  # noqa: F401  (the privileged kinds can be built)
from tiers.apps.evaluation.hierarchy_episode import run_hierarchy_episode
from tiers.apps.scripted_server import ScriptedChatServer, grammar_code_script, grammar_steering_script
from tiers.core.errors import ConfigError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.protocols import MidLevelPlan
from tiers.policies.hierarchy.build import describe_kinds, hierarchy_embodiment, load_hierarchy
from tiers.policies.hierarchy.registry import TIER_KINDS, TierKind, register
from tiers.policies.high.code_as_policies import ClosedLoopCodeAsPolicies
from tiers.policies.high.motion_predictor import MotionClassifier, MotionPredictorConfig, save_model
from tiers.policies.high.steering import FINISHED_PREFIX, SteeringPlanner
from tiers.services.chat import OpenAIChatBackend, OpenAIChatConfig, message_text
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.tasks import get_task
from tiers.sim.mujoco import MujocoKitchen

TASK = "place_close/cup-in-drawer/0"  # pick up the cup, put the cup in the drawer, close the drawer


def _endpoint(server: ScriptedChatServer) -> list[str]:
    return [f"planner.settings.base_url={server.base_url}", "planner.settings.model=scripted"]


@pytest.fixture(scope="module")
def kitchen() -> Iterator[KitchenEnv]:
    """The kitchen with the cameras the keypoint_paths mid tier needs (both YAMLs below use it)."""
    env = KitchenEnv(backend=MujocoKitchen(hierarchy_embodiment("cap_paths")), render=False)
    yield env
    env.close()


def test_the_new_kinds_are_listed() -> None:
    listing = describe_kinds()
    for kind in ("code_as_policies", "steering", "motion"):
        assert f"planner  {kind} " in listing


def test_code_as_policies_re_plans_after_a_failed_command_and_completes_the_task(kitchen: KitchenEnv) -> None:
    """The first program forgets the grasp: the mid tier finds no path for the place ("pick it up first"), the
    runtime hands the failure back, and the next program (told what failed, and what is in view) finishes."""

    def script(body: dict[str, Any]) -> str:
        if len(server.requests) == 1:
            return "place('cup', 'in', 'drawer')\nclose_fixture('drawer')"
        return grammar_code_script(body)

    with ScriptedChatServer(script) as server:
        hierarchy = load_hierarchy("cap_paths", env=kitchen, overrides=_endpoint(server))
        planner = hierarchy.runtime.planner
        assert isinstance(planner, ClosedLoopCodeAsPolicies) and hierarchy.privileged == []
        task = get_task(TASK)
        episode = run_hierarchy_episode(kitchen, hierarchy.runtime_for(task), task, seed=0)
        prompts = [message_text(request["messages"][-1]) for request in server.requests]

    assert episode.result.success, episode.result.reason
    assert episode.commands[:4] == [
        "put the cup in the drawer",
        "pick up the cup",
        "put the cup in the drawer",
        "close the drawer",
    ]
    assert [event.kind for event in hierarchy.runtime.events].count("replan") == 1
    assert len(planner.programs) == 2 and planner.programs[1].code.startswith("grasp('cup')")
    # perception came from the mid tier's RGB-D cloud; the re-write was told the failure and asked for the rest
    assert "# objects in view now: " in prompts[0] and "cup" in prompts[0]
    assert "# failed: put the cup in the drawer (no path: the cup is not in the hand: pick it up first)" in prompts[1]
    assert "# write the code for what remains of the task" in prompts[1]
    replanned = [e.command for e in hierarchy.runtime.events if e.kind == "command" and e.command][1]
    assert replanned.replaces is not None and replanned.replaces.text == "put the cup in the drawer"


def test_code_as_policies_tells_the_next_program_about_corrections_and_program_errors(kitchen: KitchenEnv) -> None:
    observation, _ = kitchen.reset(seed=0, options={"task": get_task("pick_place/apple-in-bowl/0")})

    class Seen:
        def object_names(self) -> list[str]:
            return ["apple", "bowl"]

    replies = iter(["x = 1 / 0", "grasp('apple')\nplace('apple', 'in', 'bowl')"])

    def script(body: dict[str, Any]) -> str:
        return next(replies, None) or grammar_code_script(body)

    with ScriptedChatServer(script) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted"))
        planner = ClosedLoopCodeAsPolicies(backend, perception=lambda _: Seen())  # type: ignore[arg-type,return-value]
        planner.reset("put the apple in the bowl")
        first = planner.next_command(observation)
        correction = LanguageCommand("pick up the banana", CommandStyle.SUBTASK, CommandSource.HUMAN_LIVE, 1.0)
        planner.handle_correction(correction)
        after = planner.next_command(observation)  # the correction was executed: a new program for the rest
        planner.reset("")
        prompts = [message_text(request["messages"][-1]) for request in server.requests]

    assert first is not None and first.text == "pick up the apple"
    assert "your last program stopped: SandboxProgramError" in prompts[1] and "ZeroDivisionError" in prompts[1]
    assert after is not None and after.text == "pick up the apple" and after.replaces is correction
    assert "# done so far: pick up the banana" in prompts[2] and "# the person said: pick up the banana" in prompts[2]
    assert len(planner.programs) == 0  # reset forgets the instruction's programs


def test_steering_queries_at_its_rate_and_when_a_command_ends(kitchen: KitchenEnv) -> None:
    with ScriptedChatServer(grammar_steering_script) as server:
        hierarchy = load_hierarchy("steering_paths", env=kitchen, overrides=_endpoint(server))
        planner = hierarchy.runtime.planner
        assert isinstance(planner, SteeringPlanner)
        assert hierarchy.runtime.settings.planner_period_s == planner.period_s == 2.0  # its own rate
        task = get_task(TASK)
        episode = run_hierarchy_episode(kitchen, hierarchy.runtime_for(task), task, seed=0)
        prompts = [message_text(request["messages"][-1]) for request in server.requests]

    assert episode.result.success, episode.result.reason
    assert episode.commands[:3] == ["pick up the cup", "put the cup in the drawer", "close the drawer"]
    finished = [prompt for prompt in prompts if FINISHED_PREFIX in prompt]
    assert f"{FINISHED_PREFIX}pick up the cup" in finished[0]  # the runtime said the pick ended: asked at once
    assert len(prompts) > len(finished) + 1  # periodic queries in between kept the command in force
    assert planner.rejected == []


class MotionRecorder:
    """A motion-conditioned low tier stand-in: records the commands it is started on and holds the arm."""

    def __init__(self) -> None:
        self.started: list[LanguageCommand] = []

    def reset(self) -> None:
        self.started = []

    def start(self, plan: MidLevelPlan, observation: Any) -> None:
        self.started.append(plan.command)

    def act(self, observation: Any) -> np.ndarray:
        return np.append(observation.joint_positions, observation.gripper_opening).astype(np.float32)

    def finished(self, observation: Any) -> bool:
        return False

    def drop_queued_actions(self) -> None:
        pass


@pytest.fixture
def motion_recorder() -> Iterator[MotionRecorder]:
    recorder = MotionRecorder()
    register(
        TierKind("motion_recorder", "low", lambda settings, context: recorder, "test", needs=frozenset({"motion"}))
    )
    yield recorder
    del TIER_KINDS["low"]["motion_recorder"]


def test_the_motion_planner_emits_phrases_at_its_rate_to_a_motion_conditioned_low_tier(
    tmp_path: Path, motion_recorder: MotionRecorder
) -> None:
    torch.manual_seed(0)
    config = MotionPredictorConfig(image_size=(32, 32), channels=(8, 16), groups=4, hidden=32)
    save_model(MotionClassifier(config, state_dim=8 + 7), tmp_path / "predictor")
    overrides = [f"planner.settings.checkpoint={tmp_path / 'predictor'}", "low.kind=motion_recorder"]
    env = KitchenEnv(render=True)
    try:
        hierarchy = load_hierarchy("motion_beso", env=env, overrides=overrides)
        assert hierarchy.runtime.settings.planner_period_s == 0.5
        task = get_task("open/drawer/0")
        runtime = hierarchy.runtime_for(task)
        observation, _ = env.reset(seed=0, options={"task": task})
        runtime.reset(task.instruction, observation)
        for _ in range(30):  # 1.5 s at 20 Hz: the predictor is asked at 0, 0.5, 1.0 s
            observation, *_ = env.step(runtime.step(observation).action)
    finally:
        env.close()
    assert motion_recorder.started and all(c.style is CommandStyle.MOTION for c in motion_recorder.started)
    assert all(c.text in config.vocabulary for c in motion_recorder.started)
    assert runtime.timers["planner"].summary()["calls"] == 3


def test_a_motion_planner_is_refused_on_a_low_tier_that_is_not_motion_conditioned(tmp_path: Path) -> None:
    path = tmp_path / "motion_ik.yaml"
    path.write_text("name: x\nplanner: {kind: motion, settings: {checkpoint: nowhere}}\nlow: {kind: ik_path}\n")
    with pytest.raises(ConfigError, match=r"planner 'motion' emits motion commands.*low tier 'ik_path'"):
        load_hierarchy(path)
    subtask_policy = ["low.settings.checkpoint=pretrained:kitchen_paths_beso"]  # conditioned on subtask + path
    with pytest.raises(ConfigError) as refused:
        load_hierarchy("motion_beso", overrides=subtask_policy)
    message = str(refused.value)
    assert "planner 'motion' emits motion commands" in message
    assert "low tier 'policy' is conditioned on subtask" in message
