"""Checkpoints: safetensors + JSON round trip, and load-time checks that name the mismatch."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import tiers.policies
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ContractError, EmbodimentMismatchError
from tiers.core.features import FeatureKey
from tiers.policies.low.checkpoint import (
    CONFIG_FILE,
    EMBODIMENT_FILE,
    STATS_FILE,
    WEIGHTS_FILE,
    PolicyFeatures,
    load_policy,
    read_checkpoint,
)
from tiers.policies.low.policy import GenerativeLowPolicy

ACTION = FeatureKey.ACTION.value
PRETRAINED = Path(tiers.policies.__file__).parent / "pretrained"  # the checkpoints shipped with tiers


MakePolicy = Callable[..., GenerativeLowPolicy]
Batch = Callable[[int], dict[str, Any]]
TINY = {"network": {"noise_embed_dim": 16, "transformer": {"width": 32, "depth": 1, "heads": 2}}, "steps": 3}


@pytest.fixture
def checkpoint(make_tiny_policy: MakePolicy, tmp_path: Path) -> Path:
    return Path(make_tiny_policy().save(tmp_path / "policy", step=7))


@pytest.mark.parametrize("generator", ["beso", "flow", "ddpm"])
def test_save_load_round_trip_gives_identical_actions(
    make_tiny_policy: MakePolicy, window_batch: Batch, state_dataset: Path, tmp_path: Path, generator: str
) -> None:
    policy = make_tiny_policy(generator, generator_options=TINY)
    loss, _ = policy(window_batch(4))  # the weights move off their initial values
    loss.backward()
    torch.optim.SGD(policy.parameters(), lr=0.1).step()
    policy.eval()
    batch = window_batch(3)
    shape = (3, policy.config.horizon, policy.features.action_dim)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    stats = policy.stats
    # DDPM draws fresh noise at every step: the same generator seed makes that noise the same too
    before = policy.predict_action_chunk(batch, noise=noise, generator=torch.Generator().manual_seed(1))
    path = policy.save(tmp_path / "policy", step=1)
    assert sorted(p.name for p in path.iterdir()) == sorted([WEIGHTS_FILE, CONFIG_FILE, STATS_FILE, EMBODIMENT_FILE])
    assert b"pickle" not in (path / WEIGHTS_FILE).read_bytes()[:200]
    loaded = load_policy(path, dataset=state_dataset, embodiment=EmbodimentSpec.load("panda"))
    assert isinstance(loaded, GenerativeLowPolicy) and not loaded.training
    after = loaded.predict_action_chunk(batch, noise=noise, generator=torch.Generator().manual_seed(1))
    assert torch.equal(before, after)
    meta, features, saved_stats = read_checkpoint(path)
    assert meta["policy_type"] == "generative" and meta["step"] == 1 and meta["config"]["generator"] == generator
    assert features.robot == "panda" and features.action_space == "joint_position" and features.action_dim == 8
    assert torch.equal(saved_stats[ACTION]["max"], stats[ACTION]["max"])


def test_a_different_robot_action_space_or_size_fails_at_load_naming_it(checkpoint: Path) -> None:
    panda = EmbodimentSpec.load("panda")
    with pytest.raises(EmbodimentMismatchError, match="trained for robot 'panda', not robot 'fr3'"):
        load_policy(checkpoint, embodiment=EmbodimentSpec.load("panda", ["name=fr3"]))
    with pytest.raises(EmbodimentMismatchError, match="ee_delta actions; the policy outputs joint_position"):
        load_policy(checkpoint, embodiment=EmbodimentSpec.load("panda", ["action_space=ee_delta"]))
    with pytest.raises(EmbodimentMismatchError, match="actions of dimension 7; the policy outputs 8"):
        load_policy(checkpoint, embodiment=panda, action_dim=7)
    with pytest.raises(EmbodimentMismatchError, match=r"runs at 10\.0 Hz"):
        load_policy(checkpoint, embodiment=EmbodimentSpec.load("panda", ["control_rate_hz=10"]))
    assert isinstance(load_policy(checkpoint, embodiment=panda), GenerativeLowPolicy)


def test_a_missing_stats_key_fails_naming_it(
    checkpoint: Path, tmp_path: Path, make_tiny_policy: MakePolicy, state_windows: tuple[Any, Any]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    stats = json.loads((broken / STATS_FILE).read_text())
    del stats[ACTION]
    (broken / STATS_FILE).write_text(json.dumps(stats))
    with pytest.raises(ContractError, match=r"no normalisation statistics for 'action'"):
        load_policy(broken)
    stats = json.loads((checkpoint / STATS_FILE).read_text())
    del stats["observation.state"]["std"]
    (broken / STATS_FILE).write_text(json.dumps(stats))
    with pytest.raises(ContractError, match=r"statistics of 'observation.state' lack \['std'\]"):
        load_policy(broken)
    partial = {key: value for key, value in state_windows[1].items() if key != ACTION}
    with pytest.raises(ContractError, match="no normalisation statistics for 'action'"):
        make_tiny_policy(stats=partial)


def test_a_dataset_or_robot_without_the_policy_cameras_or_another_robot_fails(
    checkpoint: Path, state_dataset: Path, tmp_path: Path
) -> None:
    _, features, _ = read_checkpoint(checkpoint)
    with_camera = PolicyFeatures.from_dict({**features.to_dict(), "cameras": {"observation.images.front": [3, 32, 32]}})
    with pytest.raises(ContractError, match=r"no camera 'observation\.images\.front'"):
        with_camera.check_dataset(state_dataset)  # a proprioception-only recording
    no_cameras = EmbodimentSpec.load("panda", ["cameras=[]"])
    with pytest.raises(EmbodimentMismatchError, match="no camera 'front'"):
        with_camera.check_embodiment(no_cameras)
    other = tmp_path / "other"
    shutil.copytree(state_dataset / "meta", other / "meta")
    info = json.loads((other / "meta" / "info.json").read_text())
    info["robot_type"] = "ur5"
    (other / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(EmbodimentMismatchError, match="is for robot 'ur5'"):
        load_policy(checkpoint, dataset=other)
    info["robot_type"] = "panda"
    names = info["features"][ACTION]["names"]
    info["features"][ACTION]["names"] = [names[1], names[0], *names[2:]]  # two joints swapped
    (other / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(EmbodimentMismatchError, match=r"action components are \['panda_joint2', 'panda_joint1'"):
        load_policy(checkpoint, dataset=other)
    info["features"][ACTION]["shape"] = [7]
    info["features"][ACTION]["names"] = info["features"][ACTION]["names"][:7]
    (other / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(EmbodimentMismatchError, match="action has dimension 7; the policy was trained with 8"):
        load_policy(checkpoint, dataset=other)


def test_a_folder_that_is_not_a_checkpoint_is_named(tmp_path: Path, checkpoint: Path) -> None:
    with pytest.raises(ContractError, match="no such directory"):
        load_policy(tmp_path / "nothing")
    partial = tmp_path / "partial"
    shutil.copytree(checkpoint, partial)
    (partial / EMBODIMENT_FILE).unlink()
    with pytest.raises(ContractError, match=r"embodiment\.json is missing"):
        load_policy(partial)


def test_an_image_encoder_config_without_stem_patch_builds_the_original_encoder() -> None:
    """Checkpoints written before ``stem_patch`` existed (no such key) load into the 3x3 stride-2 stem they were
    trained with; a patchify stem is a PxP stride-P convolution with 1/P of the resolution after it."""
    from tiers.policies.low.conditioning import ImageEncoder, ImageEncoderConfig

    old = ImageEncoderConfig.from_dict({"channels": [8, 16], "blocks_per_stage": 1, "groups": 4, "keypoints": 8})
    assert old.stem_patch is None
    encoder = ImageEncoder(old, (32, 32))
    stem = encoder.backbone[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (2, 2) and stem.padding == (1, 1)
    assert encoder.backbone(torch.zeros(1, 3, 32, 32)).shape == (1, 16, 8, 8)  # stem /2, second stage /2
    names = {name: tuple(value.shape) for name, value in encoder.state_dict().items()}
    patchify = ImageEncoder(ImageEncoderConfig(channels=[8, 16], groups=4, keypoints=8, stem_patch=4), (32, 32))
    assert patchify.backbone[0].kernel_size == (4, 4) and patchify.backbone[0].stride == (4, 4)
    assert patchify.backbone(torch.zeros(1, 3, 32, 32)).shape == (1, 16, 4, 4)
    # the same parameters but the stem kernel's size, so a patchify checkpoint never loads into the other kind
    patchify_names = {name: tuple(value.shape) for name, value in patchify.state_dict().items()}
    assert names.keys() == patchify_names.keys() and names["backbone.0.weight"] == (8, 3, 3, 3)
    assert patchify_names["backbone.0.weight"] == (8, 3, 4, 4)
    with pytest.raises(ValueError, match="stem_patch"):
        ImageEncoderConfig(stem_patch=1)


def test_the_shipped_checkpoint_loads_with_the_encoder_config_it_was_saved_with() -> None:
    """The pretrained path-conditioned BESO (no cameras, config.json from before ``stem_patch``) loads and acts as
    it did before the encoder option and the sampler's scheduler cache (first action recorded then)."""
    policy = load_policy(PRETRAINED / "kitchen_paths_beso")
    assert policy.config.conditioning.image_encoder.stem_patch is None
    generator = torch.Generator().manual_seed(0)
    batch = {
        FeatureKey.STATE.value: torch.randn(1, policy.features.state_dim, generator=generator),
        "subtask": ["open the drawer"],
        "ee_path": torch.randn(1, 8, 8, generator=generator),
    }
    noise = torch.randn(1, policy.config.horizon, policy.features.action_dim, generator=generator)
    chunk = policy.predict_action_chunk(batch, noise=noise)
    assert chunk.shape == (1, policy.config.horizon, policy.features.action_dim)
    recorded = [0.311881, -0.414233, -0.320874, -2.312619, 0.307255, 1.723229, 0.592444, 0.075560]
    torch.testing.assert_close(chunk[0, 0], torch.tensor(recorded), atol=1e-5, rtol=0)
