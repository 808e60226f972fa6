"""Samplers of the EDM (variance-exploding, σ-parametrised) probability-flow ODE / SDE, as BESO uses them.

A sampler walks a decreasing noise schedule σ_0 = σ_max > … > σ_{n-1} = σ_min > σ_n = 0 with one denoiser
evaluation per level (n = ``steps``, 3 by default), starting from x = σ_max · noise::

    noise (B, Ta, A) ──× σ_0──> x ──D(x, σ_0)──> step ──D(x, σ_1)──> step … ──D(x, σ_{n-1})──> step ──> x at σ = 0

At each level the denoised estimate D (already classifier-free guided by the caller) gets the guidance
hook's weighted reward gradient added, scaled by Var(x0 | x) under a Gaussian prior of std σ_data (see
:func:`tiers.policies.low.generator.guidance_step_scale`), before the update uses it.

What comes from diffusers and what is written here, and why:

- Noise schedules (Karras ρ-schedule, exponential) and the Euler step: diffusers' ``EDMEulerScheduler``
  (its ``step`` takes our guided estimate through ``pred_original_sample``).
- DPM-Solver++(2M): diffusers' ``EDMDPMSolverMultistepScheduler`` (``solver_order=2``, midpoint, first order on
  the first and last steps as k-diffusion does). The scheduler only accepts the raw network output, which
  it turns into a denoised estimate itself; a one-method subclass hands it our (guided, CFG) estimate instead.
- DDIM: the same scheduler at ``solver_order=1`` — first-order DPM-Solver++ in data prediction *is* DDIM
  (Lu et al. 2022). In σ-space it coincides with the Euler step on the probability-flow ODE.
- Euler-ancestral: written here (k-diffusion's ``sample_euler_ancestral``); diffusers' only ancestral Euler
  lives on the discrete DDPM timestep grid of a β schedule, not on a continuous EDM σ schedule.

A diffusers scheduler costs ~0.1 ms of config machinery to build, as much as a few small network layers; the σ
grids and the schedulers are built once per (sampler, steps, schedule) and each call steps a shallow copy.

The fast path (``sample_edm``'s default for the deterministic samplers): on a robot's CPU a chunk's cost outside the
network is paid at every re-plan, and diffusers' step is ~15 ops on 0-dim tensors plus Python bookkeeping per
evaluation, ~0.35 ms at B = 1 on one thread, a tenth of a forward of the kitchen network. Every deterministic step
above is affine in (x, D, D_prev) with coefficients that depend on the σ grid alone, so :func:`edm_step_coefficients`
derives them once per (sampler, steps, schedule) from the diffusers scheduler's own grid, and a step is one
``torch.lerp`` (two for DPM-Solver++(2M)'s second-order steps). Measured (``tiers bench lowlevel``, kitchen preset,
one thread): ``beso.sampler_ratio.1`` 1.05–1.10 → 0.95–1.00. diffusers stays the reference: ``reference=True``
steps its scheduler, and a test holds the two to 1e-5 for every sampler, schedule and step count the fast path
takes.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any, Literal, cast, get_args

import torch
from diffusers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler

from tiers.policies.low.generator import GuidanceHook, guidance_step_scale

EdmSamplerName = Literal["ddim", "euler", "euler_ancestral", "dpmpp_2m"]
EDM_SAMPLERS: tuple[str, ...] = get_args(EdmSamplerName)
SigmaScheduleName = Literal["karras", "exponential"]
SIGMA_SCHEDULES: tuple[str, ...] = get_args(SigmaScheduleName)

# (x (B, Ta, A) noisy chunk, σ its noise std) -> (B, Ta, A) denoised estimate D(x; σ). σ is one float for the
# whole batch: the samplers step every sample along the same grid, so a denoiser can compute its scalings in
# Python instead of as a dozen tensor ops per evaluation
Denoiser = Callable[[torch.Tensor, float], torch.Tensor]


class _DenoisedInputDPMSolver(EDMDPMSolverMultistepScheduler):
    """DPM-Solver++ fed the denoised estimate directly (``model_output`` is D, not the raw network output)."""

    def convert_model_output(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        # The generator already applied EDM's output preconditioning, CFG and guidance to get D.
        return model_output


def sigma_schedule(
    steps: int, *, schedule: SigmaScheduleName, sigma_min: float, sigma_max: float, rho: float = 7.0
) -> list[float]:
    """The ``steps + 1`` noise levels a sampler visits: σ_max, …, σ_min, 0 (diffusers' EDM schedules).

    Args:
        steps: denoiser evaluations, >= 1.
        schedule: "karras" (σ^(1/ρ) linear in the step) or "exponential" (log σ linear in the step).
        sigma_min, sigma_max: the last and first nonzero levels (units of the normalised actions).
        rho: Karras' ρ; ignored by "exponential".
    """
    return list(_sigma_levels(steps, schedule, sigma_min, sigma_max, rho))


@functools.lru_cache(maxsize=64)
def _sigma_levels(
    steps: int, schedule: SigmaScheduleName, sigma_min: float, sigma_max: float, rho: float
) -> tuple[float, ...]:
    scheduler = _edm_euler(schedule, sigma_min, sigma_max, rho)
    scheduler.set_timesteps(steps)
    return tuple(scheduler.sigmas.tolist())


def _edm_euler(schedule: SigmaScheduleName, sigma_min: float, sigma_max: float, rho: float) -> Any:
    # Any: diffusers' config decorator hides the scheduler's attributes from type checkers.
    scheduler: Any = EDMEulerScheduler
    return scheduler(
        sigma_min=sigma_min, sigma_max=sigma_max, sigma_schedule=schedule, rho=rho, final_sigmas_type="zero"
    )


@functools.lru_cache(maxsize=64)
def _prepared_scheduler(
    sampler: EdmSamplerName,
    steps: int,
    schedule: SigmaScheduleName,
    sigma_min: float,
    sigma_max: float,
    sigma_data: float,
    rho: float,
) -> Any:
    """The diffusers scheduler of ``sampler`` with its ``steps``-level grid set, built once per schedule.

    Never stepped itself: :func:`_fresh_scheduler` hands every sampling call a copy. Its σ grid lives on the
    CPU whatever the sample's device (diffusers keeps it there; a step multiplies by 0-dim tensors of it).
    """
    scheduler: Any
    if sampler == "euler":
        scheduler = _edm_euler(schedule, sigma_min, sigma_max, rho)
        # We precondition inside the denoiser; tell the scheduler not to warn that scale_model_input was skipped.
        scheduler.is_scale_input_called = True
    else:
        scheduler = cast(Any, _DenoisedInputDPMSolver)(
            sigma_min=sigma_min,
            sigma_max=sigma_max,
            sigma_data=sigma_data,
            sigma_schedule=schedule,
            rho=rho,
            solver_order=1 if sampler == "ddim" else 2,
            algorithm_type="dpmsolver++",
            final_sigmas_type="zero",
        )
    scheduler.set_timesteps(steps)
    return scheduler


def _fresh_scheduler(prepared: Any) -> Any:
    """A copy of a prepared scheduler with per-call state of its own, at step 0 (as ``set_timesteps`` left it).

    The σ grid and timesteps are shared (steps only read them); the step counter and DPM-Solver's history of
    denoised estimates (a list it updates in place) belong to the copy, so calls do not see each other's state.
    """
    scheduler = copy.copy(prepared)
    if hasattr(prepared, "model_outputs"):
        scheduler.model_outputs = list(prepared.model_outputs)
    # Index the schedule by position, not by looking timesteps up (a data-dependent nonzero()).
    scheduler.set_begin_index(0)
    return scheduler


def sample_edm(
    denoiser: Denoiser,
    noise: torch.Tensor,
    *,
    sampler: EdmSamplerName,
    steps: int,
    schedule: SigmaScheduleName,
    sigma_min: float,
    sigma_max: float,
    sigma_data: float,
    rho: float = 7.0,
    guidance: GuidanceHook | None = None,
    generator: torch.Generator | None = None,
    eta: float = 1.0,
    reference: bool = False,
) -> torch.Tensor:
    """Integrate from σ_max to 0 with ``steps`` denoiser evaluations.

    Args:
        denoiser: D(x (B, Ta, A), σ float) -> (B, Ta, A), classifier-free guidance already folded in.
        noise: (B, Ta, A) standard-normal starting noise (scaled by σ_max here).
        sampler: "ddim", "euler", "euler_ancestral" or "dpmpp_2m".
        steps: denoiser evaluations, >= 1.
        schedule, sigma_min, sigma_max, rho: the noise schedule, see :func:`sigma_schedule`.
        sigma_data: std of the normalised actions (sets the guidance step scale).
        guidance: called with (D (B, Ta, A), step index); returns the weighted reward gradient w.r.t. D.
        generator: random source of Euler-ancestral's fresh noise.
        eta: Euler-ancestral's share of fresh noise (1: the ancestral step; 0: plain Euler).
        reference: step the deterministic samplers with diffusers' schedulers instead of the precomputed
            coefficients of :func:`edm_step_coefficients` (the same samples within float32 rounding).

    Returns:
        (B, Ta, A) samples at σ = 0.
    """
    if sampler not in EDM_SAMPLERS:
        raise ValueError(f"sampler must be one of {EDM_SAMPLERS}, got {sampler!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    levels = sigma_schedule(steps, schedule=schedule, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)

    def guided_denoiser(x: torch.Tensor, index: int) -> torch.Tensor:
        denoised = denoiser(x, levels[index])
        if guidance is not None:
            scale = guidance_step_scale(1.0, levels[index], sigma_data)
            denoised = denoised + scale * guidance(denoised, index)
        return denoised

    x = noise * levels[0]
    if sampler == "euler_ancestral":
        return _euler_ancestral(guided_denoiser, x, levels, eta=eta, generator=generator)
    if not reference:
        previous: torch.Tensor | None = None
        for index, (weight, extrapolation) in enumerate(
            edm_step_coefficients(sampler, steps, schedule, sigma_min, sigma_max, sigma_data, rho)
        ):
            denoised = guided_denoiser(x, index)
            target = denoised if previous is None or extrapolation == 0.0 else denoised.lerp(previous, -extrapolation)
            x = x.lerp(target, weight)
            previous = denoised
        return x
    scheduler = _fresh_scheduler(_prepared_scheduler(sampler, steps, schedule, sigma_min, sigma_max, sigma_data, rho))
    for index in range(steps):
        denoised = guided_denoiser(x, index)
        timestep = scheduler.timesteps[index]
        if sampler == "euler":
            x = scheduler.step(denoised, timestep, x, pred_original_sample=denoised, return_dict=False)[0]
        else:
            x = scheduler.step(denoised, timestep, x, return_dict=False)[0]
    return x


@functools.lru_cache(maxsize=64)
def edm_step_coefficients(
    sampler: EdmSamplerName,
    steps: int,
    schedule: SigmaScheduleName,
    sigma_min: float,
    sigma_max: float,
    sigma_data: float,
    rho: float = 7.0,
) -> tuple[tuple[float, float], ...]:
    """Per step i, (w_i, k_i): diffusers' deterministic step is ``x ← lerp(x, lerp(D_i, D_{i-1}, -k_i), w_i)``.

    Every step goes from σ_s to σ_t (the diffusers scheduler's grid, its last level 0); r = σ_t / σ_s:

    - Euler on the probability-flow ODE, dx/dσ = (x − D) / σ: x + (σ_t − σ_s)(x − D) / σ_s = lerp(x, D, 1 − r).
    - DPM-Solver++ first order (DDIM), with λ = −ln σ and h = λ_t − λ_s: r x − (e^{−h} − 1) D = lerp(x, D, 1 − r),
      since e^{−h} = r. So w = 1 − r and k = 0 for both.
    - DPM-Solver++(2M), midpoint, on its second-order steps (not the first, nor the last: diffusers' order
      schedule with ``final_sigmas_type="zero"``): D is replaced by D + (D − D_{i−1}) / (2 r0), with
      r0 = h_{i−1} / h_i = ln(σ_{i−1} / σ_s) / ln(σ_s / σ_t), so k = 1 / (2 r0).

    Computed in float64 once per (sampler, steps, schedule); ``euler_ancestral`` has no such form (fresh noise).
    """
    if sampler == "euler_ancestral":
        raise ValueError("euler_ancestral draws fresh noise per step; it has no fixed step coefficients")
    levels = _prepared_scheduler(sampler, steps, schedule, sigma_min, sigma_max, sigma_data, rho).sigmas.tolist()
    coefficients = []
    for index in range(steps):
        sigma_prev, sigma, sigma_next = levels[index - 1] if index else 0.0, levels[index], levels[index + 1]
        extrapolation = 0.0
        if sampler == "dpmpp_2m" and 0 < index < steps - 1:
            extrapolation = 0.5 * math.log(sigma / sigma_next) / math.log(sigma_prev / sigma)
        coefficients.append((1.0 - sigma_next / sigma, extrapolation))
    return tuple(coefficients)


def _euler_ancestral(
    guided_denoiser: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    levels: list[float],
    *,
    eta: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """k-diffusion's ancestral Euler over the noise ``levels`` (see :func:`euler_ancestral_step`)."""
    for index in range(len(levels) - 1):
        denoised = guided_denoiser(x, index)
        x = euler_ancestral_step(x, denoised, levels[index], levels[index + 1], eta=eta, generator=generator)
    return x


def euler_ancestral_step(
    x: torch.Tensor,
    denoised: torch.Tensor,
    sigma: float,
    sigma_next: float,
    *,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One ancestral Euler step from noise level ``sigma`` to ``sigma_next``: an Euler step of the
    probability-flow ODE down to σ_down, then fresh noise back up to σ_next (σ_next² = σ_down² + σ_up²).

    Args:
        x: (B, Ta, A) state at ``sigma``; denoised: (B, Ta, A) D(x; σ), guidance already applied.
        eta: share of fresh noise (1: the ancestral step; 0: plain Euler).
        generator: random source of the fresh noise.
    """
    sigma_up = min(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    derivative = (x - denoised) / sigma  # dx/dσ of the probability-flow ODE
    x = x + derivative * (sigma_down - sigma)
    if sigma_next > 0.0:
        fresh = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + fresh * sigma_up
    return x
