"""ONNX export of a few-step generative low-tier policy: encoders + unrolled sampler + (un)normalisation in one graph.

``tiers export CHECKPOINT --out model.onnx`` traces :class:`OnnxPolicy` around a
:class:`~tiers.policies.low.policy.GenerativeLowPolicy` checkpoint whose sampler is a deterministic function
of its starting noise (BESO with DDIM / Euler / DPM-Solver++(2M), 3 steps by default; flow matching's Euler
steps). The sampler's loop has a fixed step count, so tracing unrolls it: the graph holds ``steps`` copies of
the denoising network, the fixed noise schedule as constants, and classifier-free guidance when the policy's
``cfg_scale`` is not 1. DDPM (fresh noise at every step) and Euler-ancestral are refused.

Graph inputs (float32; B batch, dynamic; To = n_obs_steps, S state size, H×W the image size the policy was
trained on, Ta = horizon, A action size)::

    state               (B, To, S)          raw proprioception history, oldest first (rad, m), as observation.state
    image_<camera>      (B, To, 3, H, W)    raw RGB in [0, 1], one input per camera the policy reads, resized
    language_embedding  (B, 384)            MiniLM sentence embedding of the language condition (only when the
                                            policy is language-conditioned): TextEncoder()([text]), computed
                                            off-graph because the text encoder is frozen and text is not a tensor
    goal_state          (B, S)              raw goal state (only for goal-conditioned policies)
    ee_path             (B, K, 8)           path waypoints (only for path-conditioned policies; resample_path)
    noise               (B, Ta, A)          standard-normal starting noise of the sampler (fixed → deterministic)

Graph output::

    actions             (B, Ta, A)          raw actions in the embodiment's action space, the first one for "now";
                                            execute ``n_action_steps`` of them (receding horizon)

Normalisation (the checkpoint's statistics) happens inside the graph. Guidance terms (VLS rewards, path
tracking) need gradients of a reward through the sampler and are not part of the export. A JSON sidecar
``<out>.json`` records the inputs, outputs, shapes, the robot, the control rate, ``n_action_steps`` and the
sampler, so a runtime can check what it feeds the graph. For a language-conditioned policy,
``<out>.language.npz`` holds the MiniLM embeddings of the command vocabulary (:func:`command_vocabulary`: every
canonical kitchen subtask, or the RT-H motion phrases, plus any ``texts`` given), so
:class:`~tiers.policies.low.onnx_policy.OnnxLowPolicy` runs the graph on a computer without torch.

After writing, onnxruntime runs the graph on random inputs and the largest difference to torch is compared
with ``tolerance`` (default :data:`DEFAULT_TOLERANCE`): a larger one raises :class:`ExportMismatchError`
naming it (``tiers export`` exits non-zero; the files stay on disk for inspection, marked unchecked).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tiers.commands.motion_words import VOCABULARY as MOTION_VOCABULARY
from tiers.commands.subtasks import Action, Subtask, SubtaskError
from tiers.commands.vocabulary import ARTICULATED, FIXTURES, ObjectName, PushDirection, Relation
from tiers.core.errors import ContractError, MissingExtraError
from tiers.core.features import FeatureKey
from tiers.policies.low.checkpoint import load_policy
from tiers.policies.low.generator import Conditioning
from tiers.policies.low.onnx_policy import SIDECAR_FORMAT, language_path, sidecar_path
from tiers.policies.low.path_tokens import EE_PATH_KEY, GOAL_STATE_KEY, PATH_WAYPOINT_DIM
from tiers.services.text_encoder import EMBEDDING_DIM, TextEncoder

STATE, ACTION = FeatureKey.STATE.value, FeatureKey.ACTION.value
DETERMINISTIC_EDM_SAMPLERS = ("ddim", "euler", "dpmpp_2m")  # BESO samplers without fresh noise per step
DEFAULT_OPSET = 17  # ONNX opset: onnxruntime >= 1.14 runs it; LayerNorm and friends are single ops from 17 on
# max |onnxruntime - torch| accepted, raw action units (rad, m): float32 reordering gives ~1e-6 on the kitchen
# policies; 1e-4 rad is far below what the arm resolves, while a wrong graph is off by 1e-2 or more
DEFAULT_TOLERANCE = 1e-4


class ExportMismatchError(ContractError):
    """onnxruntime's actions differ from torch's beyond the tolerance (the message names the largest error)."""


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime reproduces torch.

    Attributes:
        path: the .onnx file.
        inputs: input name -> shape (``"B"`` for the batch axis).
        outputs: output name -> shape.
        steps: network evaluations unrolled in the graph.
        max_abs_error: max |onnxruntime - torch| over the check inputs (raw action units), NaN when unchecked.
        size_mb: file size, MiB.
        opset: the ONNX opset version of the graph.
    """

    path: Path
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]
    steps: int
    max_abs_error: float
    size_mb: float
    opset: int
    vocabulary: int = 0  # texts whose embeddings were written to <out>.language.npz (0: not language-conditioned)


class OnnxPolicy(nn.Module):
    """A generative policy's chunk prediction as a pure tensor function (see the module docstring for the I/O).

    Args:
        policy: a GenerativeLowPolicy in eval mode with a deterministic sampler.
        steps: network evaluations per chunk; None: the policy's ``sampler_steps`` or its core's default.
    """

    def __init__(self, policy: Any, *, steps: int | None = None) -> None:
        super().__init__()
        check_exportable(policy)
        self.policy = policy
        self.steps = steps or policy.config.sampler_steps or policy.generator.config.steps
        self.cameras = list(policy.features.cameras)  # tiers keys, in the order of the image inputs
        conditioning = policy.config.conditioning
        self.language = conditioning.language_key is not None
        self.goal = conditioning.goal
        self.path_waypoints = conditioning.path_waypoints

    def input_shapes(self) -> dict[str, list[int | str]]:
        """Input name -> shape, ``"B"`` for the (dynamic) batch axis."""
        policy = self.policy
        steps, state_dim = policy.config.n_obs_steps, policy.features.state_dim
        shapes: dict[str, list[int | str]] = {"state": ["B", steps, state_dim]}
        for key, shape in policy.features.cameras.items():
            shapes[image_input(key)] = ["B", steps, *shape]
        if self.language:
            shapes["language_embedding"] = ["B", EMBEDDING_DIM]
        if self.goal:
            shapes["goal_state"] = ["B", state_dim]
        if self.path_waypoints:
            shapes["ee_path"] = ["B", self.path_waypoints, PATH_WAYPOINT_DIM]
        shapes["noise"] = ["B", policy.config.horizon, policy.features.action_dim]
        return shapes

    def output_shapes(self) -> dict[str, list[int | str]]:
        return {"actions": ["B", self.policy.config.horizon, self.policy.features.action_dim]}

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Inputs in the order of :meth:`input_shapes`; returns (B, Ta, A) raw actions."""
        named = dict(zip(self.input_shapes(), inputs, strict=True))
        policy = self.policy
        normalizer = policy.normalizer
        state = normalizer.normalize(STATE, named["state"])
        images = {key: normalizer.normalize(key, named[image_input(key)]) for key in self.cameras}
        goal = normalizer.normalize(STATE, named["goal_state"]) if self.goal else None
        conditioning = encode_tokens(
            policy.encoder, state, images, named.get("language_embedding"), goal, named.get("ee_path")
        )
        sample = policy.generator.sample(
            conditioning, noise=named["noise"], steps=self.steps, cfg_scale=policy.config.cfg_scale
        )
        actions: torch.Tensor = normalizer.unnormalize(ACTION, sample)
        return actions

    def example_inputs(self, batch: int = 1, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
        """Random inputs of the right shapes (states and goals near the data, images in [0, 1], N(0, 1) noise)."""
        generator = torch.Generator().manual_seed(seed)
        stats = self.policy.stats[STATE]
        out = []
        for name, shape in self.input_shapes().items():
            size = [batch if axis == "B" else int(axis) for axis in shape]
            if name.startswith("image_"):
                out.append(torch.rand(size, generator=generator))
            elif name in ("state", "goal_state"):
                out.append(stats["mean"] + stats["std"] * torch.randn(size, generator=generator))
            elif name == "language_embedding":
                embedding = torch.randn(size, generator=generator)
                out.append(embedding / embedding.norm(dim=-1, keepdim=True))  # MiniLM embeddings are unit norm
            else:
                out.append(torch.randn(size, generator=generator))
        return tuple(out)


def image_input(camera_key: str) -> str:
    """Graph input name of a camera: ``observation.images.front`` -> ``image_front``."""
    return "image_" + camera_key.removeprefix(f"{FeatureKey.IMAGES.value}.")


def check_exportable(policy: Any) -> None:
    """Raise :class:`ContractError` unless the policy's sampler is deterministic given its starting noise."""
    name = getattr(policy.config, "generator", None)
    if name == "beso":
        sampler = policy.generator.config.sampler
        if sampler not in DETERMINISTIC_EDM_SAMPLERS:
            raise ContractError(
                f"BESO sampler {sampler!r} draws fresh noise at every step; export needs one of "
                f"{DETERMINISTIC_EDM_SAMPLERS} (set policy.generator_options.sampler)"
            )
    elif name != "flow":
        raise ContractError(
            f"policy generator {name!r} cannot be exported with a fixed-noise input: DDPM draws fresh noise at "
            "every step; export a BESO (3-step) or flow-matching policy"
        )


def encode_tokens(
    encoder: Any,
    state: torch.Tensor,
    images: Mapping[str, torch.Tensor],
    language_embedding: torch.Tensor | None,
    goal: torch.Tensor | None,
    path: torch.Tensor | None,
) -> Conditioning:
    """:class:`~tiers.policies.low.conditioning.ObservationEncoder`'s tokens from normalised tensors.

    The same layers and token layout as ``ObservationEncoder.forward`` (state tokens, camera tokens, then the
    language, goal and path conditions, plus position embeddings; null tokens for classifier-free guidance),
    with the language embedding given as a tensor instead of text, so the graph has no string input.

    Args:
        encoder: the policy's ObservationEncoder.
        state: (B, To, S) normalised.
        images: camera key -> (B, To, 3, H, W) normalised.
        language_embedding: (B, 384) MiniLM embedding, when the encoder has a language slot.
        goal: (B, S) normalised goal state, when it has a goal slot.
        path: (B, K, 8) path waypoints, when it has path slots.
    """
    batch_size, steps = state.shape[:2]
    tokens = [encoder.state_proj(state)]  # (B, To, D)
    cameras = encoder.config.cameras
    flat = [images[FeatureKey.IMAGES.camera(camera)].flatten(0, 1) for camera in cameras]  # (B·To, 3, H, W)
    for camera, features in zip(cameras, encoder.camera_features(flat), strict=True):  # (B·To, 2K)
        tokens.append(encoder.camera_proj[camera](features.unflatten(0, (batch_size, steps))))
    conditions = []
    if encoder.language_proj is not None:
        if language_embedding is None:
            raise ContractError("the policy is language-conditioned: the graph needs a language_embedding input")
        conditions.append(encoder.language_proj(language_embedding)[:, None])
    if encoder.goal_proj is not None:
        if goal is None:
            raise ContractError(f"the policy is goal-conditioned: the graph needs a {GOAL_STATE_KEY} input")
        conditions.append(encoder.goal_proj(goal)[:, None])
    if encoder.path_proj is not None:
        if path is None:
            raise ContractError(f"the policy is path-conditioned: the graph needs an {EE_PATH_KEY} input")
        conditions.append(encoder.path_proj(path))
    observation = torch.cat(tokens, dim=1)  # (B, To·(1+C), D)
    if not conditions:
        return Conditioning(tokens=observation + encoder.position)
    condition = torch.cat(conditions, dim=1)
    full = torch.cat([observation, condition], dim=1) + encoder.position
    null = torch.cat([observation, encoder.null.expand(batch_size, -1, -1)], dim=1) + encoder.position
    return Conditioning(tokens=full, null_tokens=null)


def export_onnx(
    checkpoint: str | Path | Any,
    out: str | Path,
    *,
    steps: int | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    check_batch: int = 2,
    tolerance: float = DEFAULT_TOLERANCE,
    texts: list[str] | tuple[str, ...] = (),
) -> ExportReport:
    """Write the ONNX graph of a policy checkpoint (or a loaded policy) and check it with onnxruntime.

    Args:
        checkpoint: a checkpoint folder of ``tiers train`` (BESO or flow), or the policy itself.
        out: the .onnx file to write (a ``.json`` sidecar is written next to it).
        steps: network evaluations to unroll; None: the policy's own.
        opset: ONNX opset version.
        check: run the graph in onnxruntime on random inputs of batch ``check_batch`` and compare with torch.
        check_batch: batch size of the check (differs from the traced batch of 1, so the dynamic axis is tested).
        tolerance: the largest |onnxruntime - torch| accepted (raw action units).
        texts: command texts to embed beyond :func:`command_vocabulary` (language-conditioned policies).

    Raises:
        MissingExtraError: onnx / onnxruntime are not installed (``pip install 'tiers[export]'``).
        ContractError: the policy's sampler is not deterministic, or onnxruntime's output is not finite.
        ExportMismatchError: onnxruntime differs from torch by more than ``tolerance``.
    """
    try:
        import onnx
    except ImportError as error:
        raise MissingExtraError("ONNX export needs onnx and onnxruntime: pip install 'tiers[export]'") from error
    if isinstance(checkpoint, str | Path):
        policy = load_policy(checkpoint, device="cpu")
    else:
        policy = checkpoint.to("cpu").eval()
    module = OnnxPolicy(policy, steps=steps).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs, outputs = module.input_shapes(), module.output_shapes()
    dynamic = {name: {0: "B"} for name in [*inputs, *outputs]}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns that shape checks and the sampler's Python-side schedule become constants: they are
        # meant to (fixed step count and schedule; only the batch axis is dynamic, and the check runs another B).
        warnings.simplefilter("ignore", getattr(torch.jit, "TracerWarning"))  # noqa: B009 (not re-exported)
        # The TorchScript tracer is deprecated in favour of torch.export, which would need onnxscript and cannot
        # follow diffusers' schedulers (Python-side state); torch < 2.12 (lerobot's bound) still ships it.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\..*")
        torch.onnx.export(
            module,
            module.example_inputs(1),
            str(out),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,  # the TorchScript tracer unrolls the Python sampling loop; no onnxscript needed
        )
    onnx.checker.check_model(str(out))
    vocabulary = _write_vocabulary(out, policy, texts)
    difference, where = check_onnx_detailed(module, out, batch=check_batch) if check else (float("nan"), ())
    report = ExportReport(
        path=out,
        inputs=inputs,
        outputs=outputs,
        steps=module.steps,
        max_abs_error=difference,
        size_mb=out.stat().st_size / 2**20,
        opset=opset,
        vocabulary=vocabulary,
    )
    failed = bool(difference > tolerance)
    _write_sidecar(out, module, report, tolerance=tolerance, passed=None if not check else not failed)
    if failed:
        raise ExportMismatchError(
            f"{out}: onnxruntime differs from torch by {difference:.3e} raw action units at (batch, step, action) "
            f"{where}, above the tolerance {tolerance:.1e}; the graph does not reproduce the policy (the files "
            "were kept for inspection; their sidecar says check_passed: false)"
        )
    return report


def command_vocabulary(language_key: str | None) -> list[str]:
    """The texts a policy conditioned on ``language_key`` can be commanded with in the kitchen.

    ``subtask``: every canonical subtask the grammar accepts (:class:`tiers.commands.subtasks.Subtask`: pick,
    place in every accepted relation, open/close the articulated fixtures, push in each direction);
    ``language_motion``: the RT-H motion phrases; ``task`` and None: none (task instructions are free text:
    give them to :func:`export_onnx` as ``texts``).
    """
    if language_key == FeatureKey.LANGUAGE_MOTION.value:
        return list(MOTION_VOCABULARY)
    if language_key != FeatureKey.SUBTASK.value:
        return []
    objects = [name.value for name in ObjectName]
    candidates = [Subtask(Action.PICK, name) for name in objects]
    candidates += [Subtask(action, str(fixture)) for action in (Action.OPEN, Action.CLOSE) for fixture in ARTICULATED]
    candidates += [Subtask(Action.PUSH, name, direction=direction) for name in objects for direction in PushDirection]
    texts = [subtask.text for subtask in candidates]
    for name in objects:
        for target in [*objects, *(str(fixture) for fixture in FIXTURES)]:
            for relation in Relation:
                try:
                    texts.append(Subtask(Action.PLACE, name, target, relation).text)
                except SubtaskError:
                    continue  # the target does not take that relation, or an object relative to itself
    return texts


def _write_vocabulary(out: Path, policy: Any, texts: list[str] | tuple[str, ...]) -> int:
    """Write ``<out>.language.npz`` (texts, (N, 384) MiniLM embeddings) for a language-conditioned policy."""
    key = policy.config.conditioning.language_key
    path = language_path(out)
    if key is None:
        path.unlink(missing_ok=True)
        return 0
    vocabulary = list(dict.fromkeys([*command_vocabulary(key), *texts]))
    if not vocabulary:
        raise ContractError(
            f"the policy is conditioned on {key!r}, free text: give the commands to embed (tiers export --text ...)"
        )
    embeddings = TextEncoder()(vocabulary).numpy().astype(np.float32)
    np.savez(path, texts=np.array(vocabulary), embeddings=embeddings)
    return len(vocabulary)


def check_onnx(module: OnnxPolicy, path: str | Path, *, batch: int = 2, seed: int = 1) -> float:
    """Max |onnxruntime - torch| (raw action units) of the graph at ``path`` on random inputs of ``batch``.

    Raises:
        MissingExtraError: onnxruntime is not installed.
        ContractError: onnxruntime returns a non-finite action.
    """
    return check_onnx_detailed(module, path, batch=batch, seed=seed)[0]


def check_onnx_detailed(
    module: OnnxPolicy, path: str | Path, *, batch: int = 2, seed: int = 1
) -> tuple[float, tuple[int, ...]]:
    """:func:`check_onnx` and the (batch, step, action) index of the largest difference."""
    try:
        import onnxruntime
    except ImportError as error:
        raise MissingExtraError("checking an ONNX export needs onnxruntime: pip install 'tiers[export]'") from error
    inputs = module.example_inputs(batch, seed=seed)
    with torch.no_grad():
        expected = module(*inputs).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {name: value.numpy() for name, value in zip(module.input_shapes(), inputs, strict=True)}
    (got,) = session.run(["actions"], feed)
    if not np.isfinite(got).all():
        raise ContractError(f"{path}: onnxruntime returned non-finite actions")
    difference = np.abs(got - expected)
    where = tuple(int(i) for i in np.unravel_index(int(difference.argmax()), difference.shape))
    return float(difference.max()), where


def _write_sidecar(
    out: Path, module: OnnxPolicy, report: ExportReport, *, tolerance: float, passed: bool | None
) -> None:
    policy = module.policy
    meta = {
        "format": SIDECAR_FORMAT,
        "inputs": report.inputs,
        "outputs": report.outputs,
        "robot": policy.features.robot,
        "action_space": policy.features.action_space,
        "control_rate_hz": policy.features.fps,
        "state_names": policy.features.state_names,
        "action_names": policy.features.action_names,
        "cameras": dict(policy.features.cameras),
        "language_key": policy.features.language_key,
        "language_vocabulary": language_path(out).name if report.vocabulary else None,
        "n_action_steps": policy.config.n_action_steps,
        "generator": policy.config.generator,
        "network_evaluations": report.steps,
        "cfg_scale": policy.config.cfg_scale,
        "opset": report.opset,
        "max_abs_error_vs_torch": None if np.isnan(report.max_abs_error) else report.max_abs_error,
        "tolerance": tolerance,
        "check_passed": passed,
    }
    sidecar_path(out).write_text(json.dumps(meta, indent=2) + "\n")
