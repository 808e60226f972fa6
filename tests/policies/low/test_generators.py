"""Every generative core learns a conditional toy distribution, and honours the ActionGenerator contract:
guidance, classifier-free guidance, fixed-noise determinism, padded-step masking, condition dropout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from tiers.core.errors import ConfigError, ContractError
from tiers.policies.low.beso import BesoConfig, BesoGenerator
from tiers.policies.low.generator import ActionGenerator, Conditioning, with_classifier_free_guidance
from tiers.policies.low.networks import NetworkConfig, build_network
from tiers.policies.low.registry import GENERATORS, generator_config, make_generator

HORIZON, ACTION_DIM = 4, 2
GAUSSIAN_MEAN, GAUSSIAN_STD = -0.5, 0.1  # condition 0: every element ~ N(-0.5, 0.1²)
MODE, MODE_STD = 0.6, 0.05  # condition 1: the whole chunk is +0.6 or -0.6 (one sign per chunk), ± 0.05


def tiny_network(kind: str = "transformer") -> dict[str, Any]:
    return {
        "kind": kind,
        "action_dim": ACTION_DIM,
        "horizon": HORIZON,
        "cond_dim": 2,
        "max_cond_tokens": 1,
        "noise_embed_dim": 32,
        "transformer": {"width": 32, "depth": 2, "heads": 4},
        "unet": {"channels": [32, 64], "kernel_size": 3, "groups": 8, "cond_width": 32},
    }


def conditions(labels: torch.Tensor) -> Conditioning:
    """Condition c ∈ {0, 1} as a one-hot token (B, 1, 2); the null token is all zeros."""
    tokens = nn.functional.one_hot(labels, 2).float()[:, None, :]
    return Conditioning(tokens, torch.zeros_like(tokens))


def toy_batch(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, Conditioning]:
    labels = torch.randint(0, 2, (batch,), generator=generator)
    gaussian = GAUSSIAN_MEAN + GAUSSIAN_STD * torch.randn(batch, HORIZON, ACTION_DIM, generator=generator)
    signs = torch.randint(0, 2, (batch, 1, 1), generator=generator).float() * 2 - 1
    modes = signs * MODE + MODE_STD * torch.randn(batch, HORIZON, ACTION_DIM, generator=generator)
    actions = torch.where(labels[:, None, None] == 0, gaussian, modes)
    return actions, conditions(labels)


def train(name: str, steps: int = 300) -> nn.Module:
    torch.manual_seed(0)
    model = make_generator(name, {"network": tiny_network()})
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    data = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        actions, conditioning = toy_batch(128, data)
        loss = model.loss(actions, conditioning)  # type: ignore[operator]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


# each core with a sampler fine enough to resolve the toy's spread (few-step defaults are tested separately)
TRAINED_CORES: dict[str, dict[str, Any]] = {
    "beso": {"sampler": "dpmpp_2m", "schedule": "karras", "steps": 10},
    "flow": {"steps": 10},
    "ddpm": {"sampler": "ddim", "steps": 10},
}


@pytest.fixture(scope="module")
def trained() -> Iterator[dict[str, nn.Module]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only add overhead (and contend on a shared CI machine)
    try:
        yield {name: train(name) for name in TRAINED_CORES}
    finally:
        torch.set_num_threads(threads)


def draw(model: nn.Module, label: int, n: int = 512, **kwargs: Any) -> torch.Tensor:
    conditioning = conditions(torch.full((n,), label))
    with torch.no_grad():
        out: torch.Tensor = model.sample(conditioning, generator=torch.Generator().manual_seed(2), **kwargs)  # type: ignore[operator]
    return out


def mode_shares(chunks: torch.Tensor) -> tuple[float, float]:
    """Share of (n, Ta, A) chunks lying wholly near one mode (mean within 0.25 of ±MODE), share positive."""
    chunk_means = chunks.mean(dim=(1, 2))
    near_a_mode = ((chunk_means.abs() - MODE).abs() < 0.25).float().mean().item()
    return near_a_mode, (chunk_means > 0).float().mean().item()


@pytest.mark.parametrize("name", list(TRAINED_CORES))
def test_learns_the_conditional_gaussian_and_covers_both_modes(trained: dict[str, nn.Module], name: str) -> None:
    model, kwargs = trained[name], TRAINED_CORES[name]
    gaussian = draw(model, 0, **kwargs)
    assert gaussian.mean().item() == pytest.approx(GAUSSIAN_MEAN, abs=0.05)
    assert 0.05 < gaussian.std().item() < 0.2, f"{name}: std {gaussian.std().item():.3f}, data {GAUSSIAN_STD}"
    near_a_mode, positive = mode_shares(draw(model, 1, **kwargs))
    assert near_a_mode > 0.9, f"{name}: only {near_a_mode:.0%} of chunks near ±{MODE}"
    assert 0.3 < positive < 0.7, f"{name}: {positive:.0%} of chunks in the positive mode"


@pytest.mark.parametrize("name", ["beso", "flow"])
def test_default_few_step_samplers_keep_both_modes(trained: dict[str, nn.Module], name: str) -> None:
    """BESO's 3 DDIM steps and flow's 4 Euler steps: right mean and both modes, whole chunks in one mode."""
    model = trained[name]
    assert draw(model, 0).mean().item() == pytest.approx(GAUSSIAN_MEAN, abs=0.05)
    near_a_mode, positive = mode_shares(draw(model, 1))
    assert near_a_mode > 0.9 and 0.3 < positive < 0.7, (name, near_a_mode, positive)


@pytest.mark.parametrize("name", list(TRAINED_CORES))
def test_guidance_moves_samples_toward_the_reward(trained: dict[str, nn.Module], name: str) -> None:
    """reward = -‖x - target‖² pulls the bimodal condition toward the negative mode's side."""
    target = torch.full((HORIZON, ACTION_DIM), -0.2)

    def hook(x0_hat: torch.Tensor, step: int) -> torch.Tensor:
        return -2.0 * 4.0 * (x0_hat - target)  # weight 4 times the gradient of -‖x - target‖²

    plain = draw(trained[name], 1, **TRAINED_CORES[name])
    guided = draw(trained[name], 1, guidance=hook, **TRAINED_CORES[name])
    distance_plain = (plain - target).square().sum(dim=(1, 2)).mean().item()
    distance_guided = (guided - target).square().sum(dim=(1, 2)).mean().item()
    assert distance_guided < 0.7 * distance_plain, (name, distance_plain, distance_guided)


@pytest.mark.parametrize("name", list(TRAINED_CORES))
def test_classifier_free_guidance_scales(trained: dict[str, nn.Module], name: str) -> None:
    """w = 1 is the conditional model, w = 0 the unconditional one, w > 1 sharpens toward the condition."""
    model = trained[name]
    labels = torch.zeros(64, dtype=torch.long)
    conditioning = conditions(labels)
    noise = torch.randn(64, HORIZON, ACTION_DIM, generator=torch.Generator().manual_seed(3))
    kwargs: dict[str, Any] = {"noise": noise, "generator": torch.Generator().manual_seed(4), **TRAINED_CORES[name]}
    with torch.no_grad():
        scale_one = model.sample(conditioning, cfg_scale=1.0, **kwargs)  # type: ignore[operator]
        kwargs["generator"] = torch.Generator().manual_seed(4)
        conditional_only = model.sample(Conditioning(conditioning.tokens), **kwargs)  # type: ignore[operator]
        kwargs["generator"] = torch.Generator().manual_seed(4)
        scale_zero = model.sample(conditioning, cfg_scale=0.0, **kwargs)  # type: ignore[operator]
        kwargs["generator"] = torch.Generator().manual_seed(4)
        null_only = model.sample(Conditioning(conditioning.null_tokens), **kwargs)  # type: ignore[arg-type, operator]
    assert torch.equal(scale_one, conditional_only)
    torch.testing.assert_close(scale_zero, null_only, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(scale_one, scale_zero, atol=1e-2)


def test_batched_cfg_combination_equals_two_separate_passes() -> None:
    network = build_network(NetworkConfig.from_dict(tiny_network()))
    labels = torch.tensor([0, 1, 1])
    conditioning = conditions(labels)
    x, level = torch.randn(3, HORIZON, ACTION_DIM), torch.rand(3)
    guided = with_classifier_free_guidance(network, conditioning, 2.5)(x, level)
    conditional = network(x, level, conditioning.tokens)
    unconditional = network(x, level, conditioning.null_tokens)
    torch.testing.assert_close(guided, unconditional + 2.5 * (conditional - unconditional))
    with pytest.raises(ContractError, match="null_tokens"):
        with_classifier_free_guidance(network, Conditioning(conditioning.tokens), 2.0)


SAMPLER_CASES = [
    ("beso", {"sampler": "ddim"}),
    ("beso", {"sampler": "euler"}),
    ("beso", {"sampler": "dpmpp_2m"}),
    ("flow", {}),
    ("ddpm", {"sampler": "ddim"}),
]


@pytest.mark.parametrize(("name", "kwargs"), SAMPLER_CASES)
@pytest.mark.parametrize("kind", ["transformer", "unet"])
def test_fixed_noise_makes_sampling_deterministic(name: str, kwargs: dict[str, Any], kind: str) -> None:
    torch.manual_seed(5)
    model = make_generator(name, {"network": tiny_network(kind)}).eval()
    assert isinstance(model, ActionGenerator)
    conditioning = conditions(torch.tensor([0, 1]))
    noise = torch.randn(2, HORIZON, ACTION_DIM)
    first = model.sample(conditioning, noise=noise, cfg_scale=1.5, **kwargs)  # type: ignore[operator]
    torch.manual_seed(123)  # the global RNG must not matter
    second = model.sample(conditioning, noise=noise, cfg_scale=1.5, **kwargs)  # type: ignore[operator]
    assert first.shape == (2, HORIZON, ACTION_DIM) and torch.isfinite(first).all()
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_padded_steps_do_not_count_in_the_loss(name: str) -> None:
    """Same draws of σ / t and noise: the unmasked loss is the step-weighted sum of the losses over the
    first step alone and the other steps alone, so each masked loss covers exactly its real steps."""
    torch.manual_seed(6)
    model = make_generator(name, {"network": tiny_network(), "cond_dropout": 0.0}).train()
    actions, conditioning = toy_batch(8, torch.Generator().manual_seed(7))

    def loss(step_mask: torch.Tensor | None) -> torch.Tensor:
        torch.manual_seed(8)
        out: torch.Tensor = model.loss(actions, conditioning, mask=step_mask)  # type: ignore[operator]
        return out

    first_only = torch.zeros(8, HORIZON, dtype=torch.bool)
    first_only[:, 0] = True
    everything = loss(None)
    first, rest = loss(first_only), loss(~first_only)
    assert not torch.isclose(first, rest)
    torch.testing.assert_close(everything * HORIZON, first + (HORIZON - 1) * rest)
    torch.testing.assert_close(loss(torch.ones_like(first_only)), everything)
    no_real_step = loss(torch.zeros_like(first_only))
    assert no_real_step.item() == 0.0 and no_real_step.requires_grad


@pytest.mark.parametrize("name", list(GENERATORS))
def test_condition_dropout_trains_on_the_null_tokens_only_in_training_mode(name: str) -> None:
    torch.manual_seed(9)
    model = make_generator(name, {"network": tiny_network(), "cond_dropout": 0.999})
    actions, conditioning = toy_batch(16, torch.Generator().manual_seed(10))
    null = Conditioning(conditioning.null_tokens)  # type: ignore[arg-type]

    def loss(cond: Conditioning) -> float:
        torch.manual_seed(11)
        return float(model.loss(actions, cond).detach())  # type: ignore[operator]

    model.train()
    assert loss(conditioning) == pytest.approx(loss(null), rel=1e-4)  # (almost) every sample dropped
    model.eval()
    assert loss(conditioning) != pytest.approx(loss(null), rel=1e-4)


def test_bad_configs_and_inputs_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown generator 'gan'"):
        make_generator("gan")
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        make_generator("beso", {"steps": 0})
    with pytest.raises(ConfigError, match="sampler"):
        make_generator("beso", {"sampler": "heun"})
    with pytest.raises(ConfigError, match="heads"):
        make_generator("flow", {"network": {**tiny_network(), "transformer": {"width": 30, "heads": 4}}})
    with pytest.raises(ConfigError, match="groups"):
        make_generator("ddpm", {"network": {**tiny_network("unet"), "unet": {"channels": [12], "groups": 8}}})
    with pytest.raises(ConfigError, match="needs a BesoConfig"):
        generator_config("beso", generator_config("flow"))
    model = BesoGenerator(BesoConfig.from_dict({"network": tiny_network()}))
    with pytest.raises(ContractError, match="noise must have shape"):
        model.sample(conditions(torch.tensor([0])), noise=torch.zeros(1, HORIZON + 1, ACTION_DIM))
    with pytest.raises(ContractError, match="conditioning tokens"):
        model.sample(Conditioning(torch.zeros(1, 2, 2)))
    with pytest.raises(ContractError, match="mask must have shape"):
        model.loss(torch.zeros(1, HORIZON, ACTION_DIM), conditions(torch.tensor([0])), mask=torch.ones(1, 3).bool())
    with pytest.raises(ContractError, match="actions must be"):
        model.loss(torch.zeros(2, HORIZON, ACTION_DIM), conditions(torch.tensor([0])))


@pytest.mark.parametrize("length", [1, 3, 4])
def test_unet_handles_any_horizon_up_to_the_configured_one(length: int) -> None:
    network = build_network(NetworkConfig.from_dict(tiny_network("unet")))
    out = network(torch.randn(2, length, ACTION_DIM), torch.rand(2), torch.randn(2, 1, 2))
    assert out.shape == (2, length, ACTION_DIM)
