"""``tiers train`` end to end on recorded camera data: checkpoint, resume, kitchen evaluation, acting in the env;
a dataset naming its cameras and language otherwise, mapped or refused with the flag to pass; loader workers."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tiers.apps.evaluation.report import EvalMode
from tiers.apps.evaluation.settings import EvalSettings
from tiers.apps.training import LowPolicyTrainConfig, fit_to_dataset, loader_workers
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


# -- a dataset that names things otherwise -------------------------------------------------------------------------


def relabelled(source: Path, out: Path, rename: Mapping[str, str | None]) -> Path:
    """A copy of the LeRobotDataset ``source`` with features renamed (dataset key -> new key) or dropped (None).

    Rewrites ``meta/info.json``, ``meta/stats.json``, the episodes table's per-video columns, the video
    folders and the data table's columns, as lerobot would have written a dataset recorded under those names.
    """
    shutil.copytree(source, out)
    info_path, stats_path = out / "meta" / "info.json", out / "meta" / "stats.json"
    info, stats = json.loads(info_path.read_text()), json.loads(stats_path.read_text())
    info["features"] = {rename.get(k, k): v for k, v in info["features"].items() if rename.get(k, k) is not None}
    stats = {rename.get(k, k): v for k, v in stats.items() if rename.get(k, k) is not None}
    info_path.write_text(json.dumps(info, indent=2))
    stats_path.write_text(json.dumps(stats, indent=2))
    for old, new in rename.items():
        if (out / "videos" / old).is_dir():
            if new is None:
                shutil.rmtree(out / "videos" / old)
            else:
                (out / "videos" / old).rename(out / "videos" / new)
    for table_path in [*(out / "meta" / "episodes").rglob("*.parquet"), *(out / "data").rglob("*.parquet")]:
        table = pq.read_table(table_path)
        names = []
        for name in table.column_names:
            for old, new in rename.items():
                if name == old or f"/{old}/" in name:
                    name = "" if new is None else name.replace(old, new)
            names.append(name)
        table = table.rename_columns(names).select([name for name in names if name])
        pq.write_table(table, table_path)
    return out


def test_train_maps_a_dataset_s_cameras_and_language_onto_the_preset_and_sizes_its_workers(
    camera_dataset: Path,
    tmp_path: Path,
    parse_cli: ParseCli,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # recorded as lerobot users name things: cam_high / cam_wrist, no top camera, only the task as language
    dataset = relabelled(
        camera_dataset,
        tmp_path / "cam_names",
        {
            "observation.images.front": "observation.images.cam_high",
            "observation.images.wrist": "observation.images.cam_wrist",
            "observation.images.top": None,
            "subtask": None,
            "language_motion": None,
        },
    )
    # a preset reading the front and wrist cameras and the subtask, with 4 loader workers, on a 2-core machine
    preset = yaml.safe_load(preset_path("train", "tiny").read_text())
    preset["policy"]["conditioning"]["cameras"] = ["front", "wrist"]
    preset["trainer"]["num_workers"] = 4
    config = tmp_path / "two_cameras.yaml"
    config.write_text(yaml.safe_dump(preset))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    out = tmp_path / "run"
    argv = ["--dataset", str(dataset), "--out", str(out), "--config", str(config), "--steps", "2", "--no-progress"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train.run(parse_cli("train", *argv)) == 0
    assert not [w for w in caught if "worker" in str(w.message)]  # torch's "suggested max number of worker"
    err = " ".join(capsys.readouterr().err.split())
    assert "camera wrist -> cam_wrist (by name)" in err and "camera front -> cam_high (the one camera left)" in err
    assert "language subtask -> task" in err
    assert "loader workers: 1 (trainer.num_workers=4 capped at 2 CPUs - 1" in err
    _, features, _ = read_checkpoint(out / "checkpoints" / "last")
    assert list(features.cameras) == ["observation.images.cam_high", "observation.images.cam_wrist"]
    assert features.language_key == "task"
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert saved["policy"]["conditioning"]["cameras"] == ["cam_high", "cam_wrist"]  # --resume reads the mapping
    assert saved["trainer"]["num_workers"] == 4  # as configured: a resume on another machine sizes it again


def test_train_names_the_flags_to_pass_when_it_cannot_map_the_dataset(
    camera_dataset: Path, tmp_path: Path, parse_cli: ParseCli
) -> None:
    # front renamed among two other cameras: which one is the preset's front? subtask gone, language_motion kept
    dataset = relabelled(
        camera_dataset,
        tmp_path / "ambiguous",
        {"observation.images.front": "observation.images.cam_high", "subtask": None},
    )
    tiny = str(preset_path("train", "tiny"))
    argv = ["--dataset", str(dataset), "--policy", "beso", "--out", str(tmp_path / "run"), "--config", tiny]
    with pytest.raises(ConfigError) as refused:
        train.run(parse_cli("train", *argv))
    message = str(refused.value)
    assert "its cameras: cam_high, wrist, top" in message and "policy.conditioning.cameras=[cam_high]" in message
    assert "policy.conditioning.language_key=task or policy.conditioning.language_key=language_motion" in message
    assert not (tmp_path / "run").exists()  # refused before anything was written

    # what the user names on the command line is used as given: never mapped, refused with the flag
    with pytest.raises(
        ConfigError, match=r"no camera \['front'\] .*pass e.g. policy.conditioning.cameras=\[cam_high\]"
    ):
        train.run(parse_cli("train", *argv, "policy.conditioning.cameras=[front]"))
    fit = fit_to_dataset(["wrist"], "language_motion", dataset, fixed_cameras=True, fixed_language=True)
    assert fit.cameras == ["wrist"] and fit.language_key == "language_motion" and not fit.notes

    # a subset: the preset's cameras the dataset lacks are dropped when every dataset camera is taken
    fit = fit_to_dataset(["front", "side", "wrist", "top"], None, camera_dataset)
    assert fit.cameras == ["front", "wrist", "top"]
    assert fit.notes == ["camera side dropped (the dataset has no such camera)"]
    # no RGB camera at all: a state-only policy is the user's call
    blind = relabelled(
        camera_dataset, tmp_path / "blind", {f"observation.images.{name}": None for name in ("front", "wrist", "top")}
    )
    with pytest.raises(ConfigError, match=r"no RGB camera; pass policy.conditioning.cameras=\[\]"):
        fit_to_dataset(["front"], "subtask", blind)


def test_loader_workers_fit_the_machine_unless_the_user_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert loader_workers(4)[0] == 4  # 8 CPUs: 4 fit
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 4 processes on this machine share them: 2 each, 1 loads
    workers, why = loader_workers(4)
    assert workers == 1 and "8 CPUs / 4 processes" in why
    assert loader_workers(4, explicit=True) == (4, "loader workers: 4 (as given)")
    assert loader_workers(0)[0] == 0
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert loader_workers(4)[0] == 0  # one core: load in the training process
