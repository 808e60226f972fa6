"""An exported low-tier policy run by ONNX Runtime, with numpy alone: no torch on this path.

:func:`tiers.policies.low.export.export_onnx` (``tiers export``) writes three files::

    <name>.onnx                  the graph: normalisation, encoders, the sampler unrolled (see export.py)
    <name>.onnx.json             sidecar: inputs and shapes, robot, control rate, To, Ta, n_action_steps, ...
    <name>.onnx.language.npz     language-conditioned policies: the MiniLM embeddings of the command vocabulary
                                 (``texts`` (N,) str, ``embeddings`` (N, 384) float32), computed at export time

:class:`OnnxLowPolicy` loads them and behaves like
:class:`~tiers.policies.low.policy.GenerativeLowPolicy` at inference (``reset``, ``seed``, ``select_action``,
``predict_action_chunk``, ``drop_queued_actions``, ``batch_from_observation``, ``action_for_env``), so the
hierarchy's :class:`~tiers.policies.hierarchy.drivers.PolicyDriver` runs it as it runs the torch policy.

Language: the text encoder (MiniLM through sentence-transformers) needs torch, so the robot does not embed
text; it looks the command up in the embeddings precomputed at export (the kitchen's canonical subtasks, the
RT-H motion vocabulary, or texts given to ``tiers export --text``). An unknown text raises
:class:`~tiers.core.errors.ContractError` naming it. Exact lookups keep the ONNX tier bit-for-bit on the same
embedding the torch policy uses.

Randomness: the starting noise is drawn from numpy's generator (``seed``), not torch's, so the same seed gives
other samples than the torch policy; given the same ``noise`` the actions agree to the export's tolerance.
Guidance terms (reward gradients through the sampler) are not in the graph and are refused.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.ee_path import EEPath
from tiers.core.errors import ContractError, MissingExtraError
from tiers.core.features import FeatureKey
from tiers.core.observation import Observation
from tiers.policies.low.observation_batch import observation_arrays
from tiers.policies.low.path_tokens import EE_PATH_KEY, GOAL_STATE_KEY
from tiers.policies.low.policy_features import PolicyFeatures

STATE, ACTION = FeatureKey.STATE.value, FeatureKey.ACTION.value
SIDECAR_FORMAT = "tiers-onnx-policy/1"
LANGUAGE_SUFFIX = ".language.npz"  # <name>.onnx.language.npz next to the graph


def sidecar_path(model: str | Path) -> Path:
    """``<name>.onnx`` -> ``<name>.onnx.json``."""
    model = Path(model)
    return model.with_name(model.name + ".json")


def language_path(model: str | Path) -> Path:
    """``<name>.onnx`` -> ``<name>.onnx.language.npz``."""
    model = Path(model)
    return model.with_name(model.name + LANGUAGE_SUFFIX)


def read_sidecar(model: str | Path) -> dict[str, Any]:
    """The sidecar of an exported graph, checked for its format (no graph is loaded)."""
    path = sidecar_path(model)
    if not path.is_file():
        raise ContractError(f"{model}: no sidecar {path.name} next to it (write both with tiers export)")
    meta: dict[str, Any] = json.loads(path.read_text())
    if meta.get("format") != SIDECAR_FORMAT:
        raise ContractError(f"{path}: format {meta.get('format')!r}, expected {SIDECAR_FORMAT!r}")
    return meta


@dataclass
class OnnxConditioning:
    """The conditions the graph takes (the torch policy's ``config.conditioning`` fields the driver reads)."""

    language_key: str | None
    goal: bool
    path_waypoints: int


@dataclass
class OnnxPolicyConfig:
    """Inference settings fixed at export (the torch policy's ``config`` fields the driver reads)."""

    n_obs_steps: int
    horizon: int
    n_action_steps: int
    network_evaluations: int
    conditioning: OnnxConditioning = field(default_factory=lambda: OnnxConditioning(None, False, 0))
    # the graph's step count is fixed: None tells the driver that a latency budget cannot degrade it
    sampler_steps: int | None = None


class OnnxLowPolicy:
    """An exported policy (``tiers export``) run by ONNX Runtime on the CPU; numpy in, numpy out.

    Args:
        model: the ``.onnx`` file (its ``.json`` sidecar, and for language-conditioned policies its
            ``.language.npz``, next to it).
        threads: onnxruntime intra-op threads; None: onnxruntime's default (one per core).

    Raises:
        MissingExtraError: onnxruntime is not installed (``pip install 'tiers[export]'``).
        ContractError: the sidecar or the vocabulary file is missing or malformed.
    """

    def __init__(self, model: str | Path, *, threads: int | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise MissingExtraError("the ONNX low tier needs onnxruntime: pip install 'tiers[export]'") from error
        self.model = Path(model)
        meta = read_sidecar(self.model)
        self.meta = meta
        self.features = PolicyFeatures(
            robot=meta["robot"],
            action_space=meta["action_space"],
            fps=float(meta["control_rate_hz"]),
            state_names=list(meta["state_names"]),
            action_names=list(meta["action_names"]),
            cameras={key: list(shape) for key, shape in meta.get("cameras", {}).items()},
            language_key=meta.get("language_key"),
        )
        inputs: dict[str, list[Any]] = meta["inputs"]
        self.config = OnnxPolicyConfig(
            n_obs_steps=int(inputs["state"][1]),
            horizon=int(inputs["noise"][1]),
            n_action_steps=int(meta["n_action_steps"]),
            network_evaluations=int(meta["network_evaluations"]),
            conditioning=OnnxConditioning(
                language_key=meta.get("language_key"),
                goal="goal_state" in inputs,
                path_waypoints=int(inputs["ee_path"][1]) if "ee_path" in inputs else 0,
            ),
        )
        self.input_names = list(inputs)
        self._embeddings: dict[str, NDArray[np.float32]] = {}
        if "language_embedding" in inputs:
            self._embeddings = _read_vocabulary(language_path(self.model))
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(self.model), options, providers=["CPUExecutionProvider"])
        self._observations: deque[dict[str, Any]] = deque(maxlen=self.config.n_obs_steps)
        self._actions: deque[NDArray[np.float32]] = deque()
        self._rng = np.random.default_rng()

    # -- LowLevelPolicy-like interface ----------------------------------------------------------------------

    def reset(self) -> None:
        """Clear the observation history and queued actions; call at the start of every episode."""
        self._observations.clear()
        self._actions.clear()

    def seed(self, seed: int) -> None:
        """Draw the starting noise from numpy's generator seeded with ``seed`` from now on."""
        self._rng = np.random.default_rng(int(seed))

    def drop_queued_actions(self) -> None:
        """Forget queued actions so a new command acts on the next tick (the observation history is kept)."""
        self._actions.clear()

    def set_guidance(self, terms: Sequence[Any], observation: Observation | None = None) -> None:
        """Refuse guidance terms of non-zero weight: the graph has no reward gradients through its sampler."""
        active = [term for term in terms if getattr(term, "weight", 1.0) != 0]
        if active:
            raise ContractError(
                f"the ONNX low tier takes no guidance terms (got {len(active)}); the mid tier's path conditions it "
                "as an input: set mid.settings.tracking_weight: 0 (and vls_weight: 0) in the hierarchy YAML"
            )

    def select_action(self, batch: Mapping[str, Any], *, noise: NDArray[np.floating[Any]] | None = None) -> Any:
        """The action to apply now, (B, A) float32, from the queue; a new chunk is predicted when it is empty.

        ``batch`` holds one observation step as :meth:`batch_from_observation` builds it (numpy arrays with a
        leading batch axis); the last To steps are kept (the first repeated at the start of an episode).
        """
        step = {key: value for key, value in batch.items() if key != ACTION}
        if not self._observations:
            self._observations.extend(step for _ in range(self.config.n_obs_steps))
        else:
            self._observations.append(step)
        if not self._actions:
            chunk = self.predict_action_chunk(self._history(), noise=noise)
            self._actions.extend(chunk[:, : self.config.n_action_steps].transpose(1, 0, 2))
        return self._actions.popleft()

    def predict_action_chunk(
        self, batch: Mapping[str, Any], *, noise: NDArray[np.floating[Any]] | None = None
    ) -> NDArray[np.float32]:
        """A fresh chunk, (B, Ta, A) raw actions; the queue is untouched.

        ``batch``: ``observation.state`` (B, To, S) or (B, S) (one step, taken as To identical steps), each
        camera (B, To, 3, H, W) or (B, 3, H, W) in [0, 1], the language text (a string or B strings),
        ``goal.state`` (B, S), ``ee_path`` (B, K, 8); ``noise`` (B, Ta, A) standard normal (default: drawn
        from the seeded generator).
        """
        feed = self._feed(batch, noise)
        (actions,) = self.session.run(["actions"], feed)
        out: NDArray[np.float32] = actions
        return out

    def batch_from_observation(
        self,
        observation: Observation,
        *,
        command: str | None = None,
        goal_state: NDArray[np.floating[Any]] | None = None,
        path: EEPath | None = None,
    ) -> dict[str, Any]:
        """A one-step batch (B = 1) from a kitchen or robot observation (as ``GenerativeLowPolicy``'s).

        Images are RGB (H, W, 3) uint8; one of another size than the export's is resized bilinearly with
        Pillow (antialiased), which matches torchvision's resize of the torch policy to about 1/255.
        """
        arrays = observation_arrays(
            observation, self.features, self.config.conditioning, command=command, goal_state=goal_state, path=path
        )
        batch: dict[str, Any] = {STATE: np.asarray(arrays.state, dtype=np.float32)[None]}
        for key, observed in arrays.images.items():
            _, height, width = self.features.cameras[key]
            batch[key] = _image(observed, height, width)[None]
        batch.update(arrays.conditions)
        return batch

    @staticmethod
    def action_for_env(action: Any) -> NDArray[np.float32]:
        """(1, A) or (A,) action -> (A,) float32 array for ``env.step``."""
        array = np.asarray(action, dtype=np.float32)
        if array.ndim == 2:
            if array.shape[0] != 1:
                raise ContractError(f"action_for_env takes one action, got a batch of {array.shape[0]}")
            array = array[0]
        return array

    def embedding(self, text: str) -> NDArray[np.float32]:
        """(384,) the precomputed MiniLM embedding of ``text``; a text not embedded at export raises."""
        try:
            return self._embeddings[text]
        except KeyError:
            known = sorted(self._embeddings)
            raise ContractError(
                f"the ONNX policy has no embedding of {text!r}: only the {len(known)} texts embedded at export "
                f"(e.g. {known[:3]}) can condition it on a computer without torch; re-export with "
                f"tiers export ... --text {text!r}"
            ) from None

    # -- internals ------------------------------------------------------------------------------------------

    def _history(self) -> dict[str, Any]:
        """The kept observation steps as one batch: arrays stacked on a time axis, the rest from now."""
        latest = self._observations[-1]
        out = dict(latest)
        for key in (STATE, *self.features.cameras):
            out[key] = np.stack([step[key] for step in self._observations], axis=1)
        return out

    def _feed(self, batch: Mapping[str, Any], noise: NDArray[np.floating[Any]] | None) -> dict[str, Any]:
        """The graph's inputs, float32, named as in the sidecar."""
        steps = self.config.n_obs_steps
        state = _history_array(batch, STATE, 2, steps)
        size = state.shape[0]
        feed: dict[str, Any] = {"state": state}
        for key in self.features.cameras:
            feed["image_" + key.removeprefix(f"{FeatureKey.IMAGES.value}.")] = _history_array(batch, key, 4, steps)
        language = self.config.conditioning.language_key
        if language is not None:
            if language not in batch:
                raise ContractError(f"batch has no {language!r}, a condition of this policy")
            value = batch[language]
            texts = [value] * size if isinstance(value, str) else list(value)
            if len(texts) != size:
                raise ContractError(f"batch[{language!r}] must hold {size} strings, got {value!r}")
            feed["language_embedding"] = np.stack([self.embedding(text) for text in texts])
        for key, name in ((GOAL_STATE_KEY, "goal_state"), (EE_PATH_KEY, "ee_path")):
            if name in self.input_names:
                if key not in batch:
                    raise ContractError(f"batch has no {key!r}, a condition of this policy")
                feed[name] = np.asarray(batch[key], dtype=np.float32)
        shape = (size, self.config.horizon, self.features.action_dim)
        if noise is None:
            noise = self._rng.standard_normal(shape)
        noise = np.asarray(noise, dtype=np.float32)
        if noise.shape != shape:
            raise ContractError(f"noise has shape {noise.shape}, expected {shape}")
        feed["noise"] = noise
        return feed


def _history_array(batch: Mapping[str, Any], key: str, rank: int, steps: int) -> NDArray[np.float32]:
    """(B, To, ...) float32 from a (B, To, ...) history or a (B, ...) single step repeated To times."""
    if key not in batch:
        raise ContractError(f"batch has no {key!r}")
    value = np.asarray(batch[key], dtype=np.float32)
    if value.ndim == rank:
        value = np.repeat(value[:, None], steps, axis=1)
    if value.ndim != rank + 1 or value.shape[1] != steps:
        raise ContractError(f"batch {key!r} has shape {value.shape}; expected (B, {steps}, ...) or (B, ...)")
    return value


def _image(image: NDArray[Any], height: int, width: int) -> NDArray[np.float32]:
    """RGB (H, W, 3) uint8 -> (3, height, width) float32 in [0, 1]."""
    array = np.ascontiguousarray(image)
    if array.shape[:2] != (height, width):
        from PIL import Image

        array = np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BILINEAR))
    return np.asarray(array.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _read_vocabulary(path: Path) -> dict[str, NDArray[np.float32]]:
    """text -> (384,) embedding from the export's ``.language.npz``."""
    if not path.is_file():
        raise ContractError(f"{path}: the language-conditioned export has no vocabulary file (re-run tiers export)")
    with np.load(path, allow_pickle=False) as data:
        texts, embeddings = data["texts"], np.asarray(data["embeddings"], dtype=np.float32)
    if embeddings.shape != (len(texts), 384):
        raise ContractError(f"{path}: embeddings of shape {embeddings.shape} for {len(texts)} texts")
    return {str(text): embeddings[index] for index, text in enumerate(texts)}
