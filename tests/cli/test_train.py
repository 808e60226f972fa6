"""``tiers train`` end to end on recorded camera data: checkpoint, resume, kitchen evaluation, acting in the env."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tiers.apps.evaluation.report import EvalMode
from tiers.apps.evaluation.settings import EvalSettings
from tiers.apps.training import LowPolicyTrainConfig
from tiers.cli import train
from tiers.core.errors import ConfigError
from tiers.core.locations import preset_path
from tiers.policies.low.checkpoint import load_policy, read_checkpoint
from tiers.policies.low.policy import GenerativeLowPolicy, generator_config_dict
from tiers.policies.low.registry import generator_config
from tiers.sim.kitchen.env import KitchenEnv

TASK = "open/drawer/0"
ParseCli = Callable[..., argparse.Namespace]


def test_every_preset_validates() -> None:
    for name in ("beso_kitchen", "flow_kitchen", "ddpm_kitchen", "beso_state", "tiny"):
        config = LowPolicyTrainConfig.from_yaml(preset_path("train", name))
        options = generator_config_dict(config.policy, action_dim=8, n_tokens=10)  # the core's options validate too
        core = generator_config(config.policy.generator, options)
        assert core.network.horizon == config.policy.horizon  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"trainer\.lr"):
        LowPolicyTrainConfig.from_yaml(preset_path("train", "tiny"), overrides=["trainer.lr=-1"])


def test_train_writes_a_checkpoint_that_resumes_and_acts_in_the_kitchen(
    camera_dataset: Path, tmp_path: Path, parse_cli: ParseCli
) -> None:
    out = tmp_path / "run"
    tiny = str(preset_path("train", "tiny"))
    argv = ["--dataset", str(camera_dataset), "--policy", "beso", "--out", str(out), "--config", tiny]
    assert train.run(parse_cli("train", *argv, "--steps", "4", "--batch-size", "2", "--no-progress")) == 0

    last = out / "checkpoints" / "last"
    meta, features, stats = read_checkpoint(last)
    assert meta["step"] == 4 and meta["weights"] == "ema" and meta["config"]["generator"] == "beso"
    assert features.cameras == {"observation.images.front": [3, 32, 32]} and features.language_key == "subtask"
    assert set(stats) == {"observation.state", "action", "observation.images.front"}
    log = json.loads((out / "train_log.json").read_text())
    assert [record["step"] for record in log["log"]] == [1, 2, 3, 4]
    assert all(np.isfinite(record["loss"]) for record in log["log"])
    assert log["summary"]["steps"] == 4 and log["summary"]["samples_per_s"] > 0
    assert (out / "learning_curve.png").stat().st_size > 1000

    # the same run again refuses to overwrite; --resume continues the step count, optimiser, schedule and EMA
    with pytest.raises(ConfigError, match="already holds a run"):
        train.run(parse_cli("train", *argv, "--steps", "6"))
    # resuming with a kitchen evaluation of the new checkpoint (tiers eval's control-mode runner)
    resumed = ["--dataset", str(camera_dataset), "--out", str(out), "--resume", "--steps", "6", "--no-progress"]
    kitchen = [f"eval.tasks=[{TASK}]", "eval.max_steps=4"]
    assert train.run(parse_cli("train", *resumed, *kitchen)) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert [record["step"] for record in log["log"]] == [1, 2, 3, 4, 5, 6]
    assert log["summary"]["session_steps"] == 2
    (evaluation,) = log["eval"]
    assert evaluation["step"] == 6 and evaluation["episodes"] == 1 and evaluation["mean_steps"] == 4
    assert evaluation["success_rate"] == 0.0  # 6 steps of training do not open a drawer in 4 control steps
    state = json.loads((last / "training_state" / "state.json").read_text())
    assert state["step"] == 6 and state["scheduler"]["last_epoch"] == 6 and state["ema"]["optimization_step"] == 6
    assert last.resolve().name == "00000006"

    # the checkpoint loads onto the simulated Panda and drives it from rendered camera images
    env = KitchenEnv(TASK, render=True)
    policy = load_policy(last, dataset=camera_dataset, embodiment=env.embodiment)
    assert isinstance(policy, GenerativeLowPolicy)
    observation, _ = env.reset(seed=0)
    policy.reset()
    for _ in range(5):
        batch = policy.batch_from_observation(observation, command="open the drawer")
        action = policy.action_for_env(policy.select_action(batch))
        assert action.shape == env.action_space.shape and np.all(np.isfinite(action))
        observation, _, _, _, info = env.step(action)
        assert info["rejected_actions"] == 0
    env.close()


def test_eval_refuses_a_controller_that_is_neither_known_nor_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="or a checkpoint folder"):
        EvalSettings(mode=EvalMode.CONTROL, controller=str(tmp_path))
