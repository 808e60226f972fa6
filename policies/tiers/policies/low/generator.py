"""The contract between a low-tier policy and its generative core (BESO, flow matching, DDPM).

A generator learns p(actions | conditioning) over *normalised* action chunks and samples from it. The
policy owns everything else: observation encoders, normalisation, the action queue, and turning
:class:`~tiers.core.guidance.Guidance` terms (which act on raw actions) into a :data:`GuidanceHook` that
acts on normalised ones.

Shapes: B batch, Ta action steps (the horizon), A action dimension, Tc conditioning tokens, D token width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from tiers.core.errors import ContractError
from tiers.core.sampling import SamplerStep

# (x0_hat (B, Ta, A) normalised denoised estimate at this step, step index) -> (B, Ta, A) gradient of the
# guidance reward with respect to x0_hat, already weighted (the sampler adds ``gradient * step_scale``).
# Every generator uses the same step_scale: the variance of the clean chunk given the current noisy one under a
# Gaussian prior of the generator's data std (``guidance_step_scale``), i.e. the mean shift of that posterior
# when it is tilted by exp(reward). It is bounded by the data variance and vanishes as the noise does, so a
# reward gradient moves early, uncertain estimates the most and never blows up at high noise.
GuidanceHook = Callable[[torch.Tensor, int], torch.Tensor]

# P -> (P, Tc, D) the conditioning tokens of one observation for P particles
ParticleTokens = Callable[[int], torch.Tensor]


@dataclass(frozen=True)
class Conditioning:
    """What the denoising network is conditioned on.

    Attributes:
        tokens: (B, Tc, D) conditioning tokens (observation history, language, goal, path), float32.
        null_tokens: (B, Tc, D) the "no condition" tokens for classifier-free guidance, or None when the
            policy does not use it. Training replaces ``tokens`` by these with the dropout probability.
    """

    tokens: torch.Tensor
    null_tokens: torch.Tensor | None = None


@runtime_checkable
class ActionGenerator(Protocol):
    """A generative model of normalised action chunks; an ``nn.Module`` holding its denoising network."""

    def loss(
        self, actions: torch.Tensor, conditioning: Conditioning, *, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Training loss, a scalar.

        Args:
            actions: (B, Ta, A) normalised target chunks.
            conditioning: tokens; ``null_tokens`` (when set) replace ``tokens`` per sample with the
                generator's condition-dropout probability (classifier-free guidance training).
            mask: (B, Ta) bool, True where a step is real (False on lerobot's end-of-episode padding);
                padded steps do not count in the loss. None: every step counts.
        """
        ...

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
        """Draw (B, Ta, A) normalised chunks.

        Args:
            conditioning: tokens (B from ``tokens``).
            noise: (B, Ta, A) standard-normal starting noise; None draws it with ``generator``. A fixed
                noise makes sampling deterministic for samplers without fresh noise per step (ONNX export,
                golden tests).
            steps: network evaluations for the whole chunk (the sampler's step count); None: configured default.
            guidance: called at every step with the current denoised estimate; its gradient is added.
            cfg_scale: classifier-free guidance scale w; 1.0 uses the conditional model alone, otherwise
                D = D(∅) + w (D(c) − D(∅)) (needs ``null_tokens``).
            generator: random source for the noise (and for ancestral samplers' fresh noise).
        """
        ...


@runtime_checkable
class StepwiseGenerator(Protocol):
    """A generator whose sampler also runs one step at a time (:mod:`tiers.core.sampling`): flow and BESO."""

    def step_function(self, steps: int, tokens: ParticleTokens) -> SamplerStep:
        """Step i of a ``steps``-step sampler of the conditional model, over P particles in normalised units.

        Args:
            steps: denoising steps of the schedule.
            tokens: P -> (P, Tc, D) conditioning tokens of the one observation all particles share.

        Returns:
            ``step(x (P, Ta, A), i, hook) -> (x_{i+1}, x0_i)``: the network runs without gradients; ``hook``
            (x0 (P, Ta, A) -> weighted reward gradient) moves the clean estimate with the scale of
            :func:`guidance_step_scale`, as :meth:`ActionGenerator.sample` does with its guidance hook.
        """
        ...


def guidance_step_scale(signal: float, noise: float, data_std: float) -> float:
    """Var(x0 | x_t) for x_t = signal · x0 + noise · ε with x0 ~ N(·, data_std²), ε ~ N(0, 1), per element.

    BESO (variance exploding): signal 1, noise σ. Flow matching x_t = t · x1 + (1 - t) · ε: signal t, noise
    1 - t. DDPM: signal sqrt(ᾱ), noise sqrt(1 - ᾱ).
    """
    prior = data_std**2
    return prior * noise**2 / (signal**2 * prior + noise**2)


def masked_mean(per_element: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of a (B, Ta, A) loss over the real steps only.

    Args:
        per_element: (B, Ta, A) loss terms.
        mask: (B, Ta) bool, True where the step is real; None: every step counts.

    Returns:
        Scalar: the mean over A of each step, averaged over the steps where ``mask`` is True. A batch with no
        real step gives 0 (with a gradient), not NaN.
    """
    if mask is None:
        return per_element.mean()
    if mask.shape != per_element.shape[:2]:
        raise ContractError(f"mask must have shape {tuple(per_element.shape[:2])}, got {tuple(mask.shape)}")
    weights = mask.to(per_element.dtype)
    per_step = per_element.mean(dim=2)  # (B, Ta)
    return (per_step * weights).sum() / weights.sum().clamp(min=1.0)


def drop_conditions(conditioning: Conditioning, probability: float, *, enabled: bool) -> torch.Tensor:
    """Tokens for one training batch: each sample's tokens become its null tokens with ``probability``.

    Args:
        conditioning: tokens (B, Tc, D) and optional null_tokens (B, Tc, D).
        probability: condition dropout for classifier-free guidance training.
        enabled: False (evaluation mode) or no null tokens or probability 0: the tokens are returned as they are.

    Returns:
        (B, Tc, D) tokens.
    """
    tokens = conditioning.tokens
    if not enabled or conditioning.null_tokens is None or probability <= 0.0:
        return tokens
    if conditioning.null_tokens.shape != tokens.shape:
        raise ContractError(
            f"null_tokens must match tokens {tuple(tokens.shape)}, got {tuple(conditioning.null_tokens.shape)}"
        )
    dropped = torch.rand(tokens.shape[0], 1, 1, device=tokens.device) < probability  # (B, 1, 1)
    return torch.where(dropped, conditioning.null_tokens, tokens)


def with_classifier_free_guidance[Level: (torch.Tensor, float)](
    model: Callable[[torch.Tensor, Level, torch.Tensor], torch.Tensor],
    conditioning: Conditioning,
    cfg_scale: float,
) -> Callable[[torch.Tensor, Level], torch.Tensor]:
    """Close ``model(x, level, tokens)`` over the conditioning, applying classifier-free guidance.

    Args:
        model: any prediction linear in the score (denoised estimate, velocity, noise): (B, Ta, A), level
            ((B,) tensor, or one float for the batch), (B, Tc, D) -> (B, Ta, A).
        conditioning: the tokens, and the null tokens when ``cfg_scale != 1``.
        cfg_scale: w; 1 evaluates the conditional model only; otherwise both branches run in one batch of 2B
            and the result is out(∅) + w (out(c) - out(∅)).

    Returns:
        (x (B, Ta, A), level) -> (B, Ta, A).
    """
    tokens = conditioning.tokens
    if cfg_scale == 1.0:
        return lambda x, level: model(x, level, tokens)
    if conditioning.null_tokens is None:
        raise ContractError(f"cfg_scale={cfg_scale} needs Conditioning.null_tokens, which are None")
    if conditioning.null_tokens.shape != tokens.shape:
        raise ContractError(
            f"null_tokens must match tokens {tuple(tokens.shape)}, got {tuple(conditioning.null_tokens.shape)}"
        )
    both = torch.cat([tokens, conditioning.null_tokens], dim=0)  # (2B, Tc, D)

    def guided(x: torch.Tensor, level: Level) -> torch.Tensor:
        if isinstance(level, torch.Tensor):
            out = model(torch.cat([x, x]), torch.cat([level, level]), both)  # (2B, Ta, A)
        else:
            out = model(torch.cat([x, x]), level, both)
        conditional, unconditional = out.chunk(2)
        return unconditional + cfg_scale * (conditional - unconditional)

    return guided


def check_actions(actions: torch.Tensor, conditioning: Conditioning) -> None:
    """Raise a :class:`ContractError` unless ``actions`` is (B, Ta, A) with the tokens' batch size."""
    if actions.ndim != 3 or actions.shape[0] != conditioning.tokens.shape[0]:
        raise ContractError(
            f"actions must be (B, Ta, A) with B = {conditioning.tokens.shape[0]} (from the tokens), "
            f"got {tuple(actions.shape)}"
        )


def starting_noise(
    conditioning: Conditioning,
    horizon: int,
    action_dim: int,
    noise: torch.Tensor | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """(B, horizon, action_dim) standard-normal start of sampling: ``noise`` checked, or drawn from ``generator``."""
    tokens = conditioning.tokens
    shape = (tokens.shape[0], horizon, action_dim)
    if noise is None:
        return torch.randn(shape, generator=generator, device=tokens.device, dtype=tokens.dtype)
    if tuple(noise.shape) != shape:
        raise ContractError(
            f"noise must have shape {shape} (B from the tokens, horizon, action_dim), got {tuple(noise.shape)}"
        )
    return noise
