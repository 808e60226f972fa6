"""``tiers train``'s orchestration: fine-tuning from a checkpoint (``init_from``)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from tiers.apps.training import RUN_CONFIG, LowPolicyTrainConfig, train_low_policy
from tiers.core.locations import preset_path
from tiers.policies.low.checkpoint import read_checkpoint

TINY = [
    "policy.conditioning.cameras=[]",
    "policy.conditioning.language_key=null",
    "trainer.steps=1",
    "trainer.batch_size=2",
    "trainer.save_every=1",
]


def test_init_from_starts_from_the_checkpoint_s_config_weights_and_statistics(
    state_dataset: Path, tmp_path: Path
) -> None:
    """A run with ``init_from`` keeps the checkpoint's policy config (here another horizon than the preset's) and its
    normalisation statistics, and starts from its weights (one step at a negligible learning rate leaves them)."""
    base = LowPolicyTrainConfig.from_yaml(preset_path("train", "tiny"), overrides=[*TINY, "policy.horizon=4"])
    first = Path(train_low_policy(state_dataset, base, tmp_path / "base", progress=False).checkpoint)
    tuned = LowPolicyTrainConfig.from_yaml(
        preset_path("train", "tiny"), overrides=[*TINY, "trainer.lr=1.0e-12", "trainer.ema=false", f"init_from={first}"]
    )
    second = Path(train_low_policy(state_dataset, tuned, tmp_path / "tuned", progress=False).checkpoint)
    meta, _, stats = read_checkpoint(second)
    _, _, base_stats = read_checkpoint(first)
    assert meta["config"]["horizon"] == 4  # the checkpoint's, not the preset's 8
    saved = yaml.safe_load((tmp_path / "tuned" / RUN_CONFIG).read_text())
    assert saved["policy"]["horizon"] == 4 and saved["init_from"] == str(first)
    for key, value in base_stats.items():
        for name, tensor in value.items():
            torch.testing.assert_close(stats[key][name], tensor)
    before, after = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        torch.testing.assert_close(after[name], tensor, atol=1e-6, rtol=0)
