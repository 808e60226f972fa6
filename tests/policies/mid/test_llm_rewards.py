"""VLS rewards written by a language model: reward programs through a real local chat server, run in the high
tier's sandbox, recorded by the reward API and built by the same builder as the templates; bad replies become
reasons and the templates stand in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tiers.apps.scripted_server import ScriptedChatServer, ScriptedReply
from tiers.commands.subtasks import Subtask
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.policies.mid.affordances import Affordance, AffordanceDetector, AffordanceKind, FixtureMap
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.language_rewards import subtask_rewards, template_spec
from tiers.policies.mid.llm_rewards import REWARD_EXAMPLES, LLMRewardConfig, LLMRewardResult, LLMRewardWriter
from tiers.policies.mid.perception import BACKGROUND, SceneCloud, SegmentationSource, perception_embodiment
from tiers.policies.mid.planner import KeypointPathPlanner, MidPlannerConfig
from tiers.policies.mid.reward_spec import MAX_TERMS, RewardRecorder, RewardSource, RewardSpecError, build_staged
from tiers.policies.mid.steering import StagedGuidance
from tiers.services.chat import OpenAIChatBackend, OpenAIChatConfig, message_text
from tiers.services.sandbox import run_sandboxed
from tiers.sim.kitchen.layout import sample_layout
from tiers.sim.mujoco import SCENE_XML, MujocoKitchen

SPEC = EmbodimentSpec.load("panda")
MAX_OPENING = SPEC.gripper.max_opening

# what a model would write for "pick up the apple", in its own words (not the prompt's example verbatim)
PICK_PROGRAM = """\
```python
info = scene_info()
# shared by every stage: point down, avoid the other objects, stay over the counter
shared = [keep_down(weight=1.0), keep_clear("obstacles", margin=0.04, weight=100.0),
          stay_above(info["support_height"], margin=0.01, weight=100.0)]
above = keypoint("approach_start")
stage("pre-grasp", [reach(above, weight=10.0), gripper(info["max_opening"], weight=10.0)] + shared)
stage("grasp", [reach(keypoint("point")), gripper(0.0)] + shared, enter=0.02)
lift = [p for p in keypoint("point")]
lift[2] = lift[2] + 0.12
stage("lift", [reach(lift), gripper(0.0)] + shared)
```"""


@pytest.fixture(scope="module")
def model() -> object:
    import mujoco

    return mujoco.MjModel.from_xml_path(str(SCENE_XML))


@pytest.fixture(scope="module")
def fk(model: object) -> ArmFK:
    return ArmFK.from_model(model, joint_names=SPEC.joint_names, site_name=SPEC.ee_frame)


def _block(low: list[float], high: list[float]) -> np.ndarray:
    axes = [np.arange(lo, hi + 1e-9, 0.01) for lo, hi in zip(low, high, strict=True)]
    return np.stack(np.meshgrid(*axes), -1).reshape(-1, 3)


@pytest.fixture(scope="module")
def scene(model: object) -> tuple[Affordance, SceneCloud]:
    """An apple and a bowl on the counter as a masked cloud, and the apple's grasp from the real detector."""
    grid = np.stack(np.meshgrid(np.arange(0.2, 0.8, 0.02), np.arange(-0.4, 0.4, 0.02)), -1).reshape(-1, 2)
    counter = np.column_stack([grid, np.zeros(len(grid))])
    apple, bowl = _block([0.47, 0.07, 0.0], [0.53, 0.13, 0.07]), _block([0.40, -0.2, 0.0], [0.55, -0.05, 0.06])
    points = np.concatenate([counter, apple, bowl])
    labels = np.concatenate([np.full(len(counter), BACKGROUND), np.zeros(len(apple)), np.ones(len(bowl))])
    cloud = SceneCloud(
        points, np.full((len(points), 3), 0.5), labels.astype(np.int32), {0: "apple", 1: "bowl"},
        SegmentationSource.MASKS,
    )  # fmt: skip
    found = AffordanceDetector(FixtureMap.from_model(model)).detect(Subtask.parse("pick up the apple"), cloud)
    assert found.affordance is not None, found.reason
    return found.affordance, cloud


def write(
    replies: list[str | ScriptedReply],
    fk: ArmFK,
    scene: tuple[Affordance, SceneCloud],
    *,
    fallback: bool = True,
    repair: int = 0,
) -> tuple[LLMRewardResult, list[dict[str, object]]]:
    affordance, cloud = scene
    with ScriptedChatServer(replies) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted", backoff_s=0.01))
        writer = LLMRewardWriter(backend, LLMRewardConfig(repair_rounds=repair))
        result = writer.write(
            "pick up the apple", affordance, fk, cloud=cloud, max_opening=MAX_OPENING, fallback=fallback
        )
        return result, server.requests


def random_actions(batch: int = 4, steps: int = 8, seed: int = 0) -> torch.Tensor:
    """(B, Ta, A) joint targets around home and gripper openings in [0, max]."""
    generator = torch.Generator().manual_seed(seed)
    joints = torch.tensor(SPEC.home, dtype=torch.float32) + 0.3 * torch.randn(batch, steps, 7, generator=generator)
    grip = MAX_OPENING * torch.rand(batch, steps, 1, generator=generator)
    return torch.cat([joints, grip], dim=-1)


def assert_same_rewards(ours: StagedGuidance, theirs: StagedGuidance) -> None:
    """Same stages, thresholds, terms and weights; equal rewards and progress, stage by stage."""
    assert [s.name for s in ours.stages] == [s.name for s in theirs.stages]
    actions = random_actions()
    for pose in np.random.default_rng(1).uniform([0.3, -0.2, 0.0], [0.7, 0.2, 0.4], size=(5, 3)):
        observation = Observation(
            joint_positions=np.zeros(7), joint_velocities=np.zeros(7), ee_pose=np.concatenate([pose, [1.0, 0, 0, 0]]),
            gripper_opening=0.04, timestamp=0.0,
        )  # fmt: skip
        for a, b in zip(ours.stages, theirs.stages, strict=True):
            assert a.progress(observation) == pytest.approx(b.progress(observation), abs=1e-12)
    for a, b in zip(ours.stages, theirs.stages, strict=True):
        assert (a.enter, a.exit) == (b.enter, b.exit)
        assert [(t.name, t.weight) for t in a.terms] == [(t.name, t.weight) for t in b.terms]
        for term_a, term_b in zip(a.terms, b.terms, strict=True):
            torch.testing.assert_close(term_a(actions), term_b(actions), rtol=1e-6, atol=1e-6)
    for index in range(len(ours.stages)):  # the staged guidance term follows the current stage
        ours.index = theirs.index = index
        torch.testing.assert_close(ours.guidance(5.0)(actions), theirs.guidance(5.0)(actions))


def test_a_valid_program_reproduces_the_template(fk: ArmFK, scene: tuple[Affordance, SceneCloud]) -> None:
    result, requests = write([PICK_PROGRAM], fk, scene)
    assert result.ok and result.source is RewardSource.LLM and result.reason == "", result.reason
    assert result.staged is not None and result.spec is not None and result.requests == 1
    assert result.api_calls == 16  # every call crossed to this process: scene_info, 3 keypoints, 9 terms, 3 stages
    affordance, cloud = scene
    assert_same_rewards(result.staged, subtask_rewards(affordance, fk, cloud=cloud, max_opening=MAX_OPENING))
    # the prompt: the API doc, the examples, then this subtask with its keypoints by name and the point sets
    messages = requests[0]["messages"]
    assert isinstance(messages, list)
    assert "keep_clear(what" in message_text(messages[0]) and len(messages) == 2 + 2 * len(REWARD_EXAMPLES)
    query = message_text(messages[-1])
    for text in ("Subtask: pick up the apple", "grasp of the apple", "approach_start: [", "lifted: [", "obstacles"):
        assert text in query


@pytest.mark.parametrize(
    "escape",
    [
        "keypoint('point')\nos = __import__('os')\nos.system('touch /tmp/llm_rewards_escape')",
        "keypoint('point')\nbase = ().__class__.__bases__[0]\nprint(base.__subclasses__())",
        "import os\nstage('x', [keep_down()])",
    ],
)
def test_an_escape_attempt_is_refused_before_anything_runs(
    fk: ArmFK, scene: tuple[Affordance, SceneCloud], escape: str
) -> None:
    result, _ = write([escape], fk, scene)
    assert not result.ok and "sandbox refused the program" in result.reason, result.reason
    assert result.api_calls == 0  # refused by the parent's checker: the first API call never happened
    assert not Path("/tmp/llm_rewards_escape").exists()
    # the templates stand in, and the result says so
    affordance, cloud = scene
    assert result.source is RewardSource.TEMPLATES and result.staged is not None
    assert_same_rewards(result.staged, subtask_rewards(affordance, fk, cloud=cloud, max_opening=MAX_OPENING))
    refused, _ = write([escape], fk, scene, fallback=False)
    assert refused.staged is None and refused.source is None and refused.reason == result.reason


def test_an_unknown_keypoint_names_the_valid_ones(fk: ArmFK, scene: tuple[Affordance, SceneCloud]) -> None:
    result, _ = write(['stage("grasp", [reach("handle"), gripper(0.0)])'], fk, scene)
    assert not result.ok and "unknown keypoint point='handle'" in result.reason
    assert "valid names: approach_start, lifted, point" in result.reason
    # swallowing the API error does not help: the failed call is remembered
    caught = 'try:\n    reach("handle")\nexcept ApiError:\n    pass\nstage("grasp", [reach("point")])'
    result, _ = write([caught], fk, scene)
    assert not result.ok and "invalid reward spec" in result.reason and "unknown keypoint" in result.reason


def test_a_reply_without_code_and_a_failing_program_give_reasons(
    fk: ArmFK, scene: tuple[Affordance, SceneCloud]
) -> None:
    result, _ = write(["I am sorry, I cannot help with robots."], fk, scene)
    assert not result.ok and "holds no Python code" in result.reason and result.program == ""
    result, _ = write(["```python\n```"], fk, scene)
    assert "no Python code" in result.reason
    result, _ = write(["x = keypoint('point')\ny = 1 / 0"], fk, scene)
    assert "the program failed" in result.reason and "ZeroDivisionError" in result.reason and result.api_calls == 1
    result, _ = write(["while True:\n    pass"], fk, scene)
    assert "the sandbox stopped the program" in result.reason
    result, _ = write(["keep_down()"], fk, scene)
    assert "no stage" in result.reason
    result, _ = write([ScriptedReply(raw="{not json")], fk, scene, repair=1)  # a broken endpoint is not repaired
    assert "the model could not be asked: BackendError" in result.reason and result.requests == 1
    assert result.source is RewardSource.TEMPLATES


def test_the_repair_round_sends_the_error_back(fk: ArmFK, scene: tuple[Affordance, SceneCloud]) -> None:
    broken = 'stage("grasp", [reach("point", weight=float("nan")), gripper(0.0)])'
    result, requests = write([broken, PICK_PROGRAM], fk, scene, repair=1)
    assert result.ok, result.reason
    assert result.requests == 2 and len(result.failures) == 1 and "weight must be a finite number" in result.failures[0]
    repair = requests[1]["messages"]
    assert isinstance(repair, list)
    assert message_text(repair[-2]) == broken and "weight must be a finite number" in message_text(repair[-1])
    # without a repair round the first failure is final
    result, _ = write([broken, PICK_PROGRAM], fk, scene, repair=0)
    assert not result.ok and result.requests == 1


def test_the_recorder_validates_every_field(fk: ArmFK, scene: tuple[Affordance, SceneCloud]) -> None:
    affordance, cloud = scene
    recorder = RewardRecorder(affordance, cloud=cloud, max_opening=MAX_OPENING)
    api = SimpleNamespace(**recorder.api())  # the functions a sandboxed program calls
    cases = [
        (lambda: api.reach("point", weight=float("inf")), "reach: weight must be a finite number"),
        (lambda: api.reach("point", weight=0.0), r"weight must be in \(0.0, 1000.0\], got 0.0"),
        (lambda: api.reach([0.5, 0.1]), "point must be \\[x, y, z\\]"),
        (lambda: api.reach([0.5, 0.1, 9.0]), r"point\[2\] must be in \[-2.0, 2.0\], got 9.0"),
        (lambda: api.keep_clear("table"), "unknown point set 'table'; valid names: apple, bowl, obstacles"),
        (lambda: api.keep_clear("obstacles", margin=-0.01), "margin must be in"),
        (lambda: api.keep_clear([[0.5, 0, 0], [0.4, 0.1, 0.1]]), "exceeds"),
        (lambda: api.stay_above(True), "height must be a finite number"),
        (lambda: api.gripper(0.2), r"opening must be in \[0.0, 0.08\]"),
        (lambda: api.stage("empty", []), "stage 'empty': terms must be a non-empty list"),
        (lambda: api.stage("ghost", [7]), "terms holds 7, not a term id"),
        (lambda: api.stage("keep", [api.keep_down()]), "no reach term and no target"),
        (
            lambda: api.stage("thin", [api.reach("point")], enter=0.05, fallback=0.05),
            r"fallback must be in \(0.05, 1.0\]",
        ),
    ]
    for call, message in cases:
        with pytest.raises(RewardSpecError, match=message):
            call()
    # every failed call is remembered, so the spec is refused even where the program went on
    with pytest.raises(RewardSpecError, match="13 API call\\(s\\) failed, the first: reach: weight"):
        recorder.spec()

    # a box keep-clear and a stage with an explicit target: terms used by one stage carry its name
    boxed = RewardRecorder(affordance, cloud=cloud, max_opening=MAX_OPENING)
    box = boxed.keep_clear([[0.4, -0.2, 0.0], [0.55, -0.05, 0.06]])
    boxed.stage("hover", [box, boxed.keep_down()], target="lifted")
    staged = build_staged(boxed.spec(), fk)
    assert [t.name for t in staged.stages[0].terms] == ["clear:region:hover", "orientation:hover"]
    assert staged.stages[0].enter == 0.02 and staged.stages[0].exit == float("inf")

    # a term in no stage is an error (it was meant to steer, and would not)
    forgotten = RewardRecorder(affordance)
    forgotten.keep_down()
    forgotten.stage("grasp", [forgotten.reach("point")])
    with pytest.raises(RewardSpecError, match="terms 0 \\(keep_down\\) are in no stage"):
        forgotten.spec()
    full = RewardRecorder(affordance)
    for _ in range(MAX_TERMS):
        full.keep_down()
    with pytest.raises(RewardSpecError, match=f"too many terms, the limit is {MAX_TERMS}"):
        full.keep_down()


@pytest.mark.parametrize("index", range(len(REWARD_EXAMPLES)))
def test_the_prompt_examples_are_the_templates(fk: ArmFK, scene: tuple[Affordance, SceneCloud], index: int) -> None:
    """Each example program, run in the sandbox against its kind of affordance, builds the template's rewards."""
    _, cloud = scene
    _, example, program = REWARD_EXAMPLES[index]
    affordance = Affordance(
        example.kind, example.target, example.point, opening=example.opening, motion=example.motion,
        low=example.point - 0.03, high=example.point + 0.03,
    )  # fmt: skip
    api = RewardRecorder(affordance, cloud=cloud, max_opening=MAX_OPENING)
    run_sandboxed(program, api.api())
    expected = template_spec(affordance, cloud=cloud, max_opening=MAX_OPENING)
    assert_same_rewards(build_staged(api.spec(), fk), build_staged(expected, fk))
    assert {e[1].kind for e in REWARD_EXAMPLES} == {AffordanceKind.GRASP, AffordanceKind.PLACE, AffordanceKind.HANDLE}


def test_the_planner_config_chooses_the_reward_source(fk: ArmFK, model: object) -> None:
    assert MidPlannerConfig().reward_source is RewardSource.TEMPLATES  # the default is unchanged
    config = MidPlannerConfig.from_dict(
        {"vls_weight": 1.0, "reward_source": "llm", "llm_rewards": {"repair_rounds": 0}}
    )
    assert config.reward_source is RewardSource.LLM and config.llm_rewards.repair_rounds == 0
    with pytest.raises(ValueError, match="reward_source 'llm' needs vls_weight > 0"):
        MidPlannerConfig(reward_source=RewardSource.LLM)
    with ScriptedChatServer([PICK_PROGRAM]) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted"))
        planner = KeypointPathPlanner(
            embodiment=SPEC, fixtures=FixtureMap.from_model(model), arm_fk=fk, config=config, reward_backend=backend
        )
        assert planner.reward_writer is not None and planner.reward_writer.config.repair_rounds == 0
    # without a backend the planner builds one from the config / environment, as the high tier does
    endpoint = MidPlannerConfig(
        vls_weight=1.0, reward_source=RewardSource.LLM,
        llm_rewards=LLMRewardConfig(base_url="http://127.0.0.1:9/v1", model="local"),
    )  # fmt: skip
    built = KeypointPathPlanner(embodiment=SPEC, fixtures=FixtureMap.from_model(model), arm_fk=fk, config=endpoint)
    assert built.reward_writer is not None and isinstance(built.reward_writer.backend, OpenAIChatBackend)


@pytest.fixture(scope="module")
def kitchen() -> Iterator[MujocoKitchen]:
    kitchen = MujocoKitchen(perception_embodiment(SPEC, width=320, height=240))
    yield kitchen
    kitchen.close()


def test_the_planner_hands_down_the_models_rewards_or_the_templates(kitchen: MujocoKitchen) -> None:
    """A rendered kitchen: the LLM's staged rewards go beside path tracking; a refused program leaves the
    templates' in their place and the outcome says why."""
    observation = kitchen.reset(sample_layout(5, objects=["apple", "bowl"], n_distractors=2))
    pick = LanguageCommand("pick up the apple", CommandStyle.SUBTASK, CommandSource.PLANNER, 0.0)
    config = MidPlannerConfig(
        vls_weight=1.0, reward_source=RewardSource.LLM, llm_rewards=LLMRewardConfig(repair_rounds=0)
    )
    templated = KeypointPathPlanner.for_kitchen(kitchen, MidPlannerConfig(vls_weight=1.0)).plan(observation, pick)
    actions = torch.tensor(np.append(observation.joint_positions, 0.04), dtype=torch.float32).expand(2, 8, -1)
    with ScriptedChatServer([PICK_PROGRAM, "import os"]) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted"))
        planner = KeypointPathPlanner.for_kitchen(kitchen, config, reward_backend=backend)
        for expected_reason in ("", "sandbox refused the program"):
            outcome = planner.plan_detailed(observation, pick)
            assert outcome.ok and expected_reason in outcome.rewards_reason
            assert bool(outcome.rewards_reason) == bool(expected_reason)
            assert [term.name for term in outcome.plan.guidance] == ["track:path", "staged:pre-grasp/grasp/lift"]
            torch.testing.assert_close(
                outcome.plan.guidance[1](actions, observation), templated.guidance[1](actions, observation)
            )
        assert len(server.requests) == 2
