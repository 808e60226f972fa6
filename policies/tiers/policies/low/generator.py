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

# (x0_hat (B, Ta, A) normalised denoised estimate at this step, step index) -> (B, Ta, A) gradient of the
# guidance reward with respect to x0_hat, already weighted (the sampler adds ``gradient * step_scale``).
GuidanceHook = Callable[[torch.Tensor, int], torch.Tensor]


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
