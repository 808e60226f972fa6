"""Evaluation results: one record per episode, summaries per task family and split, files people read.

``EvalReport.write(folder)`` produces:
    results.json          every episode and the summary (machine-readable, the source of truth)
    summary.md            success table per task family and split (paste into a paper or a PR)
    success_by_family.png bar chart of the same table

Every success rate comes with its 95 % Wilson score interval (:func:`wilson_interval`): with the few dozen
episodes an evaluation runs, a rate alone hides how little it pins down (3/6 is anywhere in 19–81 %). An
episode that raised is a failure with its error (:class:`EpisodeError`) and is counted apart as ``errored``,
so a crash is never mistaken for a policy that tried and failed.
"""

from __future__ import annotations

import json
import math
import traceback
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from tiers.sim.kitchen.tasks import Task


class EvalMode(StrEnum):
    """Kitchen-R's evaluation modes."""

    PLANNER = "planner"  # a planner's plan against the gold plan; nothing is executed
    CONTROL = "control"  # the gold plan is given; a low-level policy (or the expert) executes it
    INTEGRATED = "integrated"  # planner and policy together, judged by the task's success predicate
    CORRECTIONS = "corrections"  # a whole hierarchy with a simulated person correcting it in plain language


Z_95 = 1.959963984540054  # standard-normal quantile of a two-sided 95 % interval


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a success rate, (low, high) in [0, 1]; (0, 1) without trials.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0/n or n/n.
    """
    if trials <= 0:
        return 0.0, 1.0
    rate = successes / trials
    z2 = z * z
    centre = (rate + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z * math.sqrt(rate * (1 - rate) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EpisodeError:
    """What an episode raised: ``type`` (the exception's class), ``message``, ``where`` (``file:line in
    function`` of the raising frame) and the ``traceback`` text."""

    type: str
    message: str
    where: str
    traceback: str = ""

    @classmethod
    def from_exception(cls, error: BaseException) -> EpisodeError:
        """The error ``error`` describes; ``where`` is its innermost traceback frame (the one that raised)."""
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{_short_path(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}" if frames else "?"
        text = "".join(traceback.format_exception(error))
        return cls(type(error).__name__, str(error), where, text[-TRACEBACK_CHARS:])


TRACEBACK_CHARS = 6000  # of an episode's traceback kept in results.json (the innermost frames)


def _short_path(filename: str) -> str:
    """``.../policies/tiers/policies/mid/paths.py`` -> ``tiers/policies/mid/paths.py`` (the module's path)."""
    marker = filename.rfind("/tiers/")
    return filename[marker + 1 :] if marker >= 0 else filename


@dataclass
class EpisodeResult:
    """The outcome of one episode.

    Attributes:
        task_id: the task's id in the instruction set.
        family: the task family ("pick_place", "open", ...).
        split: "train" or "held_out".
        instruction: the instruction text given.
        seed: the seed of the initial state.
        success: whether the episode met its criterion (success predicate, or exact plan match in planner mode).
        reason: short human-readable explanation of a failure ("" on success).
        steps: control steps taken (0 in planner mode).
        sim_time: s of simulated time.
        wall_time: s of wall-clock time.
        extra: mode-specific metrics (e.g. "step_accuracy" in planner mode, "subtasks_done").
        error: what the episode raised, None when it ran to its end (an errored episode is a failure).
    """

    task_id: str
    family: str
    split: str
    instruction: str
    seed: int
    success: bool
    reason: str = ""
    steps: int = 0
    sim_time: float = 0.0
    wall_time: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    error: EpisodeError | None = None

    @classmethod
    def of_task(cls, task: Task, *, seed: int, success: bool, **outcome: Any) -> EpisodeResult:
        """The result of an episode of ``task`` (its id, family, split and instruction filled in); ``outcome``
        takes the remaining fields (reason, steps, sim_time, wall_time, extra, error)."""
        split = "held_out" if task.held_out else "train"
        return cls(task.id, task.family.value, split, task.instruction, seed, success, **outcome)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeResult:
        """The inverse of ``dataclasses.asdict`` (an entry of ``results.json``'s ``episodes``)."""
        error = data.get("error")
        return cls(**{**data, "error": None if error is None else EpisodeError(**error)})


@dataclass
class GroupSummary:
    """Success statistics of a group of episodes."""

    episodes: int
    successes: int
    mean_extra: dict[str, float]  # mean of each numeric metric in EpisodeResult.extra
    errored: int = 0  # episodes that raised (each also a failure)

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def success_interval(self) -> tuple[float, float]:
        """95 % Wilson score interval of :attr:`success_rate`."""
        return wilson_interval(self.successes, self.episodes)

    def success_text(self) -> str:
        """``"50.0% [18.8, 81.2]"``: the rate and its 95 % interval, in percent."""
        low, high = self.success_interval
        return f"{100 * self.success_rate:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"


def summarise(episodes: Iterable[EpisodeResult]) -> GroupSummary:
    episodes = list(episodes)
    numeric: dict[str, list[float]] = defaultdict(list)
    for episode in episodes:
        for key, value in episode.extra.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                numeric[key].append(float(value))
    return GroupSummary(
        episodes=len(episodes),
        successes=sum(episode.success for episode in episodes),
        mean_extra={key: sum(values) / len(values) for key, values in sorted(numeric.items())},
        errored=sum(episode.error is not None for episode in episodes),
    )


@dataclass
class EvalReport:
    """All episodes of one evaluation run and what was evaluated."""

    mode: EvalMode
    agent: str  # what acted or planned, e.g. "expert", "planner=gold_echo", "beso@checkpoints/x"
    episodes: list[EpisodeResult]
    settings: dict[str, Any] = field(default_factory=dict)  # the command's options, for reproduction

    def overall(self) -> GroupSummary:
        return summarise(self.episodes)

    def by(self, key: str) -> dict[str, GroupSummary]:
        """Summaries grouped by an EpisodeResult attribute ("family", "split"), in sorted order."""
        groups: dict[str, list[EpisodeResult]] = defaultdict(list)
        for episode in self.episodes:
            groups[str(getattr(episode, key))].append(episode)
        return {name: summarise(group) for name, group in sorted(groups.items())}

    def to_dict(self) -> dict[str, Any]:
        def summary(group: GroupSummary) -> dict[str, Any]:
            low, high = group.success_interval
            return {**asdict(group), "success_rate": group.success_rate, "success_ci95": [low, high]}

        return {
            "mode": self.mode.value,
            "agent": self.agent,
            "settings": self.settings,
            "summary": {
                "overall": summary(self.overall()),
                "by_family": {name: summary(group) for name, group in self.by("family").items()},
                "by_split": {name: summary(group) for name, group in self.by("split").items()},
            },
            "episodes": [asdict(episode) for episode in self.episodes],
        }

    def markdown(self) -> str:
        """Success table per family, then per split, then overall (rates with 95 % Wilson intervals)."""
        extras = sorted(self.overall().mean_extra)
        header = ["group", "episodes", "success [95% CI]", "errored", *extras]
        lines = [
            f"# {self.mode.value} evaluation: {self.agent}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        rows = [*self.by("family").items(), *((f"split: {k}", v) for k, v in self.by("split").items())]
        rows.append(("**overall**", self.overall()))
        for name, group in rows:
            cells = [name, str(group.episodes), group.success_text(), str(group.errored)]
            cells += [f"{group.mean_extra[key]:.3f}" if key in group.mean_extra else "" for key in extras]
            lines.append("| " + " | ".join(cells) + " |")
        errored = [episode for episode in self.episodes if episode.error is not None]
        if errored:
            lines += ["", f"## errored ({len(errored)})", ""]
            lines += [
                f"- `{e.task_id}` (seed {e.seed}): {e.error.type}: {e.error.message} at {e.error.where}"
                for e in errored[:50]
                if e.error is not None
            ]
        failures = [episode for episode in self.episodes if not episode.success and episode.error is None]
        if failures:
            lines += ["", f"## failures ({len(failures)})", ""]
            lines += [f"- `{e.task_id}` (seed {e.seed}) {e.instruction!r}: {e.reason}" for e in failures[:50]]
            if len(failures) > 50:
                lines.append(f"- … and {len(failures) - 50} more in results.json")
        return "\n".join(lines) + "\n"

    def plot(self, path: Path) -> None:
        """Bar chart of the success rate per task family, with 95 % Wilson intervals as error bars."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        families = self.by("family")
        fig, ax = plt.subplots(figsize=(max(5.5, 0.8 * len(families) + 2), 3.5))
        names = list(families)
        rates = [100 * families[name].success_rate for name in names]
        intervals = [families[name].success_interval for name in names]
        # clipped at 0: at 0/n or n/n the interval's end equals the rate only up to rounding (matplotlib refuses < 0)
        below = [max(0.0, rate - 100 * low) for rate, (low, _) in zip(rates, intervals, strict=True)]
        above = [max(0.0, 100 * high - rate) for rate, (_, high) in zip(rates, intervals, strict=True)]
        bars = ax.bar(names, rates, color="#4c72b0", yerr=[below, above], capsize=3, ecolor="#555555")
        for bar, name in zip(bars, names, strict=True):
            ax.annotate(f"n={families[name].episodes}", (bar.get_x() + bar.get_width() / 2, 1), ha="center", fontsize=7)
        ax.set_ylim(0, 105)
        ax.set_ylabel("success rate (%, 95% CI)")
        ax.set_title(f"{self.mode.value}: {self.agent}\noverall {100 * self.overall().success_rate:.1f}%", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    def write(self, folder: str | Path) -> Path:
        """Write results.json, summary.md and success_by_family.png into ``folder``; returns it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(self.to_dict(), indent=2))
        (folder / "summary.md").write_text(self.markdown())
        self.plot(folder / "success_by_family.png")
        return folder
