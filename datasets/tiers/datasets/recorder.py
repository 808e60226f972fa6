"""DatasetRecorder: episodes into a LeRobotDataset v3 through lerobot's own writer, one crash-safe commit each.

    recorder = DatasetRecorder(path, DatasetSpec.from_embodiment(embodiment), resume=False)
    for each step:  recorder.add_frame(spec.frame(observation, action, task=..., subtask=..., language_motion=...))
    recorder.save_episode(EpisodeRecord(...))     # or recorder.discard_episode(EpisodeRecord(...))
    recorder.close()

Every saved episode is published atomically (see :mod:`tiers.datasets.staging`): a recording killed at any
moment loses at most the episode in progress, and the dataset at ``path`` opens with ``LeRobotDataset``
without repair. The layout is lerobot's own resume layout: one data, episode-metadata and video file per
episode (compact it with lerobot's dataset tools when that matters).

Per-episode metadata lerobot has no column for lives in ``meta/tiers_episodes.jsonl``: one JSON object per
recorded attempt (task id, instruction, seed, success, reason, frames, wall time) with ``episode_index`` set
for kept episodes and null for discarded ones (e.g. failures when only successes are kept).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from tiers.core.errors import ContractError
from tiers.datasets.features import DatasetSpec, schema_differences
from tiers.datasets.staging import Recovery, commit, recover, remove_work_dir, stage_metadata, staging_dir, work_dir

EPISODES_LOG = Path("meta/tiers_episodes.jsonl")


@dataclass
class EpisodeRecord:
    """What tiers records about one attempt, beyond lerobot's columns (one line of ``tiers_episodes.jsonl``)."""

    task_id: str
    instruction: str
    seed: int
    success: bool
    frames: int
    reason: str = ""  # why it failed ("" on success)
    source: str = "scripted_expert"  # who acted: scripted_expert, policy name, teleop
    attempt: int = 0  # attempt number in the recording (seeds and tasks derive from it)
    wall_time: float = 0.0  # s spent simulating and writing the attempt
    episode_index: int | None = None  # lerobot episode index once kept; None for a discarded attempt
    extra: dict[str, Any] = field(default_factory=dict)


def read_episode_log(root: Path) -> list[EpisodeRecord]:
    """The records of ``root/meta/tiers_episodes.jsonl`` (empty when there is none)."""
    path = Path(root) / EPISODES_LOG
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(EpisodeRecord(**json.loads(line)))
        except (ValueError, TypeError) as error:
            raise ContractError(f"{path}:{number}: not an episode record ({error}): {line[:120]!r}") from error
    return records


def _write_log(path: Path, records: list[EpisodeRecord]) -> None:
    """Replace ``path`` whole (write a sibling, then rename): never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(json.dumps(asdict(record)) + "\n" for record in records))
    os.replace(temporary, path)


class DatasetRecorder:
    """Appends episodes to the LeRobotDataset at ``root``, committing each one atomically."""

    def __init__(
        self,
        root: str | Path,
        spec: DatasetSpec,
        *,
        resume: bool = False,
        repo_id: str | None = None,
        image_writer_threads: int = 2,
    ):
        """
        Args:
            root: dataset folder; created if absent.
            spec: what each frame holds; on resume it must match the dataset's features.
            resume: append to an existing dataset (finishing an interrupted commit, dropping an unfinished episode).
            repo_id: lerobot's repo id (only a label offline); default ``local/<folder name>``.
            image_writer_threads: threads writing camera frames to disk while the episode runs.

        Raises:
            ContractError: ``root`` holds files and ``resume`` is False; or the features differ from ``spec``.
        """
        self.root = Path(root)
        self.spec = spec
        self.repo_id = repo_id or f"local/{self.root.name}"
        self._threads = image_writer_threads
        self.recovery = Recovery(rolled_forward=0, discarded_staging=False)
        if self.root.exists() and any(self.root.iterdir()) and not resume:
            raise ContractError(f"{self.root} already exists and is not empty; resume to append to it")
        if resume and self.root.exists():
            self.recovery = recover(self.root)
            self._check_schema()
        work_dir(self.root).mkdir(parents=True, exist_ok=True)
        self._dataset: Any = None  # the staged LeRobotDataset of the episode in progress
        self._log = read_episode_log(self.root)

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def num_episodes(self) -> int:
        """Committed episodes."""
        return int(self._info().get("total_episodes", 0))

    @property
    def num_frames(self) -> int:
        """Committed frames."""
        return int(self._info().get("total_frames", 0))

    @property
    def records(self) -> list[EpisodeRecord]:
        """Every attempt logged so far (kept and discarded)."""
        return list(self._log)

    def _info(self) -> dict[str, Any]:
        path = self.root / "meta/info.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _check_schema(self) -> None:
        info = self._info()
        if not info:
            return
        problems = schema_differences(self.spec.features(), info["features"])
        if info.get("fps") != self.spec.fps:
            problems.append(f"fps is {info.get('fps')}, expected {self.spec.fps}")
        if problems:
            raise ContractError(f"{self.root} does not fit this recording: " + "; ".join(problems))

    # -- recording ----------------------------------------------------------------------------------------------

    def add_frame(self, frame: dict[str, Any]) -> None:
        """Add one frame (a :meth:`DatasetSpec.frame` dict) to the episode in progress (started on the first)."""
        if self._dataset is None:
            self._dataset = self._begin()
        self._dataset.add_frame(frame)

    def _begin(self) -> Any:
        from lerobot.configs import DepthEncoderConfig
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        # lerobot's lossless 12-bit HEVC depth defaults, with x265's per-video banner silenced
        depth = DepthEncoderConfig(extra_options={"x265-params": "lossless=1:log-level=error"})
        threads = self._threads if self.spec.cameras else 0
        staging = staging_dir(self.root)
        if stage_metadata(self.root, staging):
            return LeRobotDataset.resume(
                self.repo_id, root=staging, image_writer_threads=threads, depth_encoder=depth, video_backend="pyav"
            )
        staging.parent.mkdir(parents=True, exist_ok=True)
        return LeRobotDataset.create(
            self.repo_id,
            fps=self.spec.fps,
            features=self.spec.features(),
            root=staging,
            robot_type=self.spec.robot_type,
            use_videos=self.spec.use_videos,
            image_writer_threads=threads,
            depth_encoder=depth,
            video_backend="pyav",  # the decoder used when reading back; skips probing torchcodec
        )

    def save_episode(self, record: EpisodeRecord, *, sidecars: Mapping[str, str] | None = None) -> int:
        """Encode and commit the episode in progress; returns its episode index.

        Args:
            record: what tiers logs about the attempt (``tiers_episodes.jsonl``).
            sidecars: extra whole files to publish in the same atomic commit as the episode, as dataset-relative
                path -> text (e.g. ``meta/tiers_corrections.jsonl``); each replaces its previous version whole.

        Raises:
            ContractError: no frame was added, or ``record.frames`` differs from the frames added.
        """
        dataset = self._dataset
        if dataset is None or not dataset.has_pending_frames():
            raise ContractError("save_episode() with no frame added")
        pending = int(dataset.writer.episode_buffer["size"])
        if record.frames != pending:
            raise ContractError(f"EpisodeRecord.frames is {record.frames}, but {pending} frames were added")
        from lerobot.utils.utils import SuppressProgressBars

        index = self.num_episodes
        with SuppressProgressBars():  # Hugging Face datasets' per-episode "Map" bars
            # sequential encoding: a process pool forked from a process holding a GL context buys little on few cores
            dataset.save_episode(parallel_encoding=False)
            dataset.finalize()
        self._dataset = None
        record.episode_index = index
        staging = staging_dir(self.root)
        _write_log(staging / EPISODES_LOG, [*self._log, record])
        for relative, text in (sidecars or {}).items():
            if not relative.startswith("meta/tiers_"):  # lerobot's own files are never written by hand
                raise ContractError(f"sidecar {relative!r} must be a meta/tiers_* file of the dataset")
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        commit(self.root, staging)
        self._log.append(record)
        return index

    def discard_episode(self, record: EpisodeRecord | None = None) -> None:
        """Drop the episode in progress; log ``record`` (as discarded) when given."""
        self._drop_staging()
        if record is not None:
            record.episode_index = None
            self._log.append(record)
            _write_log(self.root / EPISODES_LOG, self._log)

    def _drop_staging(self) -> None:
        if self._dataset is not None:
            if self._dataset.has_pending_frames():
                self._dataset.clear_episode_buffer()
            self._dataset.finalize()
            self._dataset = None
        recover(self.root)  # deletes the staging folder

    def close(self) -> None:
        """Drop an unsaved episode and remove tiers' work folder. Committed episodes need nothing more."""
        self._drop_staging()
        remove_work_dir(self.root)

    def __enter__(self) -> DatasetRecorder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def dataset_size_bytes(root: str | Path) -> int:
    """Bytes of every file under ``root`` (the dataset's size on disk, apparent sizes)."""
    return sum(path.stat().st_size for path in Path(root).rglob("*") if path.is_file())
