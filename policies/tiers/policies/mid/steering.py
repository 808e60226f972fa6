"""VLS-style inference-time steering of a frozen diffusion/flow policy: gradient guidance, Feynman–Kac
resampling over particles, staged rewards with hysteresis, and a per-call latency budget.

The engine works with any sampler through one callable, a single denoising step over a batch of particles::

    step(x_i (P, Ta, A) sampler state, i, hook) -> (x_{i+1}, a0_i (P, Ta, A) clean estimate in RAW action space)

``hook`` (None, or ``hook(estimate) -> gradient`` in the sampler's state units) is how reward-gradient
guidance enters the step: the sampler moves its clean estimate up the gradient (as the low tier's
``GuidanceHook`` does). A low-tier policy is reached only through the step-wise sampler contract of
:mod:`tiers.core.sampling` (:class:`~tiers.core.sampling.SteerablePolicy`): :func:`policy_steps` turns its
normalised steps into this raw-action step, :func:`flow_policy_steps` and :func:`beso_policy_steps` check the
integrator, and :func:`policy_to_state` is the chain rule back to its state units. :class:`FeynmanKacLowPolicy`
samples every chunk of such a policy this way inside a hierarchy (``low.settings.steering`` of a hierarchy YAML).

Feynman–Kac steering (Singhal et al., 2025) with the "difference" potential::

    step i:   x_{i+1}, a0_i = step(x_i, i, hook)
              r_i = R(a0_i)                            (P,) total weighted reward of the clean estimates
              log w += λ (r_i − r_{i−1})               potential G_i = exp(λ Δr)
              ESS = (Σw)² / Σw²;  if ESS < ρ·P: systematic resampling of x_{i+1} by w, then w = 1
    end:      the particle with the highest final reward

Latency budget: the first step is timed; if the projected total exceeds the budget the particle count is cut
(down to ``min_particles``), then the step count (down to ``min_steps``, the schedule restarts), and a run that
still overruns stops resampling and guidance and finishes plain. :class:`SteeringReport` says what was cut.
The budget is opt-in (``latency_budget`` 0, the default, is unlimited): with one, what is cut depends on the
machine's speed and load, so a steered sample no longer follows from its seeds (``generator`` and the
sampler's noise) alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from tiers.core.config import Config
from tiers.core.guidance import Guidance, guidance_gradient
from tiers.core.observation import Observation
from tiers.core.sampling import SamplerStep, StateHook, SteerablePolicy, StepFactory, StepwiseSampler


@dataclass
class SteeringConfig(Config):
    """Feynman–Kac steering and its latency budget."""

    particles: int = 8  # P, particles sampled in parallel
    min_particles: int = 2  # fewest particles the budget may cut to
    min_steps: int = 2  # fewest denoising steps the budget may cut to
    temperature: float = 10.0  # λ of the potential exp(λ Δr), per unit of reward
    ess_fraction: float = 0.5  # resample when the effective sample size drops below this fraction of P
    guidance: bool = True  # also move each particle up the reward gradient inside the step
    # with guidance: the terms whose gradient moves the particles, by name prefix (e.g. ["track"]: path tracking
    # only); the other terms only weigh the particles. Empty: every term does both
    gradient_terms: tuple[str, ...] = ()
    latency_budget: float = 0.0  # s per call, 0: unlimited

    def __post_init__(self) -> None:
        if not 1 <= self.min_particles <= self.particles:
            raise ValueError(f"need 1 <= min_particles <= particles, got {self.min_particles}, {self.particles}")
        if self.min_steps < 1:
            raise ValueError(f"min_steps must be >= 1, got {self.min_steps}")
        if not 0.0 <= self.ess_fraction <= 1.0:
            raise ValueError(f"ess_fraction must be in [0, 1], got {self.ess_fraction}")
        if self.latency_budget < 0:
            raise ValueError(f"latency_budget must be >= 0, got {self.latency_budget}")


@dataclass(frozen=True)
class SteeringReport:
    """What one steered sampling call did.

    Attributes:
        particles_requested, particles_used: P asked for and P run.
        steps_requested, steps_used: denoising steps asked for and run.
        resamples: how many times the particles were resampled.
        elapsed: s for the whole call.
        degraded: "" when the budget was kept at full quality, else what was cut and why.
    """

    particles_requested: int
    particles_used: int
    steps_requested: int
    steps_used: int
    resamples: int
    elapsed: float
    degraded: str = ""


@dataclass(frozen=True)
class SteeringResult:
    """Steered samples.

    Attributes:
        actions: (1, Ta, A) raw actions of the best particle.
        particles: (P, Ta, A) raw clean estimates of every particle at the last step.
        rewards: (P,) their total weighted rewards.
        report: the budget's account.
    """

    actions: torch.Tensor
    particles: torch.Tensor
    rewards: torch.Tensor
    report: SteeringReport


class FeynmanKacSteering:
    """Reward-gradient guidance + Feynman–Kac resampling around any step-wise sampler (module docstring)."""

    def __init__(
        self,
        terms: Sequence[Guidance],
        config: SteeringConfig | None = None,
        *,
        to_state: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        """
        Args:
            terms: reward terms on raw (P, Ta, A) actions.
            config: particles, temperature, budget.
            to_state: maps a gradient with respect to raw actions to the sampler's state units (the chain rule
                through normalisation, e.g. ``g * scale``); None: identity.
        """
        self.terms = tuple(terms)
        self.config = config or SteeringConfig()
        self._to_state = to_state or (lambda gradient: gradient)

    def reward(self, actions: torch.Tensor, observation: Observation | None = None) -> torch.Tensor:
        """(P,) total weighted reward of raw actions (no gradient)."""
        if not self.terms:
            return actions.new_zeros(actions.shape[0])
        with torch.no_grad():
            return torch.stack([term(actions, observation) for term in self.terms]).sum(dim=0)

    def run(
        self,
        *,
        noise: Callable[[int], torch.Tensor],
        make_step: StepFactory,
        steps: int,
        observation: Observation | None = None,
        generator: torch.Generator | None = None,
    ) -> SteeringResult:
        """Sample with steering.

        Args:
            noise: P -> (P, Ta, A) starting state of P particles.
            make_step: the sampler's step function for a given number of steps.
            steps: denoising steps asked for.
            observation: passed to the reward terms.
            generator: random source of the resampling.
        """
        config = self.config
        started = time.perf_counter()
        particles, n_steps = config.particles, steps
        hook = self._hook(observation) if config.guidance and self.terms else None
        x = noise(particles)
        step = make_step(n_steps)
        x, estimate = step(x, 0, hook)
        first = time.perf_counter() - started
        reasons = []
        budget = config.latency_budget
        if budget > 0 and first * n_steps > budget:
            projected = first * n_steps
            # the step cost is about linear in P: cut particles first, then steps
            particles = max(config.min_particles, min(particles, int(particles * budget / projected)))
            per_step = first * particles / config.particles
            if per_step * n_steps > budget and n_steps > config.min_steps:
                n_steps = max(config.min_steps, int(budget / max(per_step, 1e-9)))
                reasons.append(f"steps {steps}->{n_steps}")
                x = noise(particles)
                step = make_step(n_steps)
                x, estimate = step(x, 0, hook)
            else:
                keep = torch.argsort(self.reward(estimate, observation), descending=True)[:particles]
                x, estimate = x[keep], estimate[keep]
            if particles < config.particles:
                reasons.insert(0, f"particles {config.particles}->{particles}")
            reasons[0] = f"projected {projected * 1000:.0f} ms > budget {budget * 1000:.0f} ms: " + reasons[0]
        previous = self.reward(estimate, observation)
        log_weights = config.temperature * previous
        resamples = 0
        steering = True
        for index in range(1, n_steps):
            if steering and budget > 0 and time.perf_counter() - started > budget:
                steering, hook = False, None
                reasons.append(f"budget spent at step {index}/{n_steps}: finished without guidance or resampling")
            if steering and _ess(log_weights) < config.ess_fraction * len(x):
                chosen = _systematic(log_weights, generator)
                x, previous = x[chosen], previous[chosen]
                log_weights = torch.zeros_like(log_weights)
                resamples += 1
            x, estimate = step(x, index, hook)
            current = self.reward(estimate, observation)
            if steering:
                log_weights = log_weights + config.temperature * (current - previous)
            previous = current
        best = int(torch.argmax(previous))
        report = SteeringReport(
            config.particles, len(x), steps, n_steps, resamples, time.perf_counter() - started, "; ".join(reasons)
        )
        return SteeringResult(estimate[best : best + 1].detach(), estimate.detach(), previous, report)

    def _hook(self, observation: Observation | None) -> StateHook | None:
        """The gradient hook of the terms ``gradient_terms`` selects; None when it selects none."""
        prefixes, to_state = self.config.gradient_terms, self._to_state
        terms = [term for term in self.terms if not prefixes or term.name.startswith(tuple(prefixes))]
        if not terms:
            return None

        def hook(estimate: torch.Tensor) -> torch.Tensor:
            _, gradient = guidance_gradient(terms, estimate, observation)
            return to_state(gradient)

        return hook


def _ess(log_weights: torch.Tensor) -> float:
    """Effective sample size (Σw)² / Σw² of unnormalised log weights."""
    return float(torch.exp(2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0)))


def _systematic(log_weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(P,) ancestor indices by systematic resampling (lower variance than multinomial)."""
    count = len(log_weights)
    weights = torch.softmax(log_weights.double(), 0).cpu()
    offset = torch.rand((), generator=generator, dtype=torch.float64)
    positions = (offset + torch.arange(count, dtype=torch.float64)) / count
    cumulative = torch.cumsum(weights, 0)
    cumulative[-1] = 1.0
    return torch.searchsorted(cumulative, positions).clamp(max=count - 1).to(log_weights.device)


# -- a low-tier policy as a step-wise sampler (tiers.core.sampling) ----------------------------------------------


def policy_steps(policy: SteerablePolicy, sampler: StepwiseSampler) -> StepFactory:
    """The engine's step factory over a low-tier policy's :class:`~tiers.core.sampling.StepwiseSampler`.

    The policy's steps work in its normalised action space; the engine's rewards act on raw actions. Each step
    hands the hook the un-normalised clean estimate (the hook maps the gradient back with :func:`policy_to_state`)
    and returns its clean estimate un-normalised.
    """
    to_actions = policy.to_actions

    def make_step(steps: int) -> SamplerStep:
        normalized_step = sampler.make_step(steps)

        def step(x: torch.Tensor, index: int, hook: StateHook | None) -> tuple[torch.Tensor, torch.Tensor]:
            state_hook = None if hook is None else lambda estimate: hook(to_actions(estimate))
            x, clean = normalized_step(x, index, state_hook)
            return x, to_actions(clean)

        return step

    return make_step


def _stepwise(
    policy: SteerablePolicy, batch: Mapping[str, Any], kind: str, name: str, caller: str
) -> tuple[StepFactory, Callable[[int], torch.Tensor]]:
    """(make_step, noise) of ``policy``'s step-wise sampler after checking it is of ``kind``."""
    sampler = policy.stepwise_sampler(batch)
    if sampler.kind != kind:
        raise TypeError(f"{caller} needs a {name} policy, got a {sampler.kind!r} one")
    return policy_steps(policy, sampler), sampler.noise


def flow_policy_steps(
    policy: SteerablePolicy, batch: Mapping[str, Any]
) -> tuple[StepFactory, Callable[[int], torch.Tensor]]:
    """Step-wise sampler over a flow-matching low-tier policy (``batch``: one observation, B = 1).

    Euler from t = 0 to 1, guidance moving the implied clean estimate, one step at a time over P particles
    sharing the observation (the policy's own sampler, stepped).

    Returns:
        (make_step, noise): the step factory and P -> (P, Ta, A) standard-normal starting noise.

    Raises:
        TypeError: the policy is not a flow-matching one.
    """
    return _stepwise(policy, batch, "flow", "flow-matching", "flow_policy_steps")


def beso_policy_steps(
    policy: SteerablePolicy, batch: Mapping[str, Any]
) -> tuple[StepFactory, Callable[[int], torch.Tensor]]:
    """Step-wise sampler over a BESO (score-based diffusion, EDM) low-tier policy (``batch``: B = 1).

    The policy's ancestral Euler on its σ schedule, one denoiser evaluation per step; guidance moves the
    denoised estimate D(x; σ) up the reward gradient before the step. The fresh noise each step adds differs
    between particles, which gives Feynman–Kac resampling distinct descendants to choose from.

    Returns:
        (make_step, noise): the step factory and P -> (P, Ta, A) standard-normal starting noise (scaled by
        σ_max in the first step).

    Raises:
        TypeError: the policy is not a BESO one.
    """
    return _stepwise(policy, batch, "beso", "BESO", "beso_policy_steps")


def policy_to_state(policy: SteerablePolicy) -> Callable[[torch.Tensor], torch.Tensor]:
    """Chain rule through the policy's action normalisation: ∂r/∂x̂0 = ∂r/∂a · scale."""
    return policy.to_normalized_gradient


# -- a low-tier policy whose chunks are Feynman–Kac steered (the hierarchy's ``low.settings.steering``) ----------


class FeynmanKacLowPolicy:
    """A steerable low-tier policy whose action chunks are sampled by :class:`FeynmanKacSteering`.

    The hierarchy's low tier (``low: {kind: policy, settings: {steering: {...}}}``, fields of
    :class:`SteeringConfig`) wraps the loaded policy in this: the guidance terms the mid tier hands over with
    :meth:`set_guidance` (path tracking, VLS) become the particles' rewards, and with ``guidance: true`` also
    move each particle up their gradient inside the step, as the policy's own guidance hook does
    (``gradient_terms`` narrows the gradient to some terms; the rest then only weigh the particles). Without terms
    (``tracking_weight: 0``) a chunk is one plain particle: there is nothing to weigh particles by.

    The chunk is sampled by the policy's step-wise sampler (:meth:`~tiers.core.sampling.SteerablePolicy.
    stepwise_sampler`; for BESO ancestral Euler on the policy's σ schedule and ``sampler_steps``, not the
    configured sampler, e.g. DDIM). Everything else (observation history, the action queue, temporal
    ensembling, batches from observations, degradation of ``config.sampler_steps``) stays the policy's own:
    attributes this class does not define are the policy's, and the policy's ``predict_action_chunk`` is
    shadowed on the instance, so its ``select_action`` predicts through :meth:`predict_action_chunk` here.

    Reproducibility: :meth:`seed` seeds a generator from which every chunk draws one seed for its particles'
    noise (run under :func:`torch.random.fork_rng`, so torch's global generator is left as it was) and for the
    resampling; with a ``latency_budget`` what is cut depends on the machine's speed (see the module docstring).

    Attributes:
        policy: the wrapped policy (a :class:`~tiers.core.sampling.SteerablePolicy`).
        steering: the steering configuration.
        chunks: chunks sampled since construction (all episodes).
        resamples: Feynman–Kac resampling events over those chunks.
        degraded: chunks whose latency budget cut particles, steps or steering.
        last_report: the last chunk's :class:`SteeringReport` (None before the first).
    """

    def __init__(self, policy: Any, config: SteeringConfig) -> None:
        """
        Args:
            policy: a low-tier policy with a step-wise sampler (flow or BESO core) and tiers' helpers
                (``select_action``, ``batch_from_observation``, ``set_guidance``, ``seed``).
            config: particles, temperature, gradient guidance on or off, latency budget.

        Raises:
            TypeError: the policy cannot be stepped from outside.
        """
        self.policy: Any = policy  # a GenerativeLowPolicy (or alike): more than the SteerablePolicy protocol
        if not isinstance(policy, SteerablePolicy):
            raise TypeError(f"Feynman-Kac steering needs a step-wise sampler; {type(policy).__name__} has none")
        self.steering = config
        self.chunks = 0
        self.resamples = 0
        self.degraded = 0
        self.last_report: SteeringReport | None = None
        self._engine = FeynmanKacSteering((), _one_particle(config), to_state=policy_to_state(self.policy))
        self._observation: Observation | None = None
        self._seeds: torch.Generator | None = None
        # the policy's select_action calls self.predict_action_chunk: an instance attribute takes precedence
        # over the class's method, so the queue and history logic is reused rather than copied
        self.policy.predict_action_chunk = self.predict_action_chunk

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes not found on this object: the policy's (config, features, select_action, ...)
        if name == "policy":  # not set yet (during unpickling, say): no recursion through self.policy
            raise AttributeError(name)
        return getattr(self.policy, name)

    def seed(self, seed: int) -> None:
        """Seed the policy's own sampler and this class's chunk seeds for the coming episode."""
        self.policy.seed(seed)
        self._seeds = torch.Generator().manual_seed(int(seed))

    def set_guidance(self, terms: Sequence[Guidance], observation: Observation | None = None) -> None:
        """Use ``terms`` (on raw (1, Ta, A) actions) as the particles' rewards from the next chunk on.

        Terms of weight 0 are dropped; the policy's own guidance is turned off, the steering applies it.
        """
        kept = tuple(term for term in terms if term.weight != 0)
        config = self.steering if kept else _one_particle(self.steering)
        self._engine = FeynmanKacSteering(kept, config, to_state=policy_to_state(self.policy))
        self.policy.set_guidance(())
        if observation is not None:
            self._observation = observation

    def batch_from_observation(self, observation: Observation, **conditions: Any) -> dict[str, Any]:
        """The policy's one-step batch; ``observation`` is also what the rewards see (timestamp, pose)."""
        self._observation = observation
        batch: dict[str, Any] = self.policy.batch_from_observation(observation, **conditions)
        return batch

    def predict_action_chunk(
        self, batch: Mapping[str, Any], *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A fresh steered chunk, (1, Ta, A) raw actions (the best particle; see the class docstring).

        Args:
            batch: one observation (history) as the policy's ``predict_action_chunk`` takes it, B = 1.
            noise: must be None: the particles' starting noise is drawn here.
            generator: source of this chunk's seed (default: the one :meth:`seed` made, else torch's).

        Raises:
            ValueError: ``noise`` was given.
        """
        if noise is not None:
            raise ValueError("Feynman-Kac steering draws its particles' starting noise itself; pass no noise")
        source = generator if generator is not None else self._seeds
        seed = int(torch.randint(0, 2**62, (), generator=source))
        sampler = self.policy.stepwise_sampler(batch)
        device = self.policy.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # the particles' noise and the ancestral steps' fresh noise
            result = self._engine.run(
                noise=sampler.noise,
                make_step=policy_steps(self.policy, sampler),
                steps=sampler.steps,
                observation=self._observation,
                generator=torch.Generator().manual_seed(seed),  # the resampling's uniform offsets
            )
        report = result.report
        self.chunks += 1
        self.resamples += report.resamples
        self.degraded += bool(report.degraded)
        self.last_report = report
        return result.actions


def _one_particle(config: SteeringConfig) -> SteeringConfig:
    """``config`` with a single particle (no rewards to weigh particles by: more would change nothing)."""
    return replace(config, particles=1, min_particles=1)


# -- staged rewards --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One stage of a staged reward.

    Attributes:
        name: label for logs ("reach", "lower", ...).
        terms: the reward terms active during this stage.
        progress: observation -> distance to this stage's completion (>= 0; e.g. m from the tool to a keypoint).
        enter: the stage is complete (the next one starts) when ``progress`` drops below this.
        exit: from the next stage, fall back to this one when ``progress`` rises above this (> ``enter``: the
            gap is the hysteresis that stops chattering at the threshold); ``inf``: never fall back.
    """

    name: str
    terms: tuple[Guidance, ...]
    progress: Callable[[Observation], float]
    enter: float
    exit: float = math.inf

    def __post_init__(self) -> None:
        if not self.exit > self.enter:
            raise ValueError(f"stage {self.name!r}: exit ({self.exit}) must exceed enter ({self.enter})")


@dataclass
class StagedGuidance:
    """Staged rewards with a hysteresis switch: only the current stage's terms steer the sampler.

    Call :meth:`update` with every new observation (the guidance term does it itself when the observation's
    timestamp changes); :attr:`history` records (timestamp, stage name) at each switch.
    """

    stages: list[Stage]
    index: int = 0
    history: list[tuple[float, str]] = field(default_factory=list)
    _last_time: float | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("StagedGuidance needs at least one stage")

    @property
    def current(self) -> Stage:
        return self.stages[self.index]

    def update(self, observation: Observation) -> Stage:
        """Advance past completed stages, or fall back to one whose completion was lost; return the current."""
        self._last_time = observation.timestamp
        moved = False
        while self.index > 0 and self.stages[self.index - 1].progress(observation) > self.stages[self.index - 1].exit:
            self.index -= 1
            moved = True
        while self.index < len(self.stages) - 1 and self.current.progress(observation) < self.current.enter:
            self.index += 1
            moved = True
        if moved or not self.history:
            self.history.append((observation.timestamp, self.current.name))
        return self.current

    def guidance(self, weight: float = 1.0) -> Guidance:
        """One :class:`Guidance` term whose reward is the current stage's total reward."""

        def reward(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
            if observation is not None and observation.timestamp != self._last_time:
                self.update(observation)
            total = actions.new_zeros(actions.shape[0]) + 0.0 * actions.sum(dim=(1, 2))
            for term in self.current.terms:
                total = total + term(actions, observation)
            return total

        return Guidance(f"staged:{'/'.join(stage.name for stage in self.stages)}", reward, weight)


def distance_to(point: NDArray[np.float64] | Sequence[float]) -> Callable[[Observation], float]:
    """Progress function: m from the observed tool position to ``point`` (3,)."""
    target = np.asarray(point, dtype=np.float64)

    def progress(observation: Observation) -> float:
        return float(np.linalg.norm(observation.ee_pose[:3] - target))

    return progress
