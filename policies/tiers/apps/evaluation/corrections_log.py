"""Log a hierarchy's kitchen episodes with their live corrections into a corrections dataset (YAY data).

:class:`EpisodeCorrectionsLog` observes the ticks of :func:`~.hierarchy_episode.run_hierarchy_episode`:
every tick it hands the runtime's new correction events to :class:`tiers.datasets.corrections.CorrectionsWriter`
(an interjection event, with the subtask / language motion the runtime put in force because of it) and adds the
frame (the observation and the action taken from it, with the task, the subtask and the language motion in
force). A motion nudge ends its intervention span when the runtime hands control back to the low tier; stop,
subtask and resume corrections govern until the next correction or the end of the episode. A planner that
keeps its own intervention records (the RT-H motion planner: the prediction each motion correction replaced,
with its inputs) has them appended to ``interventions.jsonl`` in the same folder, for ``tiers improve
--motion``.
"""

from __future__ import annotations

from pathlib import Path

from tiers.apps.evaluation.report import EpisodeResult
from tiers.core.features import CommandStyle
from tiers.core.observation import Observation
from tiers.datasets.corrections import CorrectionsWriter
from tiers.datasets.features import DatasetSpec
from tiers.datasets.recorder import EpisodeRecord
from tiers.policies.hierarchy.runtime import HierarchyRuntime, RuntimeStep
from tiers.policies.high.motion_predictor import append_interventions


class EpisodeCorrectionsLog:
    """Feeds one runtime's ticks to a :class:`CorrectionsWriter`; see the module docstring."""

    def __init__(self, root: str | Path, runtime: HierarchyRuntime, *, source: str, cameras: bool = False) -> None:
        """
        Args:
            root: the corrections dataset folder (created, or appended to when it exists).
            runtime: the hierarchy whose events are logged.
            source: who acted, for the episode log (the hierarchy's name).
            cameras: record the robot's cameras too (renders every tick: slower).
        """
        root = Path(root)
        self.root = root
        spec = DatasetSpec.from_embodiment(runtime.embodiment, cameras=cameras, depth=False, expert_motion=False)
        resume = (root / "meta" / "info.json").is_file()
        self.writer = CorrectionsWriter(root, spec, resume=resume)
        self.runtime = runtime
        self.source = source
        self.cameras = cameras
        self._seen = 0  # runtime events already handed to the writer
        self._nudging = False

    def start_episode(self) -> None:
        """Call after ``runtime.reset``: the runtime's event list starts afresh."""
        self._seen = 0
        self._nudging = False

    def __call__(self, observation: Observation, step: RuntimeStep, said: str | None) -> None:
        """The tick observer: log new corrections, then the frame (observation + action taken)."""
        runtime = self.runtime
        events = runtime.events
        for event in events[self._seen :]:
            if event.kind == "correction" and event.command is not None:
                command = event.command
                subtask = runtime.command.text if runtime.command is not None else ""
                if command.style is CommandStyle.SUBTASK:
                    subtask = command.text
                motion = command.text if command.style is CommandStyle.MOTION else ""
                self.writer.interject(command, subtask=subtask, motion=motion)
                self._nudging = command.style is CommandStyle.MOTION
        self._seen = len(events)
        if self._nudging and runtime.language_motion is None:  # the nudge is over: autonomy resumed
            self.writer.end_intervention()
            self._nudging = False
        in_force = runtime.command.text if runtime.command is not None else ""
        frame = self.writer.spec.frame(
            observation,
            step.action,
            task=runtime.instruction,
            subtask=in_force,
            language_motion=runtime.language_motion or "",
        )
        self.writer.add_frame(frame)

    def end_episode(self, result: EpisodeResult) -> int:
        """Commit the episode; returns its index in the dataset."""
        record = EpisodeRecord(
            task_id=result.task_id,
            instruction=result.instruction,
            seed=result.seed,
            success=result.success,
            frames=self.writer.frames,
            reason=result.reason,
            source=self.source,
            wall_time=result.wall_time,
        )
        index = self.writer.save_episode(record)
        drain = getattr(self.runtime.planner, "drain_interventions", None)
        if callable(drain) and (interventions := drain()):
            append_interventions(self.root, interventions)
        return index

    def close(self) -> None:
        self.writer.close()
