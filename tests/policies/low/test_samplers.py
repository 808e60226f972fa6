"""Samplers against analytic answers: with the exact denoiser / velocity / noise predictor of Gaussian data,
the probability-flow ODE has a closed-form solution and the SDE samplers have known output statistics."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import EDMEulerScheduler
from torch import nn

from tiers.policies.low import samplers
from tiers.policies.low.beso import BesoConfig, BesoGenerator, EdmPreconditioning
from tiers.policies.low.ddpm import DdpmConfig, DdpmGenerator
from tiers.policies.low.flow import FlowConfig, FlowMatchingGenerator
from tiers.policies.low.generator import Conditioning
from tiers.policies.low.networks import NetworkConfig
from tiers.policies.low.samplers import EDM_SAMPLERS, sample_edm, sigma_schedule

MEAN, STD = 0.3, 0.4  # the Gaussian data x0 ~ N(MEAN, STD²), per element
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
SHAPE = (256, 4, 2)  # B, Ta, A
NETWORK = NetworkConfig(action_dim=2, horizon=4, cond_dim=1, max_cond_tokens=1)
TOKENS = torch.zeros(SHAPE[0], 1, 1)


def exact_denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[x0 | x0 + σ ε = x] for x0 ~ N(MEAN, STD²)."""
    return MEAN + STD**2 / (STD**2 + sigma**2) * (x - MEAN)


def ode_solution(noise: torch.Tensor) -> torch.Tensor:
    """The probability-flow ODE from x(σ_max) = σ_max · noise to σ = 0, in closed form for Gaussian data."""
    return MEAN + (SIGMA_MAX * noise - MEAN) * STD / math.sqrt(STD**2 + SIGMA_MAX**2)


def run_edm(sampler: str, steps: int, noise: torch.Tensor, schedule: str = "karras", **kwargs: object) -> torch.Tensor:
    return sample_edm(
        exact_denoiser,
        noise,
        sampler=sampler,  # type: ignore[arg-type]
        steps=steps,
        schedule=schedule,  # type: ignore[arg-type]
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        sigma_data=0.5,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("schedule", ["karras", "exponential"])
def test_schedules_start_at_sigma_max_and_end_at_zero(schedule: str) -> None:
    levels = sigma_schedule(3, schedule=schedule, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)  # type: ignore[arg-type]
    assert len(levels) == 4 and levels[-1] == 0.0
    assert levels[0] == pytest.approx(SIGMA_MAX) and levels[2] == pytest.approx(SIGMA_MIN)
    assert levels[0] > levels[1] > levels[2]
    if schedule == "karras":  # σ^(1/ρ) is linear in the step
        roots = [level ** (1 / 7) for level in levels[:3]]
        assert roots[0] - roots[1] == pytest.approx(roots[1] - roots[2], rel=1e-4)
    else:  # ln σ is linear in the step
        assert levels[1] == pytest.approx(math.sqrt(SIGMA_MIN * SIGMA_MAX), rel=1e-4)


@pytest.mark.parametrize(("sampler", "order"), [("ddim", 1), ("euler", 1), ("dpmpp_2m", 2)])
@pytest.mark.parametrize("schedule", ["karras", "exponential"])
def test_deterministic_samplers_converge_to_the_gaussian_ode_at_their_order(
    sampler: str, order: int, schedule: str
) -> None:
    """4× the steps divides the error to the closed-form solution by about 4^order."""
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    exact = ode_solution(noise)
    coarse, fine = ((run_edm(sampler, n, noise, schedule) - exact).abs().mean().item() for n in (100, 400))
    assert fine < (0.003 if order == 1 else 3e-5), f"{sampler}: error {fine:.2e} with 400 steps"
    assert coarse / fine > 0.7 * 4**order, f"{sampler}: error ratio {coarse / fine:.2f}"
    if order == 1:
        assert coarse / fine < 1.5 * 4, f"{sampler}: error ratio {coarse / fine:.2f}"


def test_ddim_and_euler_coincide_in_sigma_space() -> None:
    """First-order DPM-Solver++ (DDIM) and Euler take the same step on the VE probability-flow ODE."""
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    for steps in (1, 3, 10):
        torch.testing.assert_close(run_edm("ddim", steps, noise), run_edm("euler", steps, noise), atol=2e-5, rtol=1e-5)


def test_euler_ancestral_samples_the_data_distribution() -> None:
    """The ancestral SDE sampler is biased at few steps (too little variance) and exact in the limit."""
    noise = torch.randn(4096, 4, 2, generator=torch.Generator().manual_seed(3))
    stds = {}
    for steps in (40, 1000):
        samples = run_edm("euler_ancestral", steps, noise, generator=torch.Generator().manual_seed(4))
        assert samples.mean().item() == pytest.approx(MEAN, abs=0.01)
        stds[steps] = samples.std().item()
    assert stds[1000] == pytest.approx(STD, rel=0.015)
    assert abs(stds[1000] - STD) < abs(stds[40] - STD)


def test_euler_ancestral_with_eta_zero_is_euler() -> None:
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(run_edm("euler_ancestral", 5, noise, eta=0.0), run_edm("euler", 5, noise))


@pytest.mark.parametrize("sampler", EDM_SAMPLERS)
def test_the_last_step_returns_the_last_guided_denoised_estimate(sampler: str) -> None:
    """Every schedule ends at σ = 0, where every sampler's update is x = D: the output is the final estimate."""
    estimates: list[torch.Tensor] = []

    def recording_denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
        estimates.append(exact_denoiser(x, sigma))
        return estimates[-1]

    def push_up(x0_hat: torch.Tensor, step: int) -> torch.Tensor:
        return torch.ones_like(x0_hat)

    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6))
    out = sample_edm(
        recording_denoiser,
        noise,
        sampler=sampler,  # type: ignore[arg-type]
        steps=3,
        schedule="karras",
        sigma_min=SIGMA_MIN,
        sigma_max=SIGMA_MAX,
        sigma_data=0.5,
        guidance=push_up,
        generator=torch.Generator().manual_seed(7),
    )
    assert len(estimates) == 3
    last_scale = 0.5**2 * SIGMA_MIN**2 / (0.5**2 + SIGMA_MIN**2)  # Var(x0 | x) at σ_min, prior std 0.5
    torch.testing.assert_close(out, estimates[-1] + last_scale)


@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpmpp_2m"])
def test_fixed_noise_makes_sampling_deterministic(sampler: str) -> None:
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(8))
    assert torch.equal(run_edm(sampler, 3, noise), run_edm(sampler, 3, noise))


@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpmpp_2m"])
def test_cached_schedulers_carry_no_state_from_one_call_to_the_next(sampler: str) -> None:
    """The scheduler of a (sampler, steps, schedule) is built once and copied per call: a call after others with
    other noise and other step counts gives what a freshly built scheduler gives, to the bit."""
    first, second = (torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)) for seed in (12, 13))
    samplers._prepared_scheduler.cache_clear()
    expected = run_edm(sampler, 3, second, reference=True)
    run_edm(sampler, 3, first, reference=True)
    run_edm(sampler, 5, first, reference=True)
    assert torch.equal(run_edm(sampler, 3, second, reference=True), expected)
    assert samplers._prepared_scheduler.cache_info().misses == 2  # 3 and 5 steps, each built once


@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpmpp_2m"])
@pytest.mark.parametrize("schedule", ["karras", "exponential"])
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 10])
def test_fast_steps_equal_the_diffusers_schedulers(sampler: str, schedule: str, steps: int) -> None:
    """The precomputed-coefficient steps give diffusers' samples within float32 rounding, for a denoiser that is
    not linear in x and with guidance moving every estimate (the 2M step extrapolates from the guided ones)."""
    weights = torch.randn(SHAPE[1:], generator=torch.Generator().manual_seed(14))

    def denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return torch.tanh(exact_denoiser(x, sigma) * weights) + 0.1 * torch.sin(x / (1.0 + sigma))

    def push(x0_hat: torch.Tensor, step: int) -> torch.Tensor:
        return torch.cos(x0_hat) * (step + 1)

    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(15))
    # diffusers' Euler step onto σ = 0 computes x + (x − D) / σ · (0 − σ), cancelling |x| ≈ σ_max · |noise| ≈ 300
    # in float32 (~2e-5), where lerp(x, D, 1) returns D exactly; the other steps agree to 1e-5
    tolerance = 4e-5 if sampler == "euler" else 1e-5
    for guidance in (None, push):
        fast, reference = (
            sample_edm(
                denoiser,
                noise,
                sampler=sampler,  # type: ignore[arg-type]
                steps=steps,
                schedule=schedule,  # type: ignore[arg-type]
                sigma_min=SIGMA_MIN,
                sigma_max=SIGMA_MAX,
                sigma_data=0.5,
                guidance=guidance,
                reference=use_diffusers,
            )
            for use_diffusers in (False, True)
        )
        torch.testing.assert_close(fast, reference, atol=tolerance, rtol=0)


def test_beso_denoises_alike_with_one_float_level_and_a_level_per_sample() -> None:
    """The samplers' float σ (scalings in Python) and a (B,) σ tensor (training, stepwise sampling) agree."""
    torch.manual_seed(17)
    generator = BesoGenerator(
        BesoConfig(network=NetworkConfig(action_dim=7, horizon=16, cond_dim=32, max_cond_tokens=3))
    )
    generator.eval()
    tokens, x = torch.randn(2, 3, 32), torch.randn(2, 16, 7)
    with torch.no_grad():
        for sigma in (0.002, 0.5, 80.0):
            per_sample = generator.denoise(x, torch.full((2,), sigma), tokens)
            torch.testing.assert_close(generator.denoise_at(x, sigma, tokens), per_sample, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_fast_steps_equal_the_diffusers_schedulers_through_a_beso_network(sampler: str) -> None:
    """Same noise, same BESO network (random weights, the exponential schedule, 3 steps): the same actions."""
    torch.manual_seed(16)
    generator = BesoGenerator(
        BesoConfig(network=NetworkConfig(action_dim=7, horizon=16, cond_dim=32, max_cond_tokens=3))
    )
    generator.eval()
    tokens = torch.randn(2, 3, 32)
    noise = torch.randn(2, 16, 7)
    config = generator.config
    with torch.no_grad():
        fast, reference = (
            sample_edm(
                lambda x, sigma: generator.denoise_at(x, sigma, tokens),
                noise,
                sampler=sampler,  # type: ignore[arg-type]
                steps=3,
                schedule=config.schedule,
                sigma_min=config.sigma_min,
                sigma_max=config.sigma_max,
                sigma_data=config.sigma_data,
                reference=use_diffusers,
            )
            for use_diffusers in (False, True)
        )
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=0)


def test_euler_ancestral_is_reproducible_from_its_generator() -> None:
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(9))
    first = run_edm("euler_ancestral", 3, noise, generator=torch.Generator().manual_seed(10))
    again = run_edm("euler_ancestral", 3, noise, generator=torch.Generator().manual_seed(10))
    other = run_edm("euler_ancestral", 3, noise, generator=torch.Generator().manual_seed(11))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_edm_preconditioning_matches_diffusers() -> None:
    """Training (beso.py) and sampling (diffusers' schedulers) must agree on c_skip, c_out, c_in, c_noise."""
    preconditioning = EdmPreconditioning(0.5)
    scheduler = EDMEulerScheduler(sigma_data=0.5)
    sigma = torch.tensor([0.002, 0.1, 0.5, 3.0, 80.0])
    x, output = torch.randn(5), torch.randn(5)
    torch.testing.assert_close(
        preconditioning.c_skip(sigma) * x + preconditioning.c_out(sigma) * output,
        scheduler.precondition_outputs(x, output, sigma),
    )
    torch.testing.assert_close(preconditioning.c_in(sigma) * x, scheduler.precondition_inputs(x, sigma))
    torch.testing.assert_close(preconditioning.c_noise(sigma), scheduler.precondition_noise(sigma))
    # the shared-term form the denoiser uses gives the methods' values to the bit
    for shared, alone in zip(
        preconditioning.scalings(sigma),
        (preconditioning.c_skip(sigma), preconditioning.c_out(sigma), preconditioning.c_in(sigma)),
        strict=True,
    ):
        assert torch.equal(shared, alone)


class ExactVelocity(nn.Module):
    """The rectified-flow velocity E[x1 − ε | x_t] for x1 ~ N(MEAN, STD²), ε ~ N(0, 1), x_t = (1 − t) ε + t x1."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        t = t[:, None, None]
        variance = (1 - t) ** 2 + t**2 * STD**2
        return MEAN + (t * STD**2 - (1 - t)) / variance * (x - t * MEAN)


def test_flow_euler_with_the_exact_velocity_converges_to_the_transport_map() -> None:
    """The Gaussian flow is affine: noise n ends at MEAN + STD · n; Euler's error falls as 1 / steps."""
    flow = FlowMatchingGenerator(FlowConfig(network=NETWORK))
    flow.network = ExactVelocity()
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(12))
    exact = MEAN + STD * noise
    coarse, fine = (
        (flow.sample(Conditioning(TOKENS), noise=noise, steps=n) - exact).abs().mean().item() for n in (100, 400)
    )
    assert fine < 2e-3
    assert 0.7 * 4 < coarse / fine < 1.5 * 4


class ExactNoise(nn.Module):
    """E[ε | x_t] for x_t = sqrt(ᾱ) x0 + sqrt(1 − ᾱ) ε, x0 ~ N(MEAN, STD²); the level is t / T."""

    def __init__(self, alphas_cumprod: torch.Tensor, timesteps: int) -> None:
        super().__init__()
        self.alphas_cumprod = alphas_cumprod
        self.timesteps = timesteps

    def forward(self, x: torch.Tensor, level: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        index = (level * self.timesteps).round().long()
        alpha_bar = self.alphas_cumprod[index][:, None, None]
        return (1 - alpha_bar).sqrt() / (alpha_bar * STD**2 + 1 - alpha_bar) * (x - alpha_bar.sqrt() * MEAN)


def _exact_ddpm(timesteps: int) -> DdpmGenerator:
    ddpm = DdpmGenerator(DdpmConfig(network=NETWORK, num_train_timesteps=timesteps, steps=timesteps, clip_sample=None))
    ddpm.network = ExactNoise(ddpm.ddpm.alphas_cumprod, timesteps)
    return ddpm


@pytest.mark.parametrize(("timesteps", "tolerance"), [(100, 0.01), (1000, 0.001)])
def test_ddim_with_the_exact_noise_predictor_solves_the_gaussian_ode(timesteps: int, tolerance: float) -> None:
    """DDIM over every timestep of the chain lands on the closed-form ODE solution, closer on a finer chain."""
    ddpm = _exact_ddpm(timesteps)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(13))
    alpha_bar = float(ddpm.ddpm.alphas_cumprod[-1])
    exact = MEAN + STD * (noise - math.sqrt(alpha_bar) * MEAN) / math.sqrt(alpha_bar * STD**2 + 1 - alpha_bar)
    out = ddpm.sample(Conditioning(TOKENS), noise=noise, sampler="ddim")
    assert (out - exact).abs().mean().item() < tolerance
    few = ddpm.sample(Conditioning(TOKENS), noise=noise, sampler="ddim", steps=10)
    assert torch.equal(few, ddpm.sample(Conditioning(TOKENS), noise=noise, sampler="ddim", steps=10))


def test_ddpm_ancestral_sampling_reproduces_the_data_statistics() -> None:
    ddpm = _exact_ddpm(1000)
    tokens = torch.zeros(2048, 1, 1)
    out = ddpm.sample(Conditioning(tokens), sampler="ddpm", generator=torch.Generator().manual_seed(14))
    assert out.mean().item() == pytest.approx(MEAN, abs=0.01)
    assert out.std().item() == pytest.approx(STD, rel=0.015)
