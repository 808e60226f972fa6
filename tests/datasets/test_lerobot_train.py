"""lerobot's own training entry point (``lerobot-train``) on a dataset recorded by a plain ``tiers record``, and
on a ``--depth`` recording once lerobot's own ``lerobot-edit-dataset`` has removed the depth.

The command line is the one a lerobot user types; it runs in-process (``lerobot_train.main`` with that argv) to
spare two interpreter starts and lerobot's imports. Offline: no pretrained backbone weights, no hub, CPU; the
policies are shrunk so two steps take seconds, which changes none of what is checked (the dataset's features
become the policy's inputs, batches decode, the loss backpropagates, the checkpoint saves).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tiers.core.features import FeatureKey
from tiers.datasets.cameras import intrinsics_key, pose_key
from tiers.datasets.check import check_dataset

CAMERAS = ("front", "wrist", "top")

SMALL = {  # model sizes only: every data and feature option stays lerobot's default
    "act": [
        "--policy.chunk_size=8",
        "--policy.n_action_steps=8",
        "--policy.dim_model=64",
        "--policy.dim_feedforward=128",
        "--policy.n_heads=2",
        "--policy.n_encoder_layers=1",
        "--policy.n_decoder_layers=1",
        "--policy.latent_dim=8",
    ],
    "diffusion": [
        "--policy.use_group_norm=true",
        "--policy.down_dims=[32,64]",
        "--policy.diffusion_step_embed_dim=32",
        "--policy.horizon=8",
        "--policy.n_action_steps=4",
        "--policy.num_train_timesteps=10",
    ],
}


def _lerobot_train(root: Path, policy: str, out: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """``lerobot-train`` on ``root`` for 2 steps with a checkpoint at the end; the saved policy's input keys."""
    from lerobot.scripts import lerobot_train

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = [
        "lerobot-train",
        f"--dataset.repo_id=local/{root.name}",
        f"--dataset.root={root}",
        "--dataset.video_backend=pyav",
        f"--policy.type={policy}",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--policy.pretrained_backbone_weights=null",  # no ImageNet weights: nothing is downloaded
        *SMALL[policy],
        f"--output_dir={out}",
        "--steps=2",
        "--batch_size=2",
        "--num_workers=0",
        "--save_freq=2",
        "--log_freq=1",
        "--wandb.enable=false",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    lerobot_train.main()
    saved = out / "checkpoints/last/pretrained_model"
    assert (saved / "model.safetensors").is_file()
    return set(json.loads((saved / "config.json").read_text())["input_features"])


RGB_INPUTS = {FeatureKey.STATE.value, FeatureKey.EE_POSE.value, *(FeatureKey.IMAGES.camera(c) for c in CAMERAS)}


@pytest.mark.parametrize("policy", ["act", "diffusion"])
def test_lerobot_train_runs_on_a_default_tiers_recording(
    policy: str, default_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = _lerobot_train(default_dataset, policy, tmp_path / "train", monkeypatch)
    # the RGB cameras and the proprioception are the inputs; the camera models are not (they are calibration)
    assert inputs == RGB_INPUTS


def test_a_depth_recording_trains_once_lerobot_edit_dataset_drops_the_depth(
    camera_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``tiers record --depth``: lerobot's own editor removes the depth video; the copy passes ``tiers dataset
    check`` with its camera models intact, and ``lerobot-train`` trains on it."""
    from lerobot.scripts import lerobot_edit_dataset

    edited = tmp_path / "rgb"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "lerobot-edit-dataset",
            "--repo_id=local/drawer",
            f"--root={camera_dataset}",
            "--new_repo_id=local/rgb",
            f"--new_root={edited}",
            "--operation.type=remove_feature",
            f'--operation.feature_names=["{FeatureKey.DEPTH.camera("front")}"]',
        ],
    )
    lerobot_edit_dataset.main()
    features = json.loads((edited / "meta/info.json").read_text())["features"]
    assert FeatureKey.DEPTH.camera("front") not in features
    assert {intrinsics_key(c) for c in CAMERAS} | {pose_key(c) for c in CAMERAS} <= set(features)
    report = check_dataset(edited, video_frames=False)
    assert report.ok, report.errors
    assert _lerobot_train(edited, "act", tmp_path / "train", monkeypatch) == RGB_INPUTS
