"""Live language corrections (YAY, "Yell At Your Robot") logged as training data in a LeRobotDataset.

While a hierarchy runs, a person (or the benchmark's simulated corrector) may interject at any moment: "stop",
"move arm left", "grasp the handle instead". The runtime hands each correction to :class:`CorrectionsWriter`
together with the frames it records, and the writer keeps two layers of it:

    interjection event     the correction as said: its :class:`~tiers.core.language.LanguageCommand` (text, style,
                           source, timestamp, id) and the chain of commands it replaces, with the frame at which
                           it arrived and the subtask / motion that were in force then;
    intervention span      the robot's behaviour under the correction: frames [start, end) during which it was in
                           force, with the corrected subtask / motion the runtime put in force, and what ended it
                           (the next correction, ``end_intervention()`` when the runtime resumes autonomy, or the
                           end of the episode).

Timeline of one episode (frame f is the observation at t = f / fps and the action taken from it)::

    frame:               0   1   2   3   4   5   6   7   8   9
    interject("stop")            ^ (called after 2 frames were added: arrives at frame 2)
    interject("move arm left")               ^ (arrives at frame 5; closes the "stop" span)
    end_intervention()                               ^ (after 7 frames)
    interjection column  ""  ""  stop ""  ""  move arm left  ""  ""  ""  ""
    active_correction    ""  ""  stop stop stop move arm left, ...    ""  ""  ""
    spans                        [2, 5) stop  [5, 7) move arm left

Storage (a plain LeRobotDataset, written by :class:`~tiers.datasets.recorder.DatasetRecorder`):
    per-frame string columns ``interjection`` (the text of the corrections arriving at that frame, joined with
    " | " when several arrive between two frames; "" otherwise) and ``active_correction`` (the text of the
    correction in force; "" when none), beside the usual ones of :class:`~tiers.datasets.features.DatasetSpec`;
    ``meta/tiers_corrections.jsonl``: one JSON object per event (``"kind": "interjection"``) and per span
    (``"kind": "intervention"``), published in the same atomic commit as the episode it belongs to, so a killed
    run keeps every finished episode with its events and loses only the episode in progress.

Mixing a corrections dataset with the original demonstrations for retraining: :func:`load_mixed_training_dataset`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from tiers.core.config import Config
from tiers.core.errors import ContractError
from tiers.core.features import CommandSource, FeatureKey
from tiers.core.language import LanguageCommand
from tiers.datasets.features import DatasetSpec
from tiers.datasets.loading import DatasetLoadingConfig, Windows, load_training_dataset
from tiers.datasets.recorder import DatasetRecorder, EpisodeRecord

CORRECTIONS_LOG = "meta/tiers_corrections.jsonl"  # the sidecar of events and spans, dataset-relative
INTERJECTION = FeatureKey.INTERJECTION.value
ACTIVE_CORRECTION = FeatureKey.ACTIVE_CORRECTION.value
JOIN = " | "  # separates several corrections arriving between two frames in the interjection column
# who may interject: people, the benchmark's corrector, and corrections replayed from an earlier log
CORRECTION_SOURCES = (CommandSource.HUMAN_LIVE, CommandSource.SIMULATED_CORRECTOR, CommandSource.REPLAY)
# what ended an intervention span
ENDED_BY_CORRECTION = "correction"  # a later correction superseded it
ENDED_BY_RUNTIME = "resolved"  # the runtime resumed autonomous behaviour (end_intervention)
ENDED_BY_EPISODE = "episode_end"  # still in force when the episode ended


@dataclass(frozen=True)
class CorrectionsSpec(DatasetSpec):
    """A :class:`DatasetSpec` with the two per-frame correction columns (strings, like the other language ones)."""

    @classmethod
    def extend(cls, spec: DatasetSpec) -> CorrectionsSpec:
        """The same recording as ``spec`` plus the ``interjection`` and ``active_correction`` columns."""
        return cls(**{name: getattr(spec, name) for name in spec.__dataclass_fields__})

    @property
    def language_keys(self) -> tuple[str, ...]:
        return (*super().language_keys, INTERJECTION, ACTIVE_CORRECTION)


@dataclass(frozen=True)
class InterjectionEvent:
    """One correction as it was said.

    Attributes:
        episode_index: lerobot episode index of the episode it arrived in.
        frame_index: first frame recorded after it arrived (== the episode length when it came after the last one).
        command: the correction, with ``replaces`` relinked to the commands it supersedes (``history()``).
        subtask_before: the ``subtask`` column of the frame before it ("" when it arrived before the first frame).
        motion_before: the ``language_motion`` column of the frame before it (idem).
    """

    episode_index: int
    frame_index: int
    command: LanguageCommand
    subtask_before: str = ""
    motion_before: str = ""

    def to_dict(self) -> dict[str, Any]:
        """One JSON line: the command by value, and every command it replaces by value, newest first."""
        return {
            "kind": "interjection",
            "episode_index": self.episode_index,
            "frame_index": self.frame_index,
            "command": self.command.to_dict(),
            "replaced": [command.to_dict() for command in list(self.command.history())[1:]],
            "subtask_before": self.subtask_before,
            "motion_before": self.motion_before,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InterjectionEvent:
        known: dict[str, LanguageCommand] = {}
        for entry in reversed(data["replaced"]):  # oldest first, so each one's ``replaces`` is already known
            known[entry["id"]] = LanguageCommand.from_dict(entry, known)
        return cls(
            episode_index=int(data["episode_index"]),
            frame_index=int(data["frame_index"]),
            command=LanguageCommand.from_dict(data["command"], known),
            subtask_before=str(data["subtask_before"]),
            motion_before=str(data["motion_before"]),
        )


@dataclass(frozen=True)
class InterventionSpan:
    """Frames ``[start_frame, end_frame)`` of an episode during which one correction was in force.

    Attributes:
        episode_index: lerobot episode index.
        start_frame: the frame the correction arrived at (inclusive).
        end_frame: the first frame after it (exclusive).
        correction_id: ``LanguageCommand.id`` of the correction (its event holds the full command).
        text, style, source: the correction's, repeated for readers of the span alone.
        subtask: the corrected subtask the runtime put in force ("" when the correction left the subtask alone).
        motion: the corrected language motion in force ("" when none was imposed).
        ended_by: "correction", "resolved" or "episode_end" (module constants ``ENDED_BY_*``).
    """

    episode_index: int
    start_frame: int
    end_frame: int
    correction_id: str
    text: str
    style: str
    source: str
    subtask: str = ""
    motion: str = ""
    ended_by: str = ENDED_BY_EPISODE

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "intervention", **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InterventionSpan:
        return cls(**{key: value for key, value in data.items() if key != "kind"})


@dataclass
class CorrectionsLog:
    """Every interjection event and intervention span of a dataset, in recording order."""

    events: list[InterjectionEvent] = field(default_factory=list)
    spans: list[InterventionSpan] = field(default_factory=list)

    def episode(self, index: int) -> tuple[list[InterjectionEvent], list[InterventionSpan]]:
        """The events and spans of one episode."""
        return (
            [event for event in self.events if event.episode_index == index],
            [span for span in self.spans if span.episode_index == index],
        )

    def lines(self) -> str:
        """The JSONL text of the sidecar."""
        rows = [event.to_dict() for event in self.events] + [span.to_dict() for span in self.spans]
        rows.sort(key=lambda row: (row["episode_index"], row.get("frame_index", row.get("start_frame")), row["kind"]))
        return "".join(json.dumps(row) + "\n" for row in rows)


def read_corrections(root: str | Path) -> CorrectionsLog:
    """The events and spans of the committed episodes of the dataset at ``root``.

    Lines of episodes beyond ``meta/info.json``'s ``total_episodes`` are left out: they belong to a commit that a
    kill interrupted (the next writer's ``resume`` rolls it forward and they reappear).

    Raises:
        ContractError: a line is not an event or span (the message names the file and line number).
    """
    root = Path(root)
    path = root / CORRECTIONS_LOG
    log = CorrectionsLog()
    if not path.is_file():
        return log
    info = root / "meta/info.json"
    committed = int(json.loads(info.read_text())["total_episodes"]) if info.is_file() else 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if int(data["episode_index"]) >= committed:
                continue
            if data["kind"] == "interjection":
                log.events.append(InterjectionEvent.from_dict(data))
            elif data["kind"] == "intervention":
                log.spans.append(InterventionSpan.from_dict(data))
            else:
                raise ValueError(f"unknown kind {data['kind']!r}")
        except (ValueError, KeyError, TypeError) as error:
            raise ContractError(f"{path}:{number}: not a correction event or span ({error}): {line[:120]!r}") from error
    return log


@dataclass
class _OpenSpan:
    command: LanguageCommand
    start: int
    subtask: str
    motion: str


class CorrectionsWriter:
    """Records episodes with live corrections into the LeRobotDataset at ``root`` (crash-safe, one commit each).

    writer = CorrectionsWriter(path, DatasetSpec.from_embodiment(embodiment))  # adds the two columns
        spec = writer.spec
    for each control tick:
        for correction in corrections_received_since_last_tick:
            writer.interject(correction, subtask=subtask_in_force, motion=motion_in_force)
        writer.add_frame(spec.frame(observation, action, task=..., subtask=..., language_motion=...))
        if the runtime resumed autonomous behaviour: writer.end_intervention()
    writer.save_episode(EpisodeRecord(..., source="hierarchy name"))
    writer.close()
    """

    def __init__(
        self,
        root: str | Path,
        spec: DatasetSpec,
        *,
        resume: bool = False,
        repo_id: str | None = None,
        image_writer_threads: int = 2,
    ) -> None:
        """
        Args:
            root: dataset folder; created if absent.
            spec: the recording's columns; the two correction columns are added when ``spec`` lacks them.
            resume: append to an existing corrections dataset (an interrupted commit is rolled forward first).
            repo_id, image_writer_threads: as :class:`DatasetRecorder`.

        Raises:
            ContractError: as :class:`DatasetRecorder` (a non-empty folder without ``resume``, other features).
        """
        self.spec = spec if isinstance(spec, CorrectionsSpec) else CorrectionsSpec.extend(spec)
        self.recorder = DatasetRecorder(
            root, self.spec, resume=resume, repo_id=repo_id, image_writer_threads=image_writer_threads
        )
        self.root = self.recorder.root
        self.log = read_corrections(self.root)  # committed episodes' events and spans
        self._reset_episode()

    def _reset_episode(self) -> None:
        self._frames = 0  # frames added to the episode in progress
        self._events: list[InterjectionEvent] = []
        self._spans: list[InterventionSpan] = []
        self._open: _OpenSpan | None = None
        self._arrived: list[str] = []  # texts arrived since the last frame
        self._last_time = float("-inf")
        self._last_language = ("", "")  # (subtask, language motion) of the last frame added

    @property
    def frames(self) -> int:
        """Frames added to the episode in progress."""
        return self._frames

    @property
    def active(self) -> LanguageCommand | None:
        """The correction in force now, if any."""
        return self._open.command if self._open else None

    def interject(self, correction: LanguageCommand, *, subtask: str = "", motion: str = "") -> InterjectionEvent:
        """Log ``correction``, arriving before the next frame; it is in force from that frame on.

        Args:
            correction: the command as said; any style (correction, stop, motion, subtask), a source among
                :data:`CORRECTION_SOURCES`, and a timestamp (s, runtime clock) not earlier than the previous one.
            subtask: the corrected subtask the runtime puts in force because of it ("" if it leaves it alone).
            motion: the corrected language motion in force because of it ("" if none).

        Returns:
            The event as it will be stored (its ``episode_index`` is that of the episode once saved).

        Raises:
            ContractError: a source that is not a live corrector, or a timestamp going back in time.
        """
        if correction.source not in CORRECTION_SOURCES:
            raise ContractError(
                f"correction {correction.text!r} has source {correction.source.value!r}; live corrections come from "
                f"{[source.value for source in CORRECTION_SOURCES]}"
            )
        if correction.timestamp < self._last_time:
            raise ContractError(
                f"correction {correction.text!r} at t={correction.timestamp} s arrives before the previous one "
                f"(t={self._last_time} s)"
            )
        self._last_time = correction.timestamp
        self._close(ENDED_BY_CORRECTION)
        event = InterjectionEvent(
            episode_index=self.recorder.num_episodes,
            frame_index=self._frames,
            command=correction,
            subtask_before=self._last_language[0],
            motion_before=self._last_language[1],
        )
        self._events.append(event)
        self._arrived.append(correction.text)
        self._open = _OpenSpan(command=correction, start=self._frames, subtask=subtask, motion=motion)
        return event

    def end_intervention(self) -> None:
        """The correction in force stops governing behaviour from the next frame on (no-op when none is)."""
        self._close(ENDED_BY_RUNTIME)

    def _close(self, ended_by: str) -> None:
        if self._open is None:
            return
        opened, self._open = self._open, None
        if self._frames == opened.start:
            return  # superseded before any frame: the event stays, an empty span says nothing
        command = opened.command
        self._spans.append(
            InterventionSpan(
                episode_index=self.recorder.num_episodes,
                start_frame=opened.start,
                end_frame=self._frames,
                correction_id=command.id,
                text=command.text,
                style=command.style.value,
                source=command.source.value,
                subtask=opened.subtask,
                motion=opened.motion,
                ended_by=ended_by,
            )
        )

    def add_frame(self, frame: dict[str, Any]) -> None:
        """Add one :meth:`DatasetSpec.frame` dict; the two correction columns are filled here."""
        frame = dict(frame)
        frame[INTERJECTION] = JOIN.join(self._arrived)
        frame[ACTIVE_CORRECTION] = self._open.command.text if self._open else ""
        self.recorder.add_frame(frame)
        subtask, motion = frame.get(FeatureKey.SUBTASK.value, ""), frame.get(FeatureKey.LANGUAGE_MOTION.value, "")
        self._last_language = (str(subtask), str(motion))
        self._arrived = []
        self._frames += 1

    def save_episode(self, record: EpisodeRecord) -> int:
        """Close the span in force, commit the episode with its events and spans; returns its episode index."""
        self._close(ENDED_BY_EPISODE)
        index = self.recorder.num_episodes
        log = CorrectionsLog(events=[*self.log.events, *self._events], spans=[*self.log.spans, *self._spans])
        record.extra = {**record.extra, "interjections": len(self._events), "intervention_frames": self._span_frames()}
        saved = self.recorder.save_episode(record, sidecars={CORRECTIONS_LOG: log.lines()})
        if saved != index:  # the recorder numbers episodes itself; events were stamped with the same count
            raise ContractError(f"{self.root}: episode saved as {saved}, its corrections were logged for {index}")
        self.log = log
        self._reset_episode()
        return index

    def _span_frames(self) -> int:
        return sum(span.frames for span in self._spans)

    def discard_episode(self, record: EpisodeRecord | None = None) -> None:
        """Drop the episode in progress and its corrections (``record`` is logged as a discarded attempt)."""
        self.recorder.discard_episode(record)
        self._reset_episode()

    def close(self) -> None:
        """Drop an unsaved episode; committed episodes need nothing more."""
        self.recorder.close()
        self._reset_episode()

    def __enter__(self) -> CorrectionsWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


# --- mixing corrections with the original demonstrations for retraining -------------------------------------------


@dataclass
class CorrectionsMixConfig(Config):
    """How a corrections dataset is mixed with the original demonstrations (YAY's retraining on interventions)."""

    corrections_fraction: float = 0.5  # expected share of samples drawn from the corrections dataset, in [0, 1]
    interventions_only: bool = True  # draw correction samples only from frames inside intervention spans
    num_samples: int = 0  # samples per epoch of the sampler; 0: the frames of both datasets together
    seed: int = 0  # the sampler's random generator seed

    def __post_init__(self) -> None:
        if not 0.0 <= self.corrections_fraction <= 1.0:
            raise ValueError(f"corrections_fraction must be in [0, 1], got {self.corrections_fraction}")
        if self.num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {self.num_samples}")


class MixedWindows(torch.utils.data.Dataset[dict[str, Any]]):
    """The original's training windows followed by the corrections dataset's, with one set of keys.

    Item ``i < len(original)`` is the original's item ``i``; the others are corrections items. Every item has the
    keys both datasets share, the two correction columns ("" for original frames) and ``source_dataset``
    (0: original, 1: corrections), since episode indices restart in each dataset.
    """

    def __init__(self, original: Windows, corrections: Windows) -> None:
        self.parts = (original, corrections)
        if len(original) == 0 or len(corrections) == 0:
            raise ContractError("cannot mix an empty dataset")
        shared = set(original[0]) & set(corrections[0])
        self.keys = shared | {INTERJECTION, ACTIVE_CORRECTION}

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        part = int(index >= len(self.parts[0]))
        item = self.parts[part][index - part * len(self.parts[0])]
        out = {key: item.get(key, "") for key in self.keys}
        out["source_dataset"] = torch.tensor(part)
        return out


def load_mixed_training_dataset(
    original: DatasetLoadingConfig, corrections: DatasetLoadingConfig, mix: CorrectionsMixConfig
) -> tuple[MixedWindows, torch.utils.data.WeightedRandomSampler, dict[str, dict[str, torch.Tensor]]]:
    """Training windows over both datasets, a sampler drawing ``mix.corrections_fraction`` of its samples from the
    corrections, and normalisation statistics of the union.

    Both configs should name the same windows (``n_obs_steps``, ``horizon``, cameras, image size) in tiers keys;
    each has its own ``feature_map``. Use the sampler with a DataLoader: ``DataLoader(windows, sampler=sampler)``.

    Returns:
        windows: :class:`MixedWindows`.
        sampler: with replacement; original frames are drawn uniformly, correction frames uniformly among the
            frames of intervention spans (``interventions_only``) or among all of them.
        stats: tiers key -> {"mean", "std", "min", "max"} over the frames of both datasets (per-dataset statistics
            pooled by frame counts), for the keys both datasets have statistics for.

    Raises:
        ContractError: the two configs load different windows, or ``interventions_only`` and the corrections dataset
            has no intervention span (the message names its folder).
    """
    for name in ("n_obs_steps", "horizon", "cameras", "image_size"):
        if getattr(original, name) != getattr(corrections, name):
            raise ContractError(
                f"original and corrections configs load different windows: {name} is {getattr(original, name)!r} "
                f"and {getattr(corrections, name)!r}"
            )
    first, first_stats = load_training_dataset(original)
    second, second_stats = load_training_dataset(corrections)
    windows = MixedWindows(first, second)
    weights = torch.full((len(windows),), (1.0 - mix.corrections_fraction) / len(first), dtype=torch.float64)
    if mix.interventions_only:
        chosen = intervention_frame_mask(corrections.root, second)
        if not bool(chosen.any()):
            raise ContractError(f"{corrections.root}: no intervention span to draw correction samples from")
    else:
        chosen = torch.ones(len(second), dtype=torch.bool)
    weights[len(first) :] = torch.where(chosen, mix.corrections_fraction / int(chosen.sum()), 0.0)
    generator = torch.Generator().manual_seed(mix.seed)
    sampler = torch.utils.data.WeightedRandomSampler(
        weights.tolist(), num_samples=mix.num_samples or len(windows), replacement=True, generator=generator
    )
    stats = pool_stats([(first_stats, len(first)), (second_stats, len(second))])
    return windows, sampler, stats


def intervention_frame_mask(root: str | Path, windows: Windows) -> torch.Tensor:
    """(N,) bool over the dataset's frames (lerobot's global ``index`` order): True inside an intervention span."""
    episodes = windows.dataset.meta.episodes
    starts = {int(e): int(s) for e, s in zip(episodes["episode_index"], episodes["dataset_from_index"], strict=True)}
    mask = torch.zeros(len(windows), dtype=torch.bool)
    for span in read_corrections(root).spans:
        offset = starts[span.episode_index]
        mask[offset + span.start_frame : offset + span.end_frame] = True
    return mask


def pool_stats(
    parts: Iterable[tuple[Mapping[str, Mapping[str, torch.Tensor]], int]],
) -> dict[str, dict[str, torch.Tensor]]:
    """Statistics of the union of datasets from each one's (stats, frame count), for the keys all of them have.

    mean = Σ n_i m_i / N;  std = sqrt(Σ n_i (s_i² + m_i²) / N − mean²);  min/max elementwise.
    """
    parts = list(parts)
    keys = set.intersection(*(set(stats) for stats, _ in parts))
    total = sum(count for _, count in parts)
    pooled: dict[str, dict[str, torch.Tensor]] = {}
    for key in sorted(keys):
        mean = sum(stats[key]["mean"] * count for stats, count in parts) / total
        second = sum((stats[key]["std"] ** 2 + stats[key]["mean"] ** 2) * count for stats, count in parts) / total
        pooled[key] = {
            "mean": torch.as_tensor(mean),
            "std": torch.sqrt(torch.clamp(torch.as_tensor(second - mean**2), min=0.0)),
            "min": torch.stack([stats[key]["min"] for stats, _ in parts]).amin(dim=0),
            "max": torch.stack([stats[key]["max"] for stats, _ in parts]).amax(dim=0),
        }
    return pooled
