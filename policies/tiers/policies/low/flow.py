"""Rectified flow / flow matching over action chunks (Liu et al. 2022, Lipman et al. 2022).

The path runs linearly from noise at t = 0 to the action chunk at t = 1; the network predicts its velocity::

    x_t = (1 − t) ε + t x1        v(x_t, t) ≈ x1 − ε        x1_hat = x_t + (1 − t) v

Sampling integrates dx/dt = v with a few Euler steps on a uniform grid (4 by default)::

    t:  0 ──v──> 1/n ──v──> 2/n … ──v──> 1        one network evaluation per arrow

Guidance acts on the implied clean estimate x1_hat, like BESO's: x1_hat += scale · gradient, with scale the
variance of x1 given x_t under a Gaussian prior of std ``data_std``; the velocity is then re-derived from the
moved estimate, v = (x1_hat − x_t) / (1 − t). Classifier-free guidance mixes velocities, which are linear in
the conditional expectation, exactly as it mixes denoised estimates. The sampler is deterministic given the
starting noise and unrolls into a fixed sequence of tensor ops (ONNX). :meth:`FlowMatchingGenerator.step_function`
runs the same Euler steps one at a time for the mid tier's steering (:mod:`tiers.core.sampling`).
"""

from __future__ import annotations

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


@dataclass
class FlowConfig(Config):
    """Flow matching: the training time density, condition dropout and the default number of Euler steps."""

    network: NetworkConfig = field(default_factory=NetworkConfig)  # the velocity network
    time_density: Literal["uniform", "logit_normal"] = "uniform"  # training density of t in (0, 1)
    logit_normal_mean: float = 0.0  # mean of logit(t) under "logit_normal" (SD3: 0)
    logit_normal_std: float = 1.0  # std of logit(t) under "logit_normal" (SD3: 1)
    data_std: float = 0.5  # std of the normalised actions assumed by the guidance step scale
    cond_dropout: float = 0.1  # probability of training on the null tokens (classifier-free guidance)
    steps: int = 4  # default Euler steps (network evaluations) per chunk

    def __post_init__(self) -> None:
        if self.logit_normal_std <= 0:
            raise ValueError(f"logit_normal_std must be > 0, got {self.logit_normal_std}")
        if self.data_std <= 0:
            raise ValueError(f"data_std must be > 0, got {self.data_std}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


class FlowMatchingGenerator(nn.Module):
    """Rectified-flow velocity model over normalised (B, Ta, A) chunks; satisfies :class:`ActionGenerator`."""

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        self.network = build_network(config.network)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """v(x_t, t): x (B, Ta, A), t (B,) in [0, 1), tokens (B, Tc, D) -> (B, Ta, A)."""
        out: torch.Tensor = self.network(x, t, tokens)
        return out

    def sample_times(self, batch: int, device: torch.device) -> torch.Tensor:
        """(batch,) training times in (0, 1) from the configured density."""
        if self.config.time_density == "uniform":
            return torch.rand(batch, device=device)
        logits = self.config.logit_normal_mean + self.config.logit_normal_std * torch.randn(batch, device=device)
        return torch.sigmoid(logits)

    def loss(
        self, actions: torch.Tensor, conditioning: Conditioning, *, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Velocity regression ‖v(x_t, t) − (x1 − ε)‖², a scalar; see :meth:`ActionGenerator.loss`.

        Condition dropout applies in training mode only.
        """
        check_actions(actions, conditioning)
        t = self.sample_times(actions.shape[0], actions.device)  # (B,)
        noise = torch.randn_like(actions)
        x_t = (1.0 - t[:, None, None]) * noise + t[:, None, None] * actions
        tokens = drop_conditions(conditioning, self.config.cond_dropout, enabled=self.training)
        per_element = (self.velocity(x_t, t, tokens) - (actions - noise)) ** 2  # (B, Ta, A)
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
    ) -> torch.Tensor:
        """(B, Ta, A) normalised chunks by Euler integration from t = 0 to 1; see :meth:`ActionGenerator.sample`."""
        steps = self.config.steps if steps is None else steps
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        net = self.config.network
        x = starting_noise(conditioning, net.horizon, net.action_dim, noise, generator)
        velocity = with_classifier_free_guidance(self.velocity, conditioning, cfg_scale)
        dt = 1.0 / steps
        for index in range(steps):
            t = index * dt
            v = velocity(x, x.new_full((x.shape[0],), t))
            if guidance is not None:
                # move the implied clean estimate, then re-derive the velocity that reaches it
                estimate = x + (1.0 - t) * v
                scale = guidance_step_scale(t, 1.0 - t, self.config.data_std)
                v = v + scale * guidance(estimate, index) / (1.0 - t)
            x = x + dt * v
        return x

    def step_function(self, steps: int, tokens: ParticleTokens) -> SamplerStep:
        """:meth:`sample`'s Euler steps (t = 0 to 1, conditional model) one at a time, over P particles.

        See :meth:`~tiers.policies.low.generator.StepwiseGenerator.step_function`. Guidance moves the implied
        clean estimate x1_hat = x_t + (1 − t) v and re-derives the velocity, as in :meth:`sample`; the clean
        estimate returned is x1_hat, and after the last step the sample itself.
        """
        dt = 1.0 / steps

        def step(x: torch.Tensor, index: int, hook: StateHook | None) -> tuple[torch.Tensor, torch.Tensor]:
            t = index * dt
            with torch.no_grad():
                v = self.velocity(x, x.new_full((x.shape[0],), t), tokens(x.shape[0]))
            estimate = x + (1.0 - t) * v
            if hook is not None:
                scale = guidance_step_scale(t, 1.0 - t, self.config.data_std)
                v = v + scale * hook(estimate) / (1.0 - t)
                estimate = x + (1.0 - t) * v
            x = x + dt * v
            return x, x if index == steps - 1 else estimate

        return step
