"""GenerativeLowPolicy: the low tier around a generative core (BESO, flow matching, DDPM/DDIM).

The policy owns what every core shares: observation encoders (:mod:`tiers.policies.low.conditioning`),
normalisation with the dataset statistics (saved with the weights), the observation history and the
action queue (receding horizon, optional temporal ensembling), and the translation of
:class:`~tiers.core.guidance.Guidance` terms, which reward raw actions, into the core's guidance hook on
normalised ones. It implements :class:`tiers.core.protocols.LowLevelPolicy`, lerobot's policy interface, and
(flow and BESO cores) :class:`tiers.core.sampling.SteerablePolicy`, the step-wise sampler the mid tier steers.

Shapes: B batch, To = ``n_obs_steps``, Ta = ``horizon``, S state size, A action size, H x W image size.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from tiers.core.config import Config
from tiers.core.ee_path import EEPath
from tiers.core.errors import ContractError
from tiers.core.features import FeatureKey
from tiers.core.guidance import Guidance, guidance_gradient
from tiers.core.observation import Observation
from tiers.core.sampling import SamplerStep, StepwiseSampler
from tiers.policies.low.checkpoint import PolicyFeatures, Stats, check_stats, save_checkpoint
from tiers.policies.low.conditioning import (
    EE_PATH_KEY,
    GOAL_STATE_KEY,
    ConditioningConfig,
    ObservationEncoder,
    condition_keys,
)
from tiers.policies.low.generator import ActionGenerator, GuidanceHook, StepwiseGenerator
from tiers.policies.low.observation_batch import observation_arrays
from tiers.policies.low.registry import make_generator

STATE, ACTION = FeatureKey.STATE.value, FeatureKey.ACTION.value
PAD_SUFFIX = "_is_pad"
NORMALIZATION_MODES = ("mean_std", "min_max", "identity")
GENERATORS = ("beso", "flow", "ddpm")
_EPS = 1e-6  # below this spread a feature component is treated as constant (scale 1, no division by ~0)


@dataclass
class GenerativeLowPolicyConfig(Config):
    """Everything that defines a :class:`GenerativeLowPolicy` apart from its data (saved in ``config.json``)."""

    generator: str = "beso"  # generative core: "beso" (EDM score model) | "flow" (rectified flow) | "ddpm"
    generator_options: dict[str, Any] = field(default_factory=dict)  # fields of that core's config (network, σ, …)
    n_obs_steps: int = 2  # To: observation steps the policy reads, the last one now
    horizon: int = 16  # Ta: action steps predicted per chunk, the first one now
    n_action_steps: int = 8  # actions executed from each chunk before the next is predicted (receding horizon)
    sampler_steps: int | None = None  # network evaluations per chunk at inference; None: the core's default
    cfg_scale: float = 1.0  # classifier-free guidance scale w at inference (1: conditional model only)
    temporal_ensemble_coeff: float | None = None  # ACT's temporal ensembling (predict every step); None: off
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    # per-feature normalisation: "mean_std" | "min_max" (to [-1, 1]) | "identity"; images by channel
    state_normalization: str = "mean_std"
    action_normalization: str = "min_max"  # diffusion cores expect targets in about [-1, 1]
    image_normalization: str = "mean_std"

    def __post_init__(self) -> None:
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {list(GENERATORS)}, got {self.generator!r}")
        if self.n_obs_steps < 1 or self.horizon < 1:
            raise ValueError(f"n_obs_steps and horizon must be >= 1, got {self.n_obs_steps}, {self.horizon}")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(f"n_action_steps must be in [1, horizon={self.horizon}], got {self.n_action_steps}")
        if self.sampler_steps is not None and self.sampler_steps < 1:
            raise ValueError(f"sampler_steps must be >= 1 or null, got {self.sampler_steps}")
        if self.cfg_scale != 1.0 and not self.conditioning.has_conditions:
            raise ValueError(f"cfg_scale={self.cfg_scale} needs a condition to drop (language, goal or path)")
        if self.temporal_ensemble_coeff is not None and self.n_action_steps != 1:
            raise ValueError(
                f"temporal ensembling predicts a chunk every step: n_action_steps must be 1, got {self.n_action_steps}"
            )
        for name in ("state_normalization", "action_normalization", "image_normalization"):
            if getattr(self, name) not in NORMALIZATION_MODES:
                raise ValueError(f"{name} must be one of {list(NORMALIZATION_MODES)}, got {getattr(self, name)!r}")


class Normalizer(nn.Module):
    """Per-feature affine normalisation from dataset statistics: ``normalised = (raw - offset) / scale``.

    mean_std: offset = mean, scale = std; min_max: offset = (max + min) / 2, scale = (max - min) / 2 (to
    [-1, 1]); identity: offset 0, scale 1. Components whose spread is below 1e-6 (a joint that never
    moved in the data) get scale 1, so they stay finite. The buffers are not part of the weights file:
    ``stats.json`` is their one source.
    """

    def __init__(self, stats: Stats, modes: Mapping[str, str]):
        super().__init__()
        self.keys = list(modes)
        self._names = {key: (f"offset_{index}", f"scale_{index}") for index, key in enumerate(self.keys)}
        for index, (key, mode) in enumerate(modes.items()):
            entry = stats[key]
            if mode == "mean_std":
                offset, scale = entry["mean"], entry["std"]
            elif mode == "min_max":
                offset, scale = (entry["max"] + entry["min"]) / 2, (entry["max"] - entry["min"]) / 2
            else:
                offset, scale = torch.zeros_like(entry["mean"]), torch.ones_like(entry["mean"])
            scale = torch.where(scale.abs() < _EPS, torch.ones_like(scale), scale)
            self.register_buffer(f"offset_{index}", offset.float().clone(), persistent=False)
            self.register_buffer(f"scale_{index}", scale.float().clone(), persistent=False)

    def _buffers_of(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        # a dict lookup, not nn.Module.__getattr__ by a formatted name: this runs several times per chunk
        offset_name, scale_name = self._names[key]
        offset, scale = self._buffers[offset_name], self._buffers[scale_name]
        assert offset is not None and scale is not None
        return offset, scale

    def normalize(self, key: str, value: torch.Tensor) -> torch.Tensor:
        offset, scale = self._buffers_of(key)
        return (value - offset) / scale

    def unnormalize(self, key: str, value: torch.Tensor) -> torch.Tensor:
        offset, scale = self._buffers_of(key)
        return value * scale + offset

    def scale(self, key: str) -> torch.Tensor:
        """d raw / d normalised, per component (the chain-rule factor of guidance gradients)."""
        return self._buffers_of(key)[1]


class GenerativeLowPolicy(nn.Module):
    """Observation history + conditions -> action chunks, through a generative core.

    Args:
        config: the policy's definition.
        features: the embodiment and features it reads (sizes S and A, cameras, language key).
        stats: normalisation statistics, tiers key -> {"mean", "std", "min", "max"}; the state, the action
            and every camera must be present.

    Raises:
        ContractError: a statistic the policy needs is missing (the message names the key), or the
            features disagree with the config (cameras, language key).
    """

    policy_type: ClassVar[str] = "generative"  # the name in checkpoint config.json (checkpoint.POLICY_TYPES)

    def __init__(self, config: GenerativeLowPolicyConfig, features: PolicyFeatures, stats: Stats):
        super().__init__()
        conditioning = config.conditioning
        if sorted(features.cameras) != sorted(conditioning.camera_keys):
            raise ContractError(
                f"features read cameras {sorted(features.cameras)}, the config asks for {conditioning.camera_keys}"
            )
        if features.language_key != conditioning.language_key:
            raise ContractError(
                f"features are conditioned on {features.language_key!r}, the config on {conditioning.language_key!r}"
            )
        check_stats(stats, features.required_stats(), where="policy statistics")
        self.config = config
        self.features = features
        self.stats = {
            key: {name: value.clone() for name, value in stats[key].items()} for key in features.required_stats()
        }
        modes = {STATE: config.state_normalization, ACTION: config.action_normalization}
        modes.update({key: config.image_normalization for key in features.cameras})
        self.normalizer = Normalizer(self.stats, modes)
        image_size = _image_size(features)
        self.encoder = ObservationEncoder(
            conditioning, state_dim=features.state_dim, n_obs_steps=config.n_obs_steps, image_size=image_size
        )
        self.generator: ActionGenerator = _make_generator(
            config, action_dim=features.action_dim, n_tokens=self.encoder.n_tokens
        )
        self._guidance: tuple[Guidance, ...] = ()
        self._guidance_observation: Observation | None = None
        self._observations: deque[dict[str, Any]] = deque(maxlen=config.n_obs_steps)
        self._actions: deque[torch.Tensor] = deque(maxlen=config.horizon)
        self._ensembler: Any = None
        self._noise: torch.Generator | None = None  # the sampler's noise source once seeded (None: torch's global one)
        self.reset()

    # -- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, config: Mapping[str, Any], features: PolicyFeatures, stats: Stats) -> GenerativeLowPolicy:
        """Rebuild from a checkpoint's ``config.json`` ``config`` entry (weights are loaded by the caller)."""
        return cls(GenerativeLowPolicyConfig.from_dict(config, source="checkpoint config.json"), features, stats)

    def save(self, path: str | Path, *, weights: str = "raw", step: int = 0) -> Path:
        """Write this policy as a checkpoint folder (see :mod:`tiers.policies.low.checkpoint`); returns ``path``.

        Args:
            path: the folder (created).
            weights: "raw" or "ema", which weights these are (recorded in config.json).
            step: the optimiser step they come from.
        """
        return save_checkpoint(
            path,
            self,
            policy_type=self.policy_type,
            config=self.config.to_dict(),
            features=self.features,
            stats=self.stats,
            weights=weights,
            step=step,
        )

    @property
    def device(self) -> torch.device:
        # one parameter's device (they move together), not next(self.parameters()), which walks the module tree
        return self.encoder.position.device

    # -- LowLevelPolicy -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Clear the observation history and queued actions; call at the start of every episode."""
        self._observations.clear()
        self._actions.clear()
        self._ensembler = None
        if self.config.temporal_ensemble_coeff is not None:
            from lerobot.policies.act.modeling_act import ACTTemporalEnsembler

            self._ensembler = ACTTemporalEnsembler(self.config.temporal_ensemble_coeff, self.config.horizon)

    def seed(self, seed: int) -> None:
        """Draw the sampler's noise from a generator seeded with ``seed`` (on the policy's device) from now on.

        Called at the start of an evaluation episode, so the chunks sampled depend on the episode's seed alone,
        not on what ran before in the same process. A ``generator`` passed to :meth:`select_action` wins.
        """
        self._noise = torch.Generator(device=self.device).manual_seed(int(seed))

    def drop_queued_actions(self) -> None:
        """Forget queued actions (and the ensemble) so a new command or correction acts on the next tick.

        The observation history is kept: the robot has not moved back in time.
        """
        self._actions.clear()
        if self._ensembler is not None:
            self._ensembler.reset()

    @torch.no_grad()
    def select_action(
        self, batch: Mapping[str, Any], *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The action to apply now, (B, A) raw, from the queue; a new chunk is predicted when it is empty.

        ``batch`` holds one observation step: ``observation.state`` (B, S), each camera (B, 3, H, W)
        float in [0, 1], the conditioning text / goal / path. The last To observations are kept (the
        first one is repeated at the start of an episode). Timeline with To=2, Ta=horizon=8,
        n_action_steps=4 (the dataset's windows: observations end at t, actions start at t)::

            step:            t-1   t    t+1  t+2  t+3  t+4  t+5  t+6  t+7
            observed:         o    o
            predicted:             a    a    a    a    a    a    a    a     <- one chunk of Ta actions
            executed:              a    a    a    a                         <- queued, popped one per call
            next prediction:                          ^ at t+4, from the observations of t+3 and t+4

        With temporal ensembling a chunk is predicted at every step and the action for now is the
        exponentially weighted average of every chunk's prediction for now (ACT, Algorithm 2).
        ``drop_queued_actions`` empties the queue, so the next call predicts a fresh chunk.

        Args:
            batch: one observation step (see above).
            noise: (B, Ta, A) starting noise for a chunk predicted in this call (deterministic tests).
            generator: random source for the sampler's noise (default: the one :meth:`seed` made, else torch's).
        """
        step = {key: value for key, value in batch.items() if key != ACTION}
        if not self._observations:
            self._observations.extend(step for _ in range(self.config.n_obs_steps))
        else:
            self._observations.append(step)
        if self._ensembler is not None:
            chunk = self.predict_action_chunk(self._history(), noise=noise, generator=generator)
            action: torch.Tensor = self._ensembler.update(chunk)
            return action
        if not self._actions:
            chunk = self.predict_action_chunk(self._history(), noise=noise, generator=generator)
            self._actions.extend(chunk[:, : self.config.n_action_steps].transpose(0, 1))
        return self._actions.popleft()

    @torch.no_grad()
    def predict_action_chunk(
        self, batch: Mapping[str, Any], *, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A fresh chunk, (B, Ta, A) raw actions (Ta = ``horizon``, the first one for now); the queue is untouched.

        ``batch`` holds either the history (state (B, To, S), cameras (B, To, 3, H, W)) or a single step
        (state (B, S), cameras (B, 3, H, W)), which is then taken as To identical steps. Guidance terms
        set with :meth:`set_guidance` steer the sample.
        """
        # inference_mode (no version counters, no autograd metadata per op) unless guidance takes reward gradients
        # inside the sampler; the chunk leaves it as an ordinary tensor (a clone), which callers may modify
        with torch.inference_mode(not self._guidance):
            conditioning = self.encoder(self._normalized_inputs(batch), null_tokens=self.config.cfg_scale != 1.0)
            hook = self._guidance_hook() if self._guidance else None
            sample = self.generator.sample(
                conditioning,
                noise=None if noise is None else noise.to(conditioning.tokens.device),
                steps=self.config.sampler_steps,
                guidance=hook,
                cfg_scale=self.config.cfg_scale,
                generator=generator if generator is not None else self._noise,
            )
            actions = self.normalizer.unnormalize(ACTION, sample)
        return actions.clone() if actions.is_inference() else actions

    def forward(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """Training loss on a batch of windows (see :class:`tiers.datasets.loading.TrainingWindows`).

        Args:
            batch: ``observation.state`` (B, To, S), cameras (B, To, 3, H, W), ``action`` (B, Ta, A),
                ``action_is_pad`` (B, Ta) bool (padded steps do not count), the conditioning text / goal /
                path.

        Returns:
            (scalar loss, {"loss": detached loss}).

        Raises:
            ContractError: a NaN or infinity in an input (the message names the key), a missing key, or
                a wrong shape.
        """
        _check_finite(batch, [STATE, ACTION, *self.features.cameras, GOAL_STATE_KEY, EE_PATH_KEY])
        action = batch[ACTION].to(self.device)
        if action.shape[1:] != (self.config.horizon, self.features.action_dim):
            raise ContractError(
                f"batch action has shape {tuple(action.shape)}, expected (B, {self.config.horizon}, "
                f"{self.features.action_dim}) (horizon, action dim)"
            )
        normalized = self._normalized_inputs(batch)
        pad = batch.get(ACTION + PAD_SUFFIX)
        mask = None if pad is None else ~pad.to(self.device).bool()
        loss = self.generator.loss(self.normalizer.normalize(ACTION, action), self.encoder(normalized), mask=mask)
        return loss, {"loss": loss.detach()}

    # -- guidance -------------------------------------------------------------------------------------------

    def set_guidance(self, terms: Sequence[Guidance], observation: Observation | None = None) -> None:
        """Steer the following chunks with reward terms on raw actions (VLS, path tracking, inpainting).

        At each sampling step the core hands its normalised clean estimate x̂0 (B, Ta, A) to a hook that
        un-normalises it (a = x̂0 · scale + offset), takes the gradient of the weighted rewards with respect
        to a (:func:`~tiers.core.guidance.guidance_gradient`) and maps it back by the chain rule
        (∂r/∂x̂0 = ∂r/∂a · scale). An empty sequence turns guidance off; terms of weight 0 are dropped (they
        would change nothing and cost a reward gradient at every sampler step).

        Args:
            terms: the reward terms, acting on (B, Ta, A) raw actions.
            observation: passed to the reward functions; :meth:`batch_from_observation` updates it.
        """
        self._guidance = tuple(term for term in terms if term.weight != 0)
        if observation is not None:
            self._guidance_observation = observation

    def _guidance_hook(self) -> GuidanceHook:
        terms, normalizer = self._guidance, self.normalizer

        def hook(x0: torch.Tensor, step: int) -> torch.Tensor:
            raw = normalizer.unnormalize(ACTION, x0.detach())
            _, gradient = guidance_gradient(terms, raw, self._guidance_observation)
            return gradient * normalizer.scale(ACTION)

        return hook

    # -- SteerablePolicy (tiers.core.sampling) -------------------------------------------------------------

    def stepwise_sampler(self, batch: Mapping[str, Any]) -> StepwiseSampler:
        """The core's sampler over one observation step, one denoising step at a time (for the mid tier).

        ``batch`` is as for :meth:`predict_action_chunk` with B = 1; it is encoded once here and the tokens are
        shared by every particle. Flow matching steps Euler, BESO ancestral Euler (whatever its configured
        sampler), both on the conditional model alone.

        Raises:
            TypeError: the core (``ddpm``) has no step-wise sampler.
            ValueError: the policy samples with classifier-free guidance (``cfg_scale`` != 1).
        """
        generator = self.generator
        if not isinstance(generator, StepwiseGenerator):
            raise TypeError(f"the {self.config.generator!r} core has no step-wise sampler (flow and BESO have)")
        if self.config.cfg_scale != 1.0:
            raise ValueError(
                f"step-wise sampling runs the conditional model alone; the policy has cfg_scale={self.config.cfg_scale}"
            )
        with torch.no_grad():
            conditioning = self.encoder(self._normalized_inputs(batch), null_tokens=False)  # cfg_scale is 1 here
        default_steps: int = cast(Any, generator).config.steps  # every core's config names its default
        return _StepwiseChunkSampler(
            self.config.generator,
            default_steps if self.config.sampler_steps is None else self.config.sampler_steps,
            generator,
            conditioning.tokens,
            (self.config.horizon, self.features.action_dim),
            self.device,
        )

    def to_actions(self, normalized: torch.Tensor) -> torch.Tensor:
        """(..., Ta, A) normalised action chunks -> raw actions."""
        return self.normalizer.unnormalize(ACTION, normalized)

    def to_normalized_gradient(self, gradient: torch.Tensor) -> torch.Tensor:
        """(..., Ta, A) ∂r/∂a -> ∂r/∂x̂0 = ∂r/∂a · scale, the chain rule through the action normalisation."""
        return gradient * self.normalizer.scale(ACTION)

    # -- observations in, actions out -----------------------------------------------------------------------

    def batch_from_observation(
        self,
        observation: Observation,
        *,
        command: str | None = None,
        goal_state: NDArray[np.floating[Any]] | None = None,
        path: EEPath | None = None,
    ) -> dict[str, Any]:
        """A one-step batch (B = 1) for :meth:`select_action` from a kitchen or robot observation.

        Args:
            observation: proprioception and camera images (RGB (H, W, 3) uint8, resized here to the size
                the policy was trained on, as the dataset loader resized them).
            command: the text for the language condition (subtask, language motion); for the ``task``
                key it defaults to the observation's instruction.
            goal_state: (S,) raw goal state, for goal-conditioned policies.
            path: end-effector path in the base frame, for path-conditioned policies.

        Raises:
            EmbodimentMismatchError: the state size or a camera does not fit the policy.
            ContractError: a condition the policy needs is not given.
        """
        from torchvision.transforms import v2

        arrays = observation_arrays(
            observation, self.features, self.config.conditioning, command=command, goal_state=goal_state, path=path
        )
        batch: dict[str, Any] = {STATE: torch.as_tensor(arrays.state)[None].to(self.device)}
        for key, observed in arrays.images.items():
            _, height, width = self.features.cameras[key]
            image = torch.from_numpy(np.ascontiguousarray(observed)).permute(2, 0, 1).float() / 255.0
            if image.shape[1:] != (height, width):
                image = v2.Resize([height, width], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)(image)
            batch[key] = image[None].to(self.device)
        for key, value in arrays.conditions.items():  # texts stay lists; goal and path arrays become tensors
            batch[key] = torch.from_numpy(value).to(self.device) if isinstance(value, np.ndarray) else value
        self._guidance_observation = observation
        return batch

    @staticmethod
    def action_for_env(action: torch.Tensor) -> NDArray[np.float32]:
        """(1, A) or (A,) action tensor -> (A,) float32 array for ``env.step`` (the embodiment's action space)."""
        array = action.detach().to("cpu").float().numpy()
        if array.ndim == 2:
            if array.shape[0] != 1:
                raise ContractError(f"action_for_env takes one action, got a batch of {array.shape[0]}")
            array = array[0]
        return np.asarray(array, dtype=np.float32)

    # -- internals ------------------------------------------------------------------------------------------

    def _history(self) -> dict[str, Any]:
        """The queued observation steps as one batch: tensors stacked on a time axis, the rest from now."""
        latest = self._observations[-1]
        out = dict(latest)
        if all(step is latest for step in self._observations):
            return out  # the episode's first step repeated To times: one step, expanded (and encoded) once
        for key in (STATE, *self.features.cameras):
            out[key] = torch.stack([step[key] for step in self._observations], dim=1)
        return out

    def _normalized_inputs(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Inputs of the encoder: history tensors on the device, normalised; conditions passed through."""
        steps, device = self.config.n_obs_steps, self.device
        out: dict[str, Any] = {}
        for key, rank in ((STATE, 2), *((camera, 4) for camera in self.features.cameras)):
            if key not in batch:
                raise ContractError(f"batch has no {key!r}; the policy reads {[STATE, *self.features.cameras]}")
            value = batch[key].to(device, torch.float32)
            single = value.ndim == rank  # a single step: the history is that step, To times
            shape = (value.shape[0], steps, *value.shape[1:]) if single else tuple(value.shape)
            if len(shape) != rank + 1 or shape[1] != steps:
                raise ContractError(f"batch {key!r} has shape {shape}; expected (B, {steps}, ...) or (B, ...)")
            if key in self.features.cameras and list(shape[2:]) != self.features.cameras[key]:
                raise ContractError(
                    f"batch {key!r} images are {tuple(shape[2:])}; the policy reads {self.features.cameras[key]}"
                )
            normalized = self.normalizer.normalize(key, value)
            # a single step is normalised once, then repeated with a stride-0 time axis: the encoder sees the
            # repeat and encodes it once
            out[key] = normalized[:, None].expand(shape) if single else normalized
        for key in condition_keys(self.config.conditioning):
            if key not in batch:
                raise ContractError(f"batch has no {key!r}, a condition of this policy")
            value = batch[key]
            if key == GOAL_STATE_KEY:
                value = self.normalizer.normalize(STATE, value.to(device, torch.float32))
            elif isinstance(value, torch.Tensor):
                value = value.to(device, torch.float32)
            out[key] = value
        return out


class _StepwiseChunkSampler:
    """:class:`~tiers.core.sampling.StepwiseSampler` over one encoded observation (see ``stepwise_sampler``)."""

    def __init__(
        self,
        kind: str,
        steps: int,
        generator: StepwiseGenerator,
        tokens: torch.Tensor,
        chunk: tuple[int, int],
        device: torch.device,
    ) -> None:
        """
        Args:
            kind: the core's name ("flow", "beso").
            steps: the policy's default number of denoising steps.
            generator: the core.
            tokens: (1, Tc, D) conditioning tokens of the observation.
            chunk: (Ta, A).
            device: where the particles live.
        """
        self.kind, self.steps = kind, steps
        self._generator, self._tokens, self._chunk, self._device = generator, tokens, chunk, device
        self._expanded: dict[int, torch.Tensor] = {}

    def noise(self, count: int) -> torch.Tensor:
        return torch.randn(count, *self._chunk, device=self._device)

    def make_step(self, steps: int) -> SamplerStep:
        return self._generator.step_function(steps, self._particle_tokens)

    def _particle_tokens(self, count: int) -> torch.Tensor:
        """(count, Tc, D): the observation's tokens for ``count`` particles (a view, made once per count)."""
        if count not in self._expanded:
            self._expanded[count] = self._tokens.expand(count, -1, -1)
        return self._expanded[count]


def _check_finite(batch: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Raise :class:`ContractError` naming the first key whose tensor holds a NaN or an infinity.

    One device synchronisation for all keys; the per-key search runs only when something is wrong.
    """
    tensors = {key: batch[key] for key in keys if isinstance(batch.get(key), torch.Tensor)}
    if not tensors:
        return
    flags = torch.stack([torch.isfinite(value).all() for value in tensors.values()])
    if bool(flags.all()):
        return
    for key, value in tensors.items():
        bad = ~torch.isfinite(value)
        if bad.any():
            where = tuple(int(i) for i in bad.nonzero()[0])
            raise ContractError(
                f"batch {key!r} has {int(bad.sum())} non-finite value(s); first at index {where} "
                f"(batch sample {where[0]}): {value[where].item()}"
            )


def _image_size(features: PolicyFeatures) -> tuple[int, int]:
    sizes = {tuple(shape[1:]) for shape in features.cameras.values()}
    if len(sizes) > 1:
        raise ContractError(f"cameras must share one image size, got {features.cameras}")
    size = next(iter(sizes), (1, 1))
    return int(size[0]), int(size[1])


def generator_config_dict(config: GenerativeLowPolicyConfig, *, action_dim: int, n_tokens: int) -> dict[str, Any]:
    """The core's config as a dict: ``generator_options`` with the sizes the policy owns filled in.

    The policy decides the chunk shape and the conditioning, so ``network.action_dim`` (A),
    ``network.horizon`` (Ta), ``network.cond_dim`` (D) and ``network.max_cond_tokens`` (Tc) are set here;
    a preset that sets them to something else is refused, naming the field.
    """
    options = copy.deepcopy(config.generator_options)
    network = options.setdefault("network", {})
    owned = {
        "action_dim": action_dim,
        "horizon": config.horizon,
        "cond_dim": config.conditioning.token_dim,
        "max_cond_tokens": n_tokens,
    }
    for name, value in owned.items():
        if name in network and network[name] != value:
            raise ContractError(
                f"policy.generator_options.network.{name}={network[name]} conflicts with the policy's {value} "
                f"(the policy sets it from the data and the conditioning; remove it from the config)"
            )
        network[name] = value
    return options


def _make_generator(config: GenerativeLowPolicyConfig, *, action_dim: int, n_tokens: int) -> ActionGenerator:
    """The generative core named by ``config.generator``, sized for (Ta, A) chunks and Tc tokens of width D."""
    options = generator_config_dict(config, action_dim=action_dim, n_tokens=n_tokens)
    generator: ActionGenerator = make_generator(config.generator, options)  # type: ignore[assignment]
    return generator
