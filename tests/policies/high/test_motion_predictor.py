"""The RT-H language-motion predictor: trained on a real recording, saved and reloaded, overridden by a person.

Training is the application :mod:`tiers.apps.motion_predictor_training` (on the one training loop); the predictor
it writes is this tier's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from tiers.apps.motion_predictor_training import (
    METRICS_FILE,
    RUN_DIR,
    MotionTrainConfig,
    MotionTrainerConfig,
    MotionTrainSummary,
    main,
    train_motion_predictor,
)
from tiers.commands.motion_words import VOCABULARY
from tiers.core.errors import ConfigError, ContractError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import HighLevelPlanner
from tiers.policies.high.motion_predictor import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    MotionPredictor,
    MotionPredictorConfig,
    load_model,
)
from tiers.services.text_encoder import TextEncoder

STATE_DIM = 8 + 7  # joint positions + gripper opening, tool pose (the default state_keys)
CAMERA = "observation.images.front"
TINY = MotionTrainConfig(  # the camera path of the network; the subtask path is test_motion_predictor_learns.py's
    predictor=MotionPredictorConfig(
        camera=CAMERA, subtask=False, image_size=(32, 32), channels=(8, 16), groups=4, hidden=32, override_s=1.0
    ),
    trainer=MotionTrainerConfig(steps=6, batch_size=8, warmup_steps=2, held_out_every=2, eval_every=0),
)


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


@pytest.fixture(scope="module")
def trained(
    camera_dataset: Path, tmp_path_factory: pytest.TempPathFactory, encoder: TextEncoder
) -> tuple[Path, MotionTrainSummary]:
    out = tmp_path_factory.mktemp("motion") / "run"
    return out, train_motion_predictor(camera_dataset, TINY, out, encoder=encoder)


@pytest.fixture(scope="module")
def observation() -> Observation:
    """A real rendered kitchen observation (front camera 128 px) at the start of the drawer task."""
    import tiers.sim

    env = tiers.sim.make("open/drawer/0", render=True)
    try:
        first, _ = env.reset(seed=0)
    finally:
        env.close()
    return first


def test_training_on_a_recording_reports_held_out_accuracy_and_the_baseline(
    trained: tuple[Path, MotionTrainSummary], camera_dataset: Path
) -> None:
    out, summary = trained
    assert {path.name for path in out.iterdir()} == {WEIGHTS_FILE, CONFIG_FILE, METRICS_FILE, RUN_DIR}
    log = json.loads((out / RUN_DIR / "train_log.json").read_text())  # the one training loop's log
    assert [record["loss"] for record in log["log"]] == summary.losses and log["summary"]["steps"] == TINY.trainer.steps
    assert load_model(out / RUN_DIR / "checkpoints" / "last").state_dim == STATE_DIM  # its checkpoint: a predictor
    table = pq.read_table(sorted(camera_dataset.glob("data/*/*.parquet"))[0]).to_pydict()
    frames = list(zip(table["episode_index"], table["language_motion"], strict=True))
    for chunk in sorted(camera_dataset.glob("data/*/*.parquet"))[1:]:
        more = pq.read_table(chunk, columns=["episode_index", "language_motion"]).to_pydict()
        frames += list(zip(more["episode_index"], more["language_motion"], strict=True))
    assert (summary.train_episodes, summary.held_out_episodes) == ([0], [1])  # every 2nd episode held out
    held = [label for episode, label in frames if episode == 1]
    train = [label for episode, label in frames if episode == 0]
    assert (summary.train_frames, summary.held_out_frames) == (len(train), len(held))
    assert summary.majority_label == max(set(train), key=train.count)
    assert summary.majority_accuracy == pytest.approx(held.count(summary.majority_label) / len(held))
    assert 0.0 <= summary.held_out_accuracy <= 1.0 and np.isfinite(summary.losses).all()
    assert sum(n for _, n in summary.held_out_per_label.values()) == len(held)
    assert summary.held_out_per_task.keys() == {"open the kitchen drawer"}
    assert summary.held_out_per_task["open the kitchen drawer"][0] == round(summary.held_out_accuracy * len(held))
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["held_out_accuracy"] == summary.held_out_accuracy
    written = json.loads((out / CONFIG_FILE).read_text())
    assert written["training"]["held_out_episodes"] == [1] and written["state_dim"] == STATE_DIM


def test_the_predictor_plans_valid_motions_from_a_kitchen_observation(
    trained: tuple[Path, MotionTrainSummary], observation: Observation, encoder: TextEncoder
) -> None:
    predictor = MotionPredictor.load(trained[0], encoder=encoder)
    assert isinstance(predictor, HighLevelPlanner)
    predictor.reset("open the kitchen drawer")
    probabilities = predictor.probabilities(observation)
    assert list(probabilities) == list(VOCABULARY) and sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    command = predictor.next_command(observation)
    assert command is not None and command.text in VOCABULARY
    assert (command.style, command.source) == (CommandStyle.MOTION, CommandSource.PLANNER)
    assert command.text == max(probabilities, key=probabilities.__getitem__)
    assert predictor.next_command(observation) is command  # the same motion goes on as the same command

    blind = dataclasses.replace(observation, images={})
    with pytest.raises(ContractError, match="reads camera 'front'; the observation has"):
        predictor.next_command(blind)


def test_save_and_load_round_trip_gives_the_same_logits(
    trained: tuple[Path, MotionTrainSummary], tmp_path: Path
) -> None:
    model = load_model(trained[0])
    predictor = MotionPredictor(model)
    predictor.save(tmp_path / "copy")
    again = load_model(tmp_path / "copy")
    assert again.config == model.config == TINY.predictor and again.state_dim == STATE_DIM
    generator = torch.Generator().manual_seed(0)
    images, states = torch.rand(3, 3, 32, 32, generator=generator), torch.randn(3, STATE_DIM, generator=generator)
    texts = torch.randn(3, 384, generator=generator)
    first, again_out = model(states, texts, images=images), again(states, texts, images=images)
    assert torch.equal(first[0], again_out[0]) and torch.equal(first[1], again_out[1])
    assert torch.count_nonzero(model.state_std - 1.0) > 0  # the dataset's normalisation was saved with the weights

    (tmp_path / "copy" / WEIGHTS_FILE).unlink()
    with pytest.raises(ContractError, match=r"model\.safetensors: not found"):
        load_model(tmp_path / "copy")


def test_a_human_motion_overrides_the_prediction_for_a_while(
    trained: tuple[Path, MotionTrainSummary], observation: Observation, encoder: TextEncoder
) -> None:
    predictor = MotionPredictor.load(trained[0], encoder=encoder)
    predictor.reset("open the kitchen drawer")
    at = dataclasses.replace

    predicted = predictor.next_command(at(observation, timestamp=1.0))
    assert predicted is not None
    human = LanguageCommand("rotate gripper clockwise", CommandStyle.MOTION, CommandSource.HUMAN_LIVE, 1.2, predicted)
    predictor.handle_correction(human)
    assert predictor.next_command(at(observation, timestamp=1.3)) is human
    assert predictor.next_command(at(observation, timestamp=2.1)) is human  # override_s = 1.0 s from t = 1.2 s
    after = predictor.next_command(at(observation, timestamp=2.3))
    assert after is not None and after.source is CommandSource.PLANNER and after.replaces is human
    assert after.text == predicted.text  # the same observation: the same prediction as before the override

    subtask = LanguageCommand("grasp the handle", CommandStyle.CORRECTION, CommandSource.HUMAN_LIVE, 2.4)
    predictor.handle_correction(subtask)  # not a motion: the runtime's business, not this tier's
    assert predictor.next_command(at(observation, timestamp=2.5)) is after
    stop = LanguageCommand("stop", CommandStyle.STOP, CommandSource.HUMAN_LIVE, 2.6)
    predictor.handle_correction(stop)
    assert predictor.next_command(at(observation, timestamp=2.7)) is stop
    predictor.reset("open the kitchen drawer")  # a new episode forgets the override
    resumed = predictor.next_command(at(observation, timestamp=2.8))
    assert resumed is not None and resumed.source is CommandSource.PLANNER


def test_the_command_line_hook_and_bad_configs(
    camera_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    preset = tmp_path / "tiny.yaml"
    TINY.to_yaml(preset)
    argv = ["--dataset", str(camera_dataset), "--out", str(tmp_path / "cli"), "--config", str(preset), "--steps", "2"]
    assert main([*argv, "--no-progress", "trainer.held_out_every=0"]) == 0
    printed = capsys.readouterr().out
    assert "2 steps" in printed and "held-out episodes [] (0 frames)" in printed
    assert json.loads((tmp_path / "cli" / METRICS_FILE).read_text())["steps"] == 2
    assert main([*argv, "trainer.held_out_episodes=[5]"]) == 2
    assert "held_out_episodes [5] are not episodes of the dataset" in capsys.readouterr().err

    with pytest.raises(ConfigError, match="channels"):
        MotionPredictorConfig.from_dict({"channels": [12, 16], "groups": 8})
    with pytest.raises(ConfigError, match=r"camera must be an observation\.images"):
        MotionPredictorConfig.from_dict({"camera": "front"})
    with pytest.raises(ConfigError, match="done_threshold"):
        MotionPredictorConfig.from_dict({"done_threshold": 1.0})
