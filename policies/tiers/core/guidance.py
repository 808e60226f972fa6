"""Guidance: differentiable rewards on candidate action trajectories, for inference-time steering.

The low tier's samplers accept a list of :class:`Guidance` terms. At each denoising step a sampler
forms its estimate of the clean action trajectory (un-normalised, in the embodiment's action space),
asks :func:`guidance_gradient` for the gradient of the weighted total reward with respect to it, and
moves the sample up that gradient (VLS-style steering, path tracking, inpainting of committed actions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from tiers.core.errors import ContractError
from tiers.core.observation import Observation

# (B, Ta, A) actions in the embodiment's action space, the current observation (or None) -> (B,) reward
RewardFunction = Callable[[torch.Tensor, Observation | None], torch.Tensor]


@dataclass(frozen=True)
class Guidance:
    """One weighted reward term. Higher reward is better; the reward must be differentiable in the actions.

    Attributes:
        name: short label for logs, e.g. "reach:handle" or "inpaint".
        reward: RewardFunction, (B, Ta, A) -> (B,).
        weight: multiplier of this term's gradient (units of the reward are the term's own).
    """

    name: str
    reward: RewardFunction
    weight: float = 1.0

    def __call__(self, actions: torch.Tensor, observation: Observation | None = None) -> torch.Tensor:
        """Weighted reward, (B,)."""
        value = self.reward(actions, observation)
        if value.shape != actions.shape[:1]:
            raise ContractError(
                f"guidance {self.name!r} returned shape {tuple(value.shape)}, expected ({actions.shape[0]},)"
            )
        return self.weight * value


def guidance_gradient(
    terms: Sequence[Guidance], actions: torch.Tensor, observation: Observation | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Total weighted reward and its gradient with respect to the actions.

    Args:
        terms: guidance terms; an empty sequence gives zero reward and zero gradient.
        actions: (B, Ta, A) candidate trajectories; not modified, and not required to track gradients.
        observation: passed to each reward function.

    Returns:
        reward: (B,) detached sum of weighted rewards.
        gradient: (B, Ta, A) d reward / d actions, zero where no term depends on the actions.

    Raises:
        ContractError: a term returned a wrong shape, or a non-finite reward or gradient.
    """
    if actions.ndim != 3:
        raise ContractError(f"guidance expects (B, Ta, A) actions, got shape {tuple(actions.shape)}")
    if not terms:
        return actions.new_zeros(actions.shape[0]), torch.zeros_like(actions)
    with torch.enable_grad():
        leaf = actions.detach().requires_grad_(True)
        total = torch.stack([term(leaf, observation) for term in terms]).sum(dim=0)
        (gradient,) = torch.autograd.grad(total.sum(), leaf, allow_unused=True)
    if gradient is None:
        gradient = torch.zeros_like(actions)
    if not (torch.isfinite(total).all() and torch.isfinite(gradient).all()):
        names = [term.name for term in terms]
        raise ContractError(f"guidance terms {names} produced a non-finite reward or gradient")
    return total.detach(), gradient
