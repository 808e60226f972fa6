"""Interop: lerobot's own diffusion policy trains on a dataset tiers recorded, through lerobot's own loaders."""

from __future__ import annotations

from pathlib import Path

import torch


def test_lerobot_diffusion_policy_trains_on_a_tiers_dataset(camera_dataset: Path) -> None:
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    torch.manual_seed(0)
    meta = LeRobotDatasetMetadata("local/test", root=camera_dataset)
    config = DiffusionConfig(
        device="cpu",
        pretrained_backbone_weights=None,  # no model hub: the vision backbone trains from scratch
        use_group_norm=True,
        down_dims=(32, 64),
        diffusion_step_embed_dim=32,
        horizon=8,
        n_action_steps=4,
        n_obs_steps=2,
        drop_n_last_frames=3,
        num_train_timesteps=20,
        crop_shape=None,
    )
    # the policy reads the proprioception and the front RGB camera (lerobot's diffusion policy wants
    # every image input of one shape, so the depth video stays out)
    config.input_features = {
        "observation.state": PolicyFeature(FeatureType.STATE, tuple(meta.features["observation.state"]["shape"])),
        "observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 128, 128)),
    }
    policy = make_policy(config, ds_meta=meta)
    preprocess, postprocess = make_pre_post_processors(config, dataset_stats=meta.stats)
    dataset = LeRobotDataset(
        "local/test", root=camera_dataset, delta_timestamps=resolve_delta_timestamps(config, meta), video_backend="pyav"
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, num_workers=0)
    optimiser = torch.optim.Adam(policy.parameters(), lr=1e-3)
    before = [parameter.detach().clone() for parameter in policy.parameters()]
    policy.train()
    losses = []
    for step, batch in enumerate(loader):
        loss, _ = policy.forward(preprocess(batch))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if step == 4:
            break
    assert len(losses) == 5 and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))

    # and it acts: one observation frame in, one action of the recorded action size out
    policy.eval()
    policy.reset()
    frame = LeRobotDataset("local/test", root=camera_dataset, video_backend="pyav")[0]
    observation = {key: frame[key].unsqueeze(0) for key in config.input_features}
    action = postprocess(policy.select_action(preprocess(observation)))
    assert action.shape == (1, meta.features["action"]["shape"][0])
    assert torch.isfinite(action).all()
