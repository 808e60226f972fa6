"""DDPM / DDIM baseline through diffusers' schedulers (Ho et al. 2020, Song et al. 2021; as diffusion_policy).

Variance-preserving diffusion on a discrete grid of ``num_train_timesteps`` (100) steps with noise
prediction::

    x_t = sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε        network(x_t, t / T, tokens) ≈ ε

Sampling walks ``steps`` of those timesteps (evenly spaced, ending at t = 0) with diffusers'
``DDPMScheduler`` (ancestral: fresh noise per step from ``generator``; DDPM-100 by default) or
``DDIMScheduler`` (deterministic at η = 0; DDIM-k for any k <= T). Guidance moves the implied clean estimate
x0_hat = (x_t − sqrt(1 − ᾱ) ε) / sqrt(ᾱ) by scale · gradient (scale: Var(x0 | x_t) under a Gaussian prior of
std ``data_std``) and hands the scheduler the noise prediction that implies the moved estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from tiers.core.config import Config
from tiers.policies.low.generator import (
    Conditioning,
    GuidanceHook,
    check_actions,
    drop_conditions,
    guidance_step_scale,
    masked_mean,
    starting_noise,
    with_classifier_free_guidance,
)
from tiers.policies.low.networks import NetworkConfig, build_network


@dataclass
class DdpmConfig(Config):
    """The DDPM/DDIM baseline: noise schedule, condition dropout and the default sampler."""

    network: NetworkConfig = field(default_factory=NetworkConfig)  # the noise-prediction network
    num_train_timesteps: int = 100  # T, diffusion steps of the training chain
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"  # diffusers' β_t
    # clip x0_hat to [-v, v] at each step, as diffusion_policy (actions min-max normalised to [-1, 1]): at t = T-1,
    # ᾱ ≈ 1e-7 and x0_hat = (x - sqrt(1 - ᾱ) ε) / sqrt(ᾱ) multiplies any error of ε by ~3000. None: no clip.
    clip_sample: float | None = 1.0
    data_std: float = 0.5  # std of the normalised actions assumed by the guidance step scale
    cond_dropout: float = 0.1  # probability of training on the null tokens (classifier-free guidance)
    sampler: Literal["ddpm", "ddim"] = "ddpm"  # default sampler
    steps: int = 100  # default network evaluations per chunk (<= num_train_timesteps)
    ddim_eta: float = 0.0  # DDIM's η: 0 deterministic, 1 as stochastic as DDPM

    def __post_init__(self) -> None:
        if self.num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {self.num_train_timesteps}")
        if self.clip_sample is not None and self.clip_sample <= 0:
            raise ValueError(f"clip_sample must be > 0 or None, got {self.clip_sample}")
        if self.data_std <= 0:
            raise ValueError(f"data_std must be > 0, got {self.data_std}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not 1 <= self.steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be in [1, num_train_timesteps={self.num_train_timesteps}], got {self.steps}")
        if self.ddim_eta < 0:
            raise ValueError(f"ddim_eta must be >= 0, got {self.ddim_eta}")


class DdpmGenerator(nn.Module):
    """Noise-prediction diffusion over normalised (B, Ta, A) chunks; satisfies :class:`ActionGenerator`."""

    def __init__(self, config: DdpmConfig) -> None:
        super().__init__()
        self.config = config
        self.network = build_network(config.network)
        common = {
            "num_train_timesteps": config.num_train_timesteps,
            "beta_schedule": config.beta_schedule,
            "clip_sample": config.clip_sample is not None,
            "clip_sample_range": config.clip_sample or 1.0,
            "prediction_type": "epsilon",
            # "trailing" starts few-step sampling at t = T - 1, the noise the chain was trained to start from
            "timestep_spacing": "trailing",
        }
        # Any: diffusers' config decorator hides the schedulers' attributes from type checkers.
        self.ddpm: Any = cast(Any, DDPMScheduler)(variance_type="fixed_small", **common)
        self.ddim: Any = cast(Any, DDIMScheduler)(**common)
        self.alphas_cumprod: list[float] = self.ddpm.alphas_cumprod.tolist()  # ᾱ_t, t = 0 … T-1

    def predict_noise(self, x: torch.Tensor, timestep: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """ε(x_t, t): x (B, Ta, A), timestep (B,) integer-valued in [0, T), tokens (B, Tc, D) -> (B, Ta, A)."""
        out: torch.Tensor = self.network(x, timestep.float() / self.config.num_train_timesteps, tokens)
        return out

    def loss(
        self, actions: torch.Tensor, conditioning: Conditioning, *, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Noise regression ‖ε(x_t, t) − ε‖² at uniform t, a scalar; see :meth:`ActionGenerator.loss`.

        Condition dropout applies in training mode only.
        """
        check_actions(actions, conditioning)
        timesteps = torch.randint(0, self.config.num_train_timesteps, (actions.shape[0],), device=actions.device)
        noise = torch.randn_like(actions)
        noisy: torch.Tensor = self.ddpm.add_noise(actions, noise, timesteps)
        tokens = drop_conditions(conditioning, self.config.cond_dropout, enabled=self.training)
        per_element = (self.predict_noise(noisy, timesteps, tokens) - noise) ** 2  # (B, Ta, A)
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
        sampler: Literal["ddpm", "ddim"] | None = None,
    ) -> torch.Tensor:
        """(B, Ta, A) normalised chunks; see :meth:`ActionGenerator.sample`.

        Beyond the protocol, ``sampler`` overrides the configured one for this call. DDPM draws fresh noise
        from ``generator`` at every step; DDIM at η = 0 is deterministic given ``noise``. Not re-entrant:
        the schedulers hold the step grid of the call in progress.
        """
        c = self.config
        steps = c.steps if steps is None else steps
        if not 1 <= steps <= c.num_train_timesteps:
            raise ValueError(f"steps must be in [1, {c.num_train_timesteps}], got {steps}")
        sampler = sampler or c.sampler
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        scheduler = self.ddpm if sampler == "ddpm" else self.ddim
        scheduler.set_timesteps(steps)
        extra: dict[str, Any] = {"eta": c.ddim_eta} if sampler == "ddim" else {}

        x = starting_noise(conditioning, c.network.horizon, c.network.action_dim, noise, generator)
        predict = with_classifier_free_guidance(self.predict_noise, conditioning, cfg_scale)
        for index, timestep in enumerate(scheduler.timesteps.tolist()):
            epsilon = predict(x, x.new_full((x.shape[0],), timestep, dtype=torch.long))
            if guidance is not None:
                signal, noise_std = (
                    math.sqrt(self.alphas_cumprod[timestep]),
                    math.sqrt(1 - self.alphas_cumprod[timestep]),
                )
                estimate = (x - noise_std * epsilon) / signal
                shift = guidance_step_scale(signal, noise_std, c.data_std) * guidance(estimate, index)
                epsilon = epsilon - (signal / noise_std) * shift  # the ε whose implied x0 is estimate + shift
            x = scheduler.step(epsilon, timestep, x, generator=generator, return_dict=False, **extra)[0]
        return x
