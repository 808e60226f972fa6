"""BESO: score-based diffusion over action chunks under EDM preconditioning (Reuss et al. 2023, Karras et al. 2022).

The network F is wrapped into a denoiser of noise std σ (variance exploding: x = x0 + σ ε)::

    D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ), tokens)
    c_skip = σ_d² / (σ² + σ_d²)    c_out = σ σ_d / sqrt(σ² + σ_d²)    c_in = 1 / sqrt(σ² + σ_d²)    c_noise = ln(σ) / 4

Training draws σ per sample from a truncated log-logistic (BESO) or a log-normal (EDM) density and minimises
λ(σ) ‖D(x0 + σ ε; σ) − x0‖² with EDM's weight λ = (σ² + σ_d²) / (σ σ_d)², computed in the equivalent,
better conditioned form ‖F − (x0 − c_skip x) / c_out‖². Sampling runs one of :mod:`samplers` (3 steps by default);
:meth:`BesoGenerator.step_function` runs the ancestral Euler sampler one step at a time for the mid tier's
steering (:mod:`tiers.core.sampling`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from tiers.core.config import Config
from tiers.core.sampling import SamplerStep, StateHook
from tiers.policies.low.generator import (
    Conditioning,
    GuidanceHook,
    ParticleTokens,
    check_actions,
    drop_conditions,
    guidance_step_scale,
    masked_mean,
    starting_noise,
    with_classifier_free_guidance,
)
from tiers.policies.low.networks import NetworkConfig, build_network
from tiers.policies.low.samplers import (
    EDM_SAMPLERS,
    SIGMA_SCHEDULES,
    EdmSamplerName,
    SigmaScheduleName,
    euler_ancestral_step,
    sample_edm,
    sigma_schedule,
)


@dataclass
class BesoConfig(Config):
    """BESO: preconditioning, the training noise density, condition dropout and the default sampler."""

    network: NetworkConfig = field(default_factory=NetworkConfig)  # the denoising network F
    sigma_data: float = 0.5  # σ_d, std of the normalised actions assumed by the preconditioning
    sigma_min: float = 0.001  # lowest noise std, in training (truncation) and sampling
    sigma_max: float = 80.0  # highest noise std; sampling starts from noise · sigma_max
    sigma_density: Literal["loglogistic", "lognormal"] = "loglogistic"  # training density of σ (BESO / EDM)
    loglogistic_loc: float = math.log(0.5)  # location of ln σ under the log-logistic density (BESO: ln σ_d)
    loglogistic_scale: float = 0.5  # scale of ln σ under the log-logistic density
    lognormal_mean: float = -1.2  # mean of ln σ under the log-normal density (EDM's P_mean)
    lognormal_std: float = 1.2  # std of ln σ under the log-normal density (EDM's P_std)
    cond_dropout: float = 0.1  # probability of training on the null tokens (classifier-free guidance)
    sampler: EdmSamplerName = "ddim"  # default sampler: "ddim", "euler", "euler_ancestral", "dpmpp_2m"
    schedule: SigmaScheduleName = "exponential"  # default noise schedule: "karras" or "exponential"
    steps: int = 3  # default denoiser evaluations per chunk
    rho: float = 7.0  # Karras schedule's ρ

    def __post_init__(self) -> None:
        if self.sigma_data <= 0:
            raise ValueError(f"sigma_data must be > 0, got {self.sigma_data}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got sigma_min={self.sigma_min}, sigma_max={self.sigma_max}"
            )
        if self.loglogistic_scale <= 0 or self.lognormal_std <= 0:
            raise ValueError(
                f"loglogistic_scale and lognormal_std must be > 0, got {self.loglogistic_scale}, {self.lognormal_std}"
            )
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.sampler not in EDM_SAMPLERS:
            raise ValueError(f"sampler must be one of {EDM_SAMPLERS}, got {self.sampler!r}")
        if self.schedule not in SIGMA_SCHEDULES:
            raise ValueError(f"schedule must be one of {SIGMA_SCHEDULES}, got {self.schedule!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.rho <= 0:
            raise ValueError(f"rho must be > 0, got {self.rho}")


class EdmPreconditioning:
    """EDM's scalings for a data std σ_d; every method maps σ (any shape) to a tensor of the same shape."""

    def __init__(self, sigma_data: float) -> None:
        self.sigma_data = sigma_data

    def c_skip(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma * self.sigma_data / (sigma**2 + self.sigma_data**2).sqrt()

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        return 1.0 / (sigma**2 + self.sigma_data**2).sqrt()

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma.log() / 4.0

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in), the same values as the methods, sharing σ² + σ_d² and its root (fewer small ops
        per denoiser evaluation: at B = 1 each costs about as much as its arithmetic)."""
        variance = sigma**2 + self.sigma_data**2
        root = variance.sqrt()
        return self.sigma_data**2 / variance, sigma * self.sigma_data / root, 1.0 / root


class BesoGenerator(nn.Module):
    """BESO score model over normalised (B, Ta, A) chunks; satisfies :class:`ActionGenerator`."""

    def __init__(self, config: BesoConfig) -> None:
        super().__init__()
        self.config = config
        self.network = build_network(config.network)
        self.preconditioning = EdmPreconditioning(config.sigma_data)

    def network_output(self, x: torch.Tensor, sigma: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Raw network output F(c_in x, c_noise, tokens): x (B, Ta, A), σ (B,), tokens (B, Tc, D) -> (B, Ta, A)."""
        scale_in = self.preconditioning.c_in(sigma)[:, None, None]
        out: torch.Tensor = self.network(x * scale_in, self.preconditioning.c_noise(sigma), tokens)
        return out

    def denoise_at(self, x: torch.Tensor, sigma: float, tokens: torch.Tensor) -> torch.Tensor:
        """:meth:`denoise` at one σ > 0 for the whole batch, the samplers' case: the scalings are Python floats,
        so an evaluation costs four tensor ops besides the network instead of sixteen (at B = 1 on a CPU each
        small op costs about as much as its arithmetic). x (B, Ta, A), tokens (B, Tc, D) -> (B, Ta, A)."""
        sigma_data = self.config.sigma_data
        root = math.sqrt(sigma**2 + sigma_data**2)
        noise_level = x.new_full((x.shape[0],), math.log(sigma) / 4.0)  # c_noise(σ), (B,)
        out: torch.Tensor = self.network(x * (1.0 / root), noise_level, tokens)  # F(c_in x, c_noise, tokens)
        return torch.add(x * (sigma_data**2 / root**2), out, alpha=sigma * sigma_data / root)  # c_skip x + c_out F

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """D(x; σ), the estimate of the clean chunk: x (B, Ta, A), σ (B,) > 0, tokens (B, Tc, D) -> (B, Ta, A)."""
        skip, scale_out, scale_in = (c.view(-1, 1, 1) for c in self.preconditioning.scalings(sigma))  # (B, 1, 1)
        out: torch.Tensor = self.network(x * scale_in, self.preconditioning.c_noise(sigma), tokens)
        return skip * x + scale_out * out

    def sample_sigmas(self, batch: int, device: torch.device) -> torch.Tensor:
        """(batch,) training noise stds from the configured density, truncated to [sigma_min, sigma_max]."""
        c = self.config
        log_min, log_max = math.log(c.sigma_min), math.log(c.sigma_max)
        if c.sigma_density == "loglogistic":
            # inverse CDF of a logistic on ln σ, restricted to the CDF range of [ln σ_min, ln σ_max] (k-diffusion)
            def cdf(value: float) -> float:
                return 1.0 / (1.0 + math.exp(-(value - c.loglogistic_loc) / c.loglogistic_scale))

            low, high = cdf(log_min), cdf(log_max)
            u = torch.rand(batch, device=device) * (high - low) + low
            log_sigma = c.loglogistic_loc + c.loglogistic_scale * torch.logit(u)
        else:
            log_sigma = c.lognormal_mean + c.lognormal_std * torch.randn(batch, device=device)
        return log_sigma.clamp(log_min, log_max).exp()

    def loss(
        self, actions: torch.Tensor, conditioning: Conditioning, *, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """EDM-weighted denoising loss, a scalar; see :meth:`ActionGenerator.loss`.

        Condition dropout applies in training mode only (``module.train()``), so a validation loss in
        ``eval()`` mode measures the conditional model.
        """
        check_actions(actions, conditioning)
        sigma = self.sample_sigmas(actions.shape[0], actions.device)  # (B,)
        noisy = actions + torch.randn_like(actions) * sigma[:, None, None]
        tokens = drop_conditions(conditioning, self.config.cond_dropout, enabled=self.training)
        skip = self.preconditioning.c_skip(sigma)[:, None, None]
        scale_out = self.preconditioning.c_out(sigma)[:, None, None]
        target = (actions - skip * noisy) / scale_out  # the F that makes D exact
        per_element = (self.network_output(noisy, sigma, tokens) - target) ** 2  # (B, Ta, A)
        return masked_mean(per_element, mask)

    def sample(
        self,
        conditioning: Conditioning,
        *,
        noise: torch.Tensor | None = None,
        steps: int | None = None,
        guidance: GuidanceHook | None = None,
        cfg_scale: float = 1.0,
        generator: torch.Generator | None = None,
        sampler: EdmSamplerName | None = None,
        schedule: SigmaScheduleName | None = None,
    ) -> torch.Tensor:
        """(B, Ta, A) normalised chunks; see :meth:`ActionGenerator.sample`.

        Beyond the protocol, ``sampler`` and ``schedule`` override the configured ones for this call.
        Ta is the network's ``horizon``. Gradients flow unless the caller disables them (``torch.no_grad()``;
        not ``inference_mode``, in which guidance cannot take gradients).
        """
        c = self.config
        noise = starting_noise(conditioning, c.network.horizon, c.network.action_dim, noise, generator)
        denoiser = with_classifier_free_guidance(self.denoise_at, conditioning, cfg_scale)
        return sample_edm(
            denoiser,
            noise,
            sampler=sampler or c.sampler,
            steps=c.steps if steps is None else steps,
            schedule=schedule or c.schedule,
            sigma_min=c.sigma_min,
            sigma_max=c.sigma_max,
            sigma_data=c.sigma_data,
            rho=c.rho,
            guidance=guidance,
            generator=generator,
        )

    def step_function(self, steps: int, tokens: ParticleTokens) -> SamplerStep:
        """Ancestral Euler on the configured σ schedule one step at a time, over P particles (conditional model).

        See :meth:`~tiers.policies.low.generator.StepwiseGenerator.step_function`. One denoiser evaluation per
        step, as :meth:`sample` with ``sampler="euler_ancestral"`` (the same global random draws: fresh noise
        from torch's default generator); the first step scales the standard-normal start by σ_max. Guidance
        moves D(x; σ) up the reward gradient before the step (the scale of
        :func:`~tiers.policies.low.samplers.sample_edm`). The fresh noise of each step differs between
        particles, which gives Feynman–Kac resampling distinct descendants to choose from. The clean estimate
        returned is D(x; σ), and after the last step the sample itself.
        """
        c = self.config
        levels = sigma_schedule(
            steps, schedule=c.schedule, sigma_min=c.sigma_min, sigma_max=c.sigma_max, rho=c.rho
        )  # σ_max, ..., σ_min, 0

        def step(x: torch.Tensor, index: int, hook: StateHook | None) -> tuple[torch.Tensor, torch.Tensor]:
            sigma = levels[index]
            if index == 0:
                x = x * sigma  # the starting noise is standard normal
            with torch.no_grad():
                denoised = self.denoise(x, x.new_full((x.shape[0],), sigma), tokens(x.shape[0]))
            if hook is not None:
                denoised = denoised + guidance_step_scale(1.0, sigma, c.sigma_data) * hook(denoised)
            x = euler_ancestral_step(x, denoised, sigma, levels[index + 1])
            return x, x if index == steps - 1 else denoised

        return step
