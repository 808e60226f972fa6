"""Camera encoders of the observation encoder: one CNN per camera, or one shared CNN run on the stacked cameras."""

from __future__ import annotations

import torch

from tiers.core.features import FeatureKey
from tiers.policies.low.conditioning import ConditioningConfig, ImageEncoderConfig, ObservationEncoder

CAMERAS = ["front", "wrist"]


def _encoder(*, shared: bool) -> ObservationEncoder:
    torch.manual_seed(0)
    config = ConditioningConfig(
        token_dim=16,
        cameras=CAMERAS,
        image_size=(32, 32),
        image_encoder=ImageEncoderConfig(channels=[8], blocks_per_stage=1, groups=4, keypoints=4, stem_patch=4),
        shared_image_encoder=shared,
        language_key=None,
    )
    return ObservationEncoder(config, state_dim=3, n_obs_steps=2, image_size=(32, 32)).eval()


def _batch(images: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(1))
    return {FeatureKey.STATE.value: state, **{FeatureKey.IMAGES.camera(name): value for name, value in images.items()}}


def test_a_shared_encoder_gives_each_camera_the_features_it_would_get_alone() -> None:
    encoder = _encoder(shared=True)
    assert encoder.image_encoder is not None and not len(encoder.cameras)
    assert all(key.startswith("image_encoder.") for key in encoder.state_dict() if "backbone" in key)
    generator = torch.Generator().manual_seed(2)
    front, wrist = (torch.randn(3, 3, 32, 32, generator=generator) for _ in CAMERAS)
    with torch.no_grad():
        together = encoder.camera_features([front, wrist])
        alone = [encoder.image_encoder(front), encoder.image_encoder(wrist)]
    # GroupNorm and the spatial softmax work per image, so stacking the cameras mixes nothing between them
    for batched, single in zip(together, alone, strict=True):
        torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)
    assert not torch.allclose(together[0], together[1])


def test_a_repeated_frame_is_encoded_once_with_the_tokens_of_its_full_history() -> None:
    for shared in (False, True):
        encoder = _encoder(shared=shared)
        generator = torch.Generator().manual_seed(3)
        frames = {name: torch.randn(2, 3, 32, 32, generator=generator) for name in CAMERAS}  # (B, 3, H, W)
        repeated = {name: frame[:, None].expand(-1, 2, -1, -1, -1) for name, frame in frames.items()}  # stride 0
        copied = {name: value.contiguous() for name, value in repeated.items()}  # the same history, materialised
        with torch.no_grad():
            once = encoder(_batch(repeated)).tokens
            full = encoder(_batch(copied)).tokens
        torch.testing.assert_close(once, full, atol=1e-6, rtol=0)
        assert once.shape == (2, 2 * (1 + len(CAMERAS)), 16)
