"""A low-tier policy's sampler noise follows an episode's seed, not whatever drew from torch before it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from tiers.core.features import FeatureKey
from tiers.policies.hierarchy.drivers import PolicyDriver
from tiers.policies.low.policy import GenerativeLowPolicy

MakePolicy = Callable[..., GenerativeLowPolicy]
STATE = FeatureKey.STATE.value
TINY_NETWORK = {"noise_embed_dim": 16, "transformer": {"width": 32, "depth": 1, "heads": 2}}  # as conftest's


def test_a_seeded_policy_samples_the_same_chunks_whatever_ran_before(
    make_tiny_policy: MakePolicy, window_batch: Callable[[int], dict[str, Any]]
) -> None:
    # euler_ancestral draws fresh noise at every sampler step too
    policy = make_tiny_policy("beso", generator_options={"network": TINY_NETWORK, "sampler": "euler_ancestral"}).eval()
    step = {STATE: window_batch(1)[STATE][:, -1]}
    policy.seed(5)
    first = [policy.predict_action_chunk(step) for _ in range(2)]
    assert not torch.allclose(first[0], first[1])  # one stream: successive chunks differ
    torch.randn(100)  # another episode, another library, drawing from torch's global generator
    policy.seed(5)
    again = [policy.predict_action_chunk(step) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    policy.seed(6)
    assert not torch.allclose(policy.predict_action_chunk(step), first[0])
    generator = torch.Generator().manual_seed(5)  # an explicit generator still wins
    assert torch.equal(policy.predict_action_chunk(step, generator=generator), first[0])


def test_the_driver_seeds_its_policy_and_an_episode_starts_undegraded(make_tiny_policy: MakePolicy) -> None:
    policy = make_tiny_policy("flow", sampler_steps=8)
    driver = PolicyDriver(policy, control_rate_hz=20.0)
    assert driver.degrade() == "sampler steps 8 -> 4" and policy.config.sampler_steps == 4
    driver.reset()  # the next episode: a degradation (on the wall clock) does not carry over
    assert policy.config.sampler_steps == 8
    driver.seed(3)
    assert policy._noise is not None and policy._noise.initial_seed() == 3
