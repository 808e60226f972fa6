"""RT-H language-motion prediction: (camera image, state, task) -> the next language motion, as a high tier.

RT-H (Belkhale et al., 2024) puts a "language motion" between the task and the actions: "move arm forward",
"close gripper", ... This module learns to predict it from what the robot sees, trained on the motions that
:mod:`tiers.datasets.language_motion` auto-labels from proprioception in every ``tiers record`` dataset (the
``language_motion`` column), and hands it down as a :class:`~tiers.core.language.LanguageCommand` of style
``motion`` for a language-conditioned low tier. A person can say a motion at any time ("move arm left"): it
overrides the prediction for ``override_s`` seconds of the runtime clock, as in RT-H's intervention mode, and every
prediction it overrides is kept as a :class:`MotionIntervention` (what was said, by whom, what the predictor would
have said, and the inputs it would have said it from), the data ``tiers improve --motion`` retrains on.

Network (:class:`MotionClassifier`, trained from scratch; B = batch, K = vocabulary size; S = state size: the
concatenated ``state_keys``, by default joint positions + gripper opening (J+1) and the tool pose (7))::

    image (B, 3, H, W) in [0, 1] ─ conv3x3/2 ─ GN ─ SiLU ─ ... ─ flatten ─ linear ─ SiLU ───┐  (only with a camera)
    state (B, S) ─ (x - mean) / std ─ linear ─ SiLU ───────────────────────────────────────┤
    task (B, 384) MiniLM embedding ─ linear ─ SiLU ────────────────────────────────────────┤
    subtask (B, 384) MiniLM embedding ─ linear ─ SiLU ─────────────────────────────────────┤  (only with ``subtask``)
    elapsed (B,) s in the subtask, clipped to max_elapsed_s, / max_elapsed_s ──────────────┤  (only with ``subtask``)
                                                   MLP (2 hidden layers) ◀────────────────┘
                                                    ├─ linear ─ motion logits (B, K)
                                                    └─ linear ─ done logit (B,): the subtask ends within done_s

Why the subtask: a motion phrase is mostly fixed by which subtask runs, how far into it the robot is and where
the gripper is ("pick up the cup" at 2 s with the gripper open above the table: "move arm down"); the instruction
alone leaves that ambiguous on multi-step tasks. At run time the subtasks come from the grammar planner's plan of
the instruction, and the done head says when to move to the next one (RT-H's own hierarchy, task -> motion, with
the plan step in between).

Files of a trained predictor (``save`` / ``MotionPredictor.load``; never pickle): ``model.safetensors`` (weights and
the state normalisation) and ``config.json`` (:class:`MotionPredictorConfig`, the state size, provenance).

This module holds the predictor's config, network and planner; training (the dataset's frames, the held-out
split, the metrics, on the one training loop) is an application: :mod:`tiers.apps.motion_predictor_training`,
run by ``tiers train --policy motion --dataset DATA --out RUN``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclasses_fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tiers.commands.motion_words import VOCABULARY
from tiers.core.config import Config
from tiers.core.errors import ConfigError, ContractError
from tiers.core.features import CommandSource, CommandStyle, FeatureKey
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.policies.high.grammar_planner import GrammarPlanner
from tiers.services.text_encoder import EMBEDDING_DIM, TextEncoder

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# dataset key -> Observation attribute of the proprioception the predictor may read
STATE_SOURCES = {FeatureKey.STATE.value: "state", FeatureKey.EE_POSE.value: "ee_pose"}


@dataclass
class MotionPredictorConfig(Config):
    """The predictor's inputs, network and runtime behaviour."""

    camera: str | None = None  # camera key read from the dataset and observation.images[<name>]; None: no image
    image_size: tuple[int, int] = (64, 64)  # (H, W) pixels the camera image is resized to (antialiased bilinear)
    channels: tuple[int, ...] = (16, 32, 64, 64)  # conv widths, one stride-2 3x3 conv stage each
    groups: int = 8  # GroupNorm groups in each conv stage (must divide every width)
    state_keys: tuple[str, ...] = (FeatureKey.STATE.value, FeatureKey.EE_POSE.value)  # proprioception read, in order
    state_width: int = 128  # width of the state embedding
    text_width: int = 64  # width of the task (and subtask) embedding (projected from the 384-d MiniLM vector)
    subtask: bool = True  # condition on the current subtask text and the seconds since it began (see the module)
    max_elapsed_s: float = 6.0  # s, the seconds-in-subtask input is clipped here
    done_threshold: float = 0.5  # done-head probability at which a hierarchy moves on to the plan's next subtask
    hidden: int = 256  # width of the fusion MLP
    dropout: float = 0.1  # dropout in the fusion MLP while training
    vocabulary: tuple[str, ...] = VOCABULARY  # the classes: RT-H language motions (tiers.datasets.language_motion)
    override_s: float = 2.0  # s of runtime clock a human motion command overrides the predictions
    min_confidence: float = 0.0  # below this softmax probability the previous motion is kept (0: always switch)

    def __post_init__(self) -> None:
        if self.camera is not None and not self.camera.startswith(f"{FeatureKey.IMAGES.value}."):
            raise ValueError(f"camera must be an {FeatureKey.IMAGES.value}.<name> key, got {self.camera!r}")
        if min(self.image_size) < 2 ** len(self.channels):
            raise ValueError(f"image_size {self.image_size} is too small for {len(self.channels)} stride-2 stages")
        if not self.channels or any(width % self.groups for width in self.channels):
            raise ValueError(f"channels {self.channels} must be non-empty multiples of groups={self.groups}")
        if len(set(self.vocabulary)) != len(self.vocabulary) or len(self.vocabulary) < 2:
            raise ValueError(f"vocabulary must hold at least 2 distinct phrases, got {list(self.vocabulary)}")
        unknown = [key for key in self.state_keys if key not in STATE_SOURCES]
        if not self.state_keys or unknown:
            raise ValueError(
                f"state_keys must be a non-empty subset of {list(STATE_SOURCES)}, got {list(self.state_keys)}"
            )
        if self.max_elapsed_s <= 0:
            raise ValueError(f"max_elapsed_s must be > 0 s, got {self.max_elapsed_s}")
        if not 0.0 < self.done_threshold < 1.0:
            raise ValueError(f"done_threshold must be in (0, 1), got {self.done_threshold}")
        if self.override_s < 0:
            raise ValueError(f"override_s must be >= 0 s, got {self.override_s}")
        if not 0.0 <= self.min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {self.min_confidence}")

    @property
    def camera_name(self) -> str | None:
        """The camera's name in :attr:`Observation.images` ("front"); None without a camera."""
        return None if self.camera is None else self.camera.removeprefix(f"{FeatureKey.IMAGES.value}.")


@dataclass(frozen=True)
class MotionIntervention:
    """One predictor query answered by a person's motion instead of the prediction (RT-H's intervention data).

    A correction in force for ``override_s`` s covers every query in that span (one every ``period_s``), so one
    correction gives a few of these; ``corrected_at`` and ``corrected`` identify the correction.

    Attributes:
        timestamp: s, observation clock of the query.
        corrected: the RT-H phrase the person said (the training label).
        predicted: the phrase the predictor would have emitted from this frame.
        replaced: the command in force when the correction arrived (the prediction it cut short), or None.
        source: who said it (``CommandSource``: human_live, replay, simulated_corrector, ...).
        corrected_at: s, observation clock, when the correction was said.
        said: the words as spoken ("move a bit to the left"), when known.
        instruction: the episode's task text.
        subtask: the subtask being followed (None without ``config.subtask``).
        elapsed: s since that subtask began.
        state: the predictor's ``state_keys`` concatenated, as it read them (S,).
        state_keys: which observation features ``state`` holds, in order.
    """

    timestamp: float
    corrected: str
    predicted: str
    replaced: str | None
    source: str
    corrected_at: float
    said: str
    instruction: str
    subtask: str | None
    elapsed: float
    state: list[float]
    state_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MotionIntervention:
        """The inverse of :meth:`to_dict`.

        Raises:
            ContractError: a field is missing or unknown (the message names them).
        """
        names = {f.name for f in dataclasses_fields(cls)}
        missing = sorted(n for n in names - set(data) if n != "state_keys")
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise ContractError(f"not a motion intervention: missing {missing}, unknown {unknown} in {data}")
        return cls(**data)


# --- the network ------------------------------------------------------------------------------------------------


class MotionClassifier(nn.Module):
    """Logits over the vocabulary from an image, a state and a task embedding (see the module docstring)."""

    state_mean: torch.Tensor  # (S,) buffer: training mean of the concatenated state_keys
    state_std: torch.Tensor  # (S,) buffer: training std of the concatenated state_keys

    def __init__(self, config: MotionPredictorConfig, state_dim: int) -> None:
        super().__init__()
        self.config = config
        self.state_dim = state_dim
        fused = config.state_width + config.text_width
        self.encoder: nn.Module | None = None
        self.image_head: nn.Module | None = None
        if config.camera is not None:
            stages: list[nn.Module] = []
            width = 3
            for channels in config.channels:
                stages += [nn.Conv2d(width, channels, 3, stride=2, padding=1), nn.GroupNorm(config.groups, channels)]
                stages.append(nn.SiLU())
                width = channels
            self.encoder = nn.Sequential(*stages)
            height, breadth = (math.ceil(size / 2 ** len(config.channels)) for size in config.image_size)
            self.image_head = nn.Sequential(nn.Flatten(), nn.Linear(width * height * breadth, config.hidden), nn.SiLU())
            fused += config.hidden
        self.state_head = nn.Sequential(nn.Linear(state_dim, config.state_width), nn.SiLU())
        self.text_head = nn.Sequential(nn.Linear(EMBEDDING_DIM, config.text_width), nn.SiLU())
        self.subtask_head: nn.Module | None = None
        if config.subtask:
            self.subtask_head = nn.Sequential(nn.Linear(EMBEDDING_DIM + 1, config.text_width), nn.SiLU())
            fused += config.text_width
        self.trunk = nn.Sequential(
            nn.Linear(fused, config.hidden),
            nn.SiLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.SiLU(),
        )
        self.classifier = nn.Linear(config.hidden, len(config.vocabulary))
        self.done_head = nn.Linear(config.hidden, 1)
        # state normalisation from the training data's statistics, saved with the weights
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))

    def forward(
        self,
        states: torch.Tensor,
        texts: torch.Tensor,
        *,
        images: torch.Tensor | None = None,
        subtasks: torch.Tensor | None = None,
        elapsed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            states: (B, S) the ``state_keys`` concatenated (joint positions rad, gripper opening m; tool xyz m +
                quaternion wxyz in the base frame).
            texts: (B, 384) task embeddings from :class:`TextEncoder`.
            images: (B, 3, H, W) float in [0, 1], H, W = ``config.image_size``; required with a camera.
            subtasks: (B, 384) embeddings of the current subtask text; required with ``config.subtask``.
            elapsed: (B,) s since the current subtask began; required with ``config.subtask``.

        Returns:
            (B, K) logits over ``config.vocabulary`` and (B,) logits that the subtask ends within the next done_s.
        """
        normalised = (states - self.state_mean) / self.state_std.clamp(min=1e-6)  # (B, S)
        parts = [self.state_head(normalised), self.text_head(texts)]
        if self.encoder is not None and self.image_head is not None:
            if images is None:
                raise ContractError(f"the predictor reads camera {self.config.camera!r}; no images were given")
            parts.append(self.image_head(self.encoder(images * 2.0 - 1.0)))  # (B, hidden)
        if self.subtask_head is not None:
            if subtasks is None or elapsed is None:
                raise ContractError("the predictor is conditioned on the subtask; give subtasks and elapsed")
            clock = elapsed.clamp(0.0, self.config.max_elapsed_s)[:, None] / self.config.max_elapsed_s  # (B, 1)
            parts.append(self.subtask_head(torch.cat([subtasks, clock], dim=-1)))
        hidden = self.trunk(torch.cat(parts, dim=-1))  # (B, hidden)
        return self.classifier(hidden), self.done_head(hidden)[:, 0]


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, h, w) float [0, 1] -> (B, 3, H, W), antialiased bilinear (as the dataset loader resizes)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    from torchvision.transforms import v2

    resized: torch.Tensor = v2.Resize(list(size), interpolation=v2.InterpolationMode.BILINEAR, antialias=True)(images)
    return resized


# --- the predictor as a high tier ---------------------------------------------------------------------------------


class MotionPredictor:
    """A trained :class:`MotionClassifier` as a :class:`~tiers.core.protocols.HighLevelPlanner`.

    ``next_command`` returns the predicted language motion as ``LanguageCommand(style=motion, source=planner)``.
    A human motion (``handle_correction`` with style ``motion``, or ``stop``, or a ``correction`` whose text is a
    phrase of the vocabulary) is returned instead, unchanged (its provenance kept), until ``override_s`` seconds of
    observation time have passed since its timestamp. Other corrections (a new subtask) are not this tier's: they
    are ignored here and handled by the runtime.

    With ``config.subtask`` the predictor follows the grammar planner's plan of the instruction (the whole
    instruction as one subtask where the grammar cannot read it): it conditions on the current subtask and the
    seconds since it began, and moves to the next subtask when the done head says so (``done_threshold``); it stays
    on the last one (the episode's end is the task's success or its time limit, never a guess of this head).

    In a hierarchy (kind ``motion``) the runtime asks for a prediction every ``period_s`` seconds of observation
    time; the low tier, conditioned on the motion phrase, keeps executing the last one in between.

    Motion corrections in a hierarchy (RT-H's intervention mode)::

        runtime.correct("move left")  ->  runtime asks handle_motion_correction("move arm left")  ->  True
        t (s):     c        c+0.5     c+1.0     c+1.5   |  c+2.0 (override_s later)
        emits:     "move arm left" to the low tier ...  |  predictions again
        logged:    one MotionIntervention per query in the span (predicted phrase + inputs), in ``interventions``

    The runtime then starts the phrase as the low tier's command (no IK nudge); every other planner kind leaves
    motion corrections to the runtime's nudge.
    """

    def __init__(
        self,
        model: MotionClassifier,
        *,
        encoder: TextEncoder | None = None,
        device: str | torch.device = "cpu",
        period_s: float = 0.5,
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0 s, got {period_s}")
        self.period_s = period_s  # s between two predictions in a hierarchy (the runtime's planner period)
        self.model = model.eval().to(device)
        self.config = model.config
        self.device = torch.device(device)
        self.encoder = encoder or TextEncoder()
        self._task = torch.zeros(1, EMBEDDING_DIM)
        self.instruction = ""
        self.subtasks: list[str] = []  # the plan being followed (with config.subtask)
        self.step = 0  # index into subtasks of the current one
        self._subtask_started: float | None = None  # observation time the current subtask began
        self._subtask = torch.zeros(1, EMBEDDING_DIM)
        self._override: LanguageCommand | None = None
        self._last: LanguageCommand | None = None
        self._said = ""  # the words of the override in force, as spoken
        self._read: tuple[list[float], float] = ([], 0.0)  # (state (S,), elapsed s) of the latest prediction
        # queries answered by a person's motion, across episodes; whoever logs them drains them
        self.interventions: list[MotionIntervention] = []

    def reset(self, instruction: str) -> None:
        """Start an episode for ``instruction`` (embedded once, planned into subtasks); forget overrides."""
        self.instruction = instruction
        self._task = self.encoder([instruction]).to(self.device)  # (1, 384)
        if self.config.subtask:
            planner = GrammarPlanner()
            planner.reset(instruction)
            self.subtasks = [step.text for step in planner.plan] or [instruction]
        self._start_subtask(0)
        self._override = None
        self._last = None

    @property
    def subtask(self) -> str | None:
        """The subtask being followed (None without ``config.subtask``)."""
        return self.subtasks[self.step] if self.step < len(self.subtasks) else None

    def _start_subtask(self, step: int) -> None:
        self.step = step
        self._subtask_started = None  # set by the first observation of the subtask
        if self.subtask is not None:
            self._subtask = self.encoder([self.subtask]).to(self.device)  # (1, 384)

    @torch.no_grad()
    def predict(self, observation: Observation) -> tuple[dict[str, float], float]:
        """Softmax probability of every phrase and the probability that the current subtask is done.

        Raises:
            ContractError: the observation lacks the camera or its state has another size than in training.
        """
        parts = [
            np.asarray(getattr(observation, STATE_SOURCES[key]), dtype=np.float32) for key in self.config.state_keys
        ]
        state = torch.as_tensor(np.concatenate(parts))[None].to(self.device)  # (1, S)
        if state.shape[1] != self.model.state_dim:
            raise ContractError(
                f"the observation's {list(self.config.state_keys)} have {state.shape[1]} values, the predictor was "
                f"trained on {self.model.state_dim}"
            )
        image = None
        name = self.config.camera_name
        if name is not None:
            if name not in observation.images:
                raise ContractError(
                    f"MotionPredictor reads camera {name!r}; the observation has {sorted(observation.images)}"
                )
            pixels = torch.as_tensor(np.ascontiguousarray(observation.images[name])).permute(2, 0, 1)[None]
            image = resize_images(pixels.float().div(255.0), self.config.image_size).to(self.device)  # (1, 3, H, W)
        if self._subtask_started is None:
            self._subtask_started = observation.timestamp
        elapsed = torch.tensor([observation.timestamp - self._subtask_started], dtype=torch.float32, device=self.device)
        self._read = (state[0].cpu().tolist(), float(elapsed[0]))
        logits, done = self.model(state, self._task, images=image, subtasks=self._subtask, elapsed=elapsed)
        probabilities = logits.softmax(dim=-1)[0].cpu()
        return dict(zip(self.config.vocabulary, probabilities.tolist(), strict=True)), float(done.sigmoid()[0])

    def probabilities(self, observation: Observation) -> dict[str, float]:
        """Softmax probability of every phrase of the vocabulary for ``observation`` (see :meth:`predict`)."""
        return self.predict(observation)[0]

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        """The language motion to execute from ``observation`` (a human override while one is in force)."""
        now = observation.timestamp
        if self._override is not None and now >= self._override.timestamp + self.config.override_s:
            self._override = None
        probabilities, done = self.predict(observation)
        if self.config.subtask and done >= self.config.done_threshold and self.step + 1 < len(self.subtasks):
            self._start_subtask(self.step + 1)
            probabilities, _ = self.predict(observation)
        text = max(probabilities, key=probabilities.__getitem__)
        if self._override is not None:  # the person's motion stands; what it replaces is kept to learn from
            self._log_intervention(self._override, text, now)
            return self._override
        last = self._last
        if last is not None and probabilities[text] < self.config.min_confidence:
            text = last.text  # not confident enough to switch: keep the motion in force
        if last is not None and last.text == text and last.source is CommandSource.PLANNER:
            return last  # the same command goes on (one id per motion segment)
        self._last = LanguageCommand(text, CommandStyle.MOTION, CommandSource.PLANNER, timestamp=now, replaces=last)
        return self._last

    def handle_correction(self, correction: LanguageCommand) -> None:
        """A human motion overrides the predictions for ``override_s`` s from its timestamp (see the class)."""
        is_motion = correction.style in (CommandStyle.MOTION, CommandStyle.STOP)
        if is_motion or (correction.style is CommandStyle.CORRECTION and correction.text in self.config.vocabulary):
            self._override = correction
            self._last = correction
            self._said = ""

    def handle_motion_correction(self, correction: LanguageCommand, said: str = "") -> bool:
        """Take a person's language motion as this tier's command for its span; whether it was taken.

        Taken when ``correction`` is a ``motion`` command whose text is a phrase of the vocabulary (what
        :func:`~tiers.policies.hierarchy.corrections.interpret_correction` makes of "move left", "lower", "close
        the gripper"): it replaces the predictions for ``override_s`` s, or until the next correction, and each
        prediction it replaces is logged in :attr:`interventions`. ``said``: the words as spoken, for the log.
        The runtime executes a taken correction with the low tier, conditioned on the phrase, instead of nudging.
        """
        if correction.style is not CommandStyle.MOTION or correction.text not in self.config.vocabulary:
            return False
        self.handle_correction(correction)
        self._said = said
        return True

    def drain_interventions(self) -> list[MotionIntervention]:
        """The interventions logged since the last call (oldest first), forgotten here."""
        drained, self.interventions = self.interventions, []
        return drained

    def _log_intervention(self, override: LanguageCommand, predicted: str, now: float) -> None:
        state, elapsed = self._read
        self.interventions.append(
            MotionIntervention(
                timestamp=float(now),
                corrected=override.text,
                predicted=predicted,
                replaced=None if override.replaces is None else override.replaces.text,
                source=CommandSource(override.source).value,
                corrected_at=float(override.timestamp),
                said=self._said,
                instruction=self.instruction,
                subtask=self.subtask if self.config.subtask else None,
                elapsed=elapsed,
                state=state,
                state_keys=list(self.config.state_keys),
            )
        )

    # -- files ------------------------------------------------------------------------------------------------

    def save(self, folder: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``folder``; ``extra`` goes into the JSON as is."""
        return save_model(self.model, folder, extra=extra)

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        device: str | torch.device = "cpu",
        encoder: TextEncoder | None = None,
        period_s: float = 0.5,
    ) -> MotionPredictor:
        """A predictor from a folder written by :meth:`save` (or by ``tiers train --policy motion``)."""
        return cls(load_model(folder), encoder=encoder, device=device, period_s=period_s)


def save_model(model: MotionClassifier, folder: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """``folder/model.safetensors`` (weights + state normalisation) and ``folder/config.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}, folder / WEIGHTS_FILE
    )
    document = {"predictor": model.config.to_dict(), "state_dim": model.state_dim, **(extra or {})}
    (folder / CONFIG_FILE).write_text(json.dumps(document, indent=2))
    return folder


def load_model(folder: str | Path) -> MotionClassifier:
    """The :class:`MotionClassifier` saved in ``folder``.

    Raises:
        ContractError: a file is missing, the config does not validate, or the weights do not fit it.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            raise ContractError(f"{folder / name}: not found; is {folder} a motion predictor folder?")
    document = json.loads((folder / CONFIG_FILE).read_text())
    try:
        config = MotionPredictorConfig.from_dict(document["predictor"], source=str(folder / CONFIG_FILE))
        state_dim = int(document["state_dim"])
    except (KeyError, ConfigError) as error:
        raise ContractError(f"{folder / CONFIG_FILE}: not a motion predictor config ({error})") from error
    model = MotionClassifier(config, state_dim)
    try:
        model.load_state_dict(load_file(folder / WEIGHTS_FILE))
    except RuntimeError as error:
        raise ContractError(f"{folder / WEIGHTS_FILE} does not fit {folder / CONFIG_FILE}: {error}") from error
    return model.eval()


# -- the interventions log (written with a corrections dataset, read by tiers improve --motion) -----------------

INTERVENTIONS_FILE = "interventions.jsonl"  # in a corrections dataset folder


def append_interventions(folder: str | Path, interventions: Iterable[MotionIntervention]) -> Path:
    """Append ``interventions`` to ``folder/interventions.jsonl`` (one JSON object a line); returns the file."""
    path = Path(folder) / INTERVENTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as stream:
        for intervention in interventions:
            stream.write(json.dumps(intervention.to_dict()) + "\n")
    return path


def read_interventions(path: str | Path) -> list[MotionIntervention]:
    """The interventions of a log file, or of ``interventions.jsonl`` in a folder, in the order logged.

    Raises:
        ContractError: no such file, or a line that is not an intervention (the message names file and line).
    """
    path = Path(path)
    if path.is_dir():
        path = path / INTERVENTIONS_FILE
    if not path.is_file():
        raise ContractError(f"{path}: no motion interventions log (written by a motion hierarchy's corrections)")
    interventions = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            interventions.append(MotionIntervention.from_dict(json.loads(line)))
        except (json.JSONDecodeError, ContractError) as error:
            raise ContractError(f"{path}:{number}: {error}") from error
    return interventions
