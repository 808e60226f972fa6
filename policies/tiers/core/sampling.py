"""The step-wise sampler contract: how the mid tier steers a low-tier sampler without knowing its internals.

A generative low-tier policy samples an action chunk by a few denoising steps in its *normalised* action
space. Steering it (Feynman–Kac resampling over particles, reward-gradient guidance inside each step:
:mod:`tiers.policies.mid.steering`) needs that loop one step at a time, over P particles that share one
observation. A :class:`SteerablePolicy` hands it out as a :class:`StepwiseSampler`::

    sampler = policy.stepwise_sampler(batch)     batch: one observation step, B = 1 (encoded once, here)
    x = sampler.noise(P)                         (P, Ta, A) standard-normal start
    step = sampler.make_step(n)                  the integrator over n denoising steps
    for i in 0 .. n-1:
        x, x0 = step(x, i, hook)                 x: the state after step i; x0: its clean estimate
    actions = policy.to_actions(x0)              (P, Ta, A) raw actions (after the last step x0 is the sample)

Every tensor a step takes or returns is in the sampler's *state units*, the policy's normalised action space.
``hook`` (None, or ``hook(x0) -> gradient``, (P, Ta, A) -> (P, Ta, A), already weighted, in state units) is how
reward-gradient guidance enters a step: the step moves its clean estimate up the gradient, scaled by the
posterior variance of the clean chunk (as the policy's own guided sampler does). Rewards act on raw actions:
:meth:`SteerablePolicy.to_actions` un-normalises an estimate, :meth:`SteerablePolicy.to_normalized_gradient`
maps ∂r/∂a back to ∂r/∂x0 by the chain rule.

Shapes: P particles, Ta action steps (the chunk's horizon), A action dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch

# clean estimate x0 (P, Ta, A) -> (P, Ta, A) weighted reward gradient, both in the sampler's state units
StateHook = Callable[[torch.Tensor], torch.Tensor]
# (x_i (P, Ta, A) state before step i, i, hook or None) -> (x_{i+1} (P, Ta, A), x0_i (P, Ta, A) clean estimate);
# after the last step the clean estimate is the sample itself
SamplerStep = Callable[[torch.Tensor, int, StateHook | None], tuple[torch.Tensor, torch.Tensor]]
# number of denoising steps -> the step function of that schedule
StepFactory = Callable[[int], SamplerStep]


@runtime_checkable
class StepwiseSampler(Protocol):
    """A low-tier sampler over one encoded observation, one denoising step at a time (module docstring)."""

    @property
    def kind(self) -> str:
        """The integrator: ``"flow"`` (Euler on the flow-matching ODE) or ``"beso"`` (ancestral Euler, EDM σ)."""
        ...

    @property
    def steps(self) -> int:
        """The number of denoising steps the policy samples with by default."""
        ...

    def noise(self, count: int) -> torch.Tensor:
        """(count, Ta, A) standard-normal starting state of ``count`` particles (the first step scales it)."""
        ...

    def make_step(self, steps: int) -> SamplerStep:
        """The step function of a ``steps``-step schedule (the schedule restarts with every call)."""
        ...


@runtime_checkable
class SteerablePolicy(Protocol):
    """A low-tier policy whose sampler can be run step by step from outside (the mid tier's steering)."""

    def stepwise_sampler(self, batch: Mapping[str, Any]) -> StepwiseSampler:
        """The sampler of one observation step (B = 1, as ``select_action`` takes it), conditional model alone.

        Raises:
            TypeError: the policy's generative core has no step-wise sampler.
            ValueError: the policy samples with classifier-free guidance (not stepped here).
        """
        ...

    def to_actions(self, normalized: torch.Tensor) -> torch.Tensor:
        """(..., Ta, A) chunks in state units -> raw actions (the embodiment's action space)."""
        ...

    def to_normalized_gradient(self, gradient: torch.Tensor) -> torch.Tensor:
        """(..., Ta, A) ∂r/∂a of a reward on raw actions -> ∂r/∂x0 in state units (the chain rule)."""
        ...
