"""lerobot's diffusion policy and ACT as tiers low tiers: trained by ``tiers train``, saved, loaded, checked, run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tiers.apps.training import dataset_loading_config
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError, ContractError, EmbodimentMismatchError
from tiers.core.locations import preset_path
from tiers.core.protocols import LowLevelPolicy
from tiers.datasets.loading import load_training_dataset
from tiers.policies.low.checkpoint import FOLDER_LAYOUTS, load_policy
from tiers.policies.low.lerobot_adapter import (
    TIERS_FILE,
    LerobotAdapterConfig,
    LerobotKind,
    LerobotPolicyAdapter,
    window_shape,
)

TINY_ACT = {
    "chunk_size": 6,
    "n_action_steps": 3,
    "dim_model": 16,
    "dim_feedforward": 32,
    "n_heads": 2,
    "n_encoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 4,
}


def test_config_refuses_what_cannot_work_offline_and_names_the_field() -> None:
    with pytest.raises(ConfigError, match="pretrained_backbone_weights"):
        LerobotAdapterConfig.from_dict({"cameras": ["front"], "lerobot": {"pretrained_backbone_weights": "X"}})
    with pytest.raises(ConfigError, match="camera name"):
        LerobotAdapterConfig.from_dict({"cameras": ["observation.images.front"]})
    with pytest.raises(ConfigError, match="at least one RGB camera"):
        LerobotAdapterConfig.from_dict({"kind": "act"})
    with pytest.raises(ContractError, match="horizon"):  # lerobot's own check: horizon vs UNet downsampling
        LerobotAdapterConfig(cameras=["front"], lerobot={"horizon": 10}).lerobot_config()


def test_windows_align_with_what_lerobot_predicts() -> None:
    # diffusion predicts H steps from t-To+1: the tiers window (from t) is H - To + 1 long; ACT reads chunk_size from t
    diffusion = LerobotAdapterConfig(cameras=["front"]).lerobot_config()
    assert diffusion.pretrained_backbone_weights is None and diffusion.use_group_norm
    assert window_shape(diffusion) == (2, 63)  # lerobot 0.6.1's defaults: To=2, horizon 64
    act = LerobotAdapterConfig(kind=LerobotKind.ACT, cameras=["front"], lerobot=TINY_ACT).lerobot_config()
    assert window_shape(act) == (1, 6)
    adapter = LerobotAdapterConfig(cameras=["front", "wrist"], lerobot={"horizon": 16, "n_action_steps": 8})
    loading = dataset_loading_config(adapter, "data")
    assert loading.cameras == ["observation.images.front", "observation.images.wrist"]
    assert (loading.n_obs_steps, loading.horizon) == (2, 15)


def _frame(windows: Any, index: int) -> dict[str, torch.Tensor]:
    """One observation step (B = 1) of the dataset, as a robot would hand it to select_action."""
    item = windows[index]
    return {key: item[key][-1:] for key in ("observation.state", "observation.images.front")}


def test_lerobot_diffusion_trains_with_tiers_train_loads_checked_and_acts(
    camera_dataset: Path, tmp_path: Path, parse_cli: Callable[..., Any]
) -> None:
    out = tmp_path / "run"
    config = str(preset_path("train", "lerobot_tiny"))
    args = parse_cli(
        "train",
        "--dataset",
        str(camera_dataset),
        "--policy",
        "lerobot_diffusion",
        "--out",
        str(out),
        "--config",
        config,
    )
    args.no_progress = True
    assert args.run(args) == 0
    log = json.loads((out / "train_log.json").read_text())
    assert [record["step"] for record in log["log"]] == [1, 2]
    assert all(record["loss"] > 0 for record in log["log"])

    # the checkpoint is lerobot's own layout, reached through the tiers loader and checked against the robot
    assert FOLDER_LAYOUTS[TIERS_FILE] == f"{LerobotPolicyAdapter.__module__}:{LerobotPolicyAdapter.__name__}"
    checkpoint = out / "checkpoints" / "last"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "policy_preprocessor.json").is_file()
    panda = EmbodimentSpec.load("panda")
    policy = load_policy(checkpoint, dataset=camera_dataset, embodiment=panda)
    assert isinstance(policy, LerobotPolicyAdapter) and isinstance(policy, LowLevelPolicy)
    assert json.loads((checkpoint / "tiers_lerobot.json").read_text())["weights"] == "ema"

    adapter_config = policy.config
    windows, stats = load_training_dataset(dataset_loading_config(adapter_config, camera_dataset))
    frame = _frame(windows, 40)
    policy.reset()
    first = policy.select_action(frame)
    assert first.shape == (1, 8) and torch.isfinite(first).all()
    assert len(policy.policy._queues["action"]) == 3  # n_action_steps = 4, one popped
    policy.drop_queued_actions()
    assert len(policy.policy._queues["action"]) == 0
    # a fresh chunk of raw actions from now, within the range the normaliser maps [-1, 1] to (lerobot clips there)
    torch.manual_seed(0)
    chunk = policy.predict_action_chunk(frame)
    assert chunk.shape == (1, 4, 8)
    low, high = stats["action"]["min"], stats["action"]["max"]
    assert (chunk >= low - 1e-4).all() and (chunk <= high + 1e-4).all()

    # save -> load through save_pretrained / from_pretrained gives the same chunk for the same random draws
    again = LerobotPolicyAdapter.load(policy.save(tmp_path / "copy"), embodiment=panda)
    torch.manual_seed(1)
    expected = policy.predict_action_chunk(frame)
    torch.manual_seed(1)
    torch.testing.assert_close(again.predict_action_chunk(frame), expected)

    # bad input fails naming what is wrong
    with pytest.raises(EmbodimentMismatchError, match="Hz"):
        LerobotPolicyAdapter.load(checkpoint, embodiment=EmbodimentSpec.load("panda", ["control_rate_hz=50"]))
    with pytest.raises(ContractError, match=r"observation\.state.*non-finite"):
        policy.select_action({**frame, "observation.state": torch.full_like(frame["observation.state"], torch.nan)})
    with pytest.raises(ContractError, match="lack 'action'"):
        LerobotPolicyAdapter(
            adapter_config, policy.policy, policy.features, {k: v for k, v in stats.items() if k != "action"}
        )


def test_lerobot_act_learns_from_tiers_windows_and_acts_in_chunks(camera_dataset: Path) -> None:
    torch.manual_seed(0)
    config = LerobotAdapterConfig(kind=LerobotKind.ACT, cameras=["front"], image_size=(32, 32), lerobot=TINY_ACT)
    windows, stats = load_training_dataset(dataset_loading_config(config, camera_dataset))
    policy = LerobotPolicyAdapter.from_dataset(config, camera_dataset, stats)
    batch = torch.utils.data.default_collate([windows[i] for i in (0, 50, 100)])
    assert batch["observation.state"].shape[1] == 1 and batch["action"].shape[1] == 6  # To = 1, chunk from t
    optimiser = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss, info = policy(batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        assert {"l1_loss", "kld_loss"} <= set(info)
    assert losses[-1] < losses[0]  # the same batch three times: lerobot's loss goes down

    policy.reset()
    frame = _frame(windows, 10)
    actions = [policy.select_action(frame) for _ in range(4)]  # 3 from the first chunk, then a new one
    assert all(action.shape == (1, 8) for action in actions)
    assert policy.predict_action_chunk(frame).shape == (1, 3, 8)
