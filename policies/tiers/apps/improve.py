"""``tiers improve``: retrain a hierarchy's learned low tier on its demonstrations plus logged corrections (YAY).

Corrections logged by ``tiers run --log`` or ``tiers eval --mode corrections --corrections-log`` are episodes
of the hierarchy acting under people's corrections: every frame holds what the robot did, with the subtask and
language motion in force. Retraining mixes them with the original demonstrations at a configurable share
(:class:`tiers.datasets.corrections.CorrectionsMixConfig`, frames inside intervention spans by default),
fine-tuning the low tier from its checkpoint with its own normalisation statistics.

The measurement (``--curve``): for each count k of corrections episodes, the low tier is fine-tuned on the
original data plus the first k episodes of the log, and the hierarchy is evaluated in integrated mode on the
tasks of the log, the ones where the base hierarchy needed correcting, from seeds the log never used (checked:
an overlap is refused), and on ``control_tasks``, tasks nobody corrected, to catch forgetting. k = 0 is the
base hierarchy. Each rate comes with its Wilson 95 % interval.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tiers.apps.evaluation.parallel import run_jobs
from tiers.apps.evaluation.report import EvalMode, wilson_interval
from tiers.apps.evaluation.runner import make_runner
from tiers.apps.evaluation.settings import EpisodeJob, EvalSettings
from tiers.apps.training import generative_loading_config, with_hindsight
from tiers.core.config import Config
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError, ContractError
from tiers.core.locations import preset_path
from tiers.datasets.corrections import intervention_frame_mask, read_corrections
from tiers.datasets.loading import load_training_dataset
from tiers.datasets.recorder import read_episode_log
from tiers.policies.hierarchy.config import HierarchyConfig
from tiers.policies.hierarchy.registry import HierarchyContext
from tiers.policies.low.checkpoint import load_policy
from tiers.services.training import TrainerConfig, train


@dataclass
class ImproveConfig(Config):
    """One ``tiers improve`` run."""

    hierarchy: str  # the hierarchy YAML whose low tier is retrained (kind: policy)
    dataset: str  # the original demonstrations (LeRobotDataset folder)
    corrections: str  # the corrections dataset (tiers run --log / tiers eval --corrections-log)
    corrections_fraction: float = 0.5  # share of training samples drawn from correction frames
    interventions_only: bool = True  # draw correction samples only inside intervention spans
    steps: int = 300  # fine-tuning steps per retrained policy
    batch_size: int = 64  # samples per step
    lr: float = 1e-4  # fine-tuning learning rate (AdamW)
    curve: list[int] = field(default_factory=lambda: [0, -1])  # corrections episodes per point; -1: all
    seeds: int = 1  # evaluation episodes per task
    seed: int = 2000  # first evaluation seed (new scenes; must not be a seed the corrections log used)
    control_tasks: list[str] = field(default_factory=list)  # task ids not corrected, evaluated too (forgetting)
    workers: int = 1  # evaluation processes

    def __post_init__(self) -> None:
        if not 0.0 <= self.corrections_fraction <= 1.0:
            raise ValueError(f"corrections_fraction must be in [0, 1], got {self.corrections_fraction}")
        if self.steps < 1 or self.batch_size < 1 or self.seeds < 1 or self.workers < 1:
            raise ValueError(
                f"steps, batch_size, seeds and workers must be >= 1, got {self.steps}, {self.batch_size}, "
                f"{self.seeds}, {self.workers}"
            )
        if any(k < -1 for k in self.curve) or not self.curve:
            raise ValueError(f"curve lists corrections-episode counts (>= 0, or -1 for all), got {self.curve}")


class Resampled(torch.utils.data.Dataset[dict[str, Any]]):
    """``dataset`` through a fixed list of indices (a mixture drawn once; the trainer shuffles it), each item
    cut to ``keys`` (the demonstrations and the corrections log have different language columns)."""

    def __init__(self, dataset: torch.utils.data.Dataset[dict[str, Any]], indices: list[int], keys: set[str]) -> None:
        self.dataset = dataset
        self.indices = indices
        self.keys = keys

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[self.indices[index]]
        return {key: value for key, value in item.items() if key in self.keys}


def improve(config: ImproveConfig, out: Path, *, echo: Any = print) -> dict[str, Any]:
    """Fine-tune and evaluate every point of ``config.curve``; writes ``improve.json`` and ``improve_curve.png``."""
    hierarchy = HierarchyConfig.load(config.hierarchy)
    if hierarchy.low.kind != "policy" or "checkpoint" not in hierarchy.low.settings:
        raise ConfigError(f"{config.hierarchy}: tiers improve retrains a learned low tier (low.kind: policy)")
    yaml_path = preset_path("hierarchies", config.hierarchy)
    context = HierarchyContext(embodiment=EmbodimentSpec.load(hierarchy.robot), base_dir=Path(yaml_path).parent)
    base = context.resolve(hierarchy.low.settings["checkpoint"]).resolve()
    log = read_corrections(config.corrections)
    episodes = sorted({event.episode_index for event in log.events})
    if not episodes:
        raise ContractError(f"{config.corrections}: no corrections logged; nothing to learn from")
    task_ids = _logged_tasks(Path(config.corrections))
    _check_unseen_seeds(Path(config.corrections), task_ids, config)
    overlap = sorted(set(config.control_tasks) & set(task_ids))
    if overlap:
        raise ConfigError(f"control_tasks {overlap} were corrected in {config.corrections}; controls must not be")
    policy = load_policy(base)
    if policy.config.conditioning.cameras:
        raise ConfigError("tiers improve fine-tunes camera-free policies here (windows from memory); got cameras")

    def windows(root: str) -> Any:
        data, _ = load_training_dataset(generative_loading_config(policy.config, root))
        return data

    original, corrected = windows(config.dataset), windows(config.corrections)
    training_original = with_hindsight(original, policy.config)
    training_corrected = with_hindsight(corrected, policy.config)
    mask = intervention_frame_mask(config.corrections, corrected) if config.interventions_only else None

    points = []
    for count in config.curve:
        k = len(episodes) if count == -1 else min(count, len(episodes))
        if k == 0:
            checkpoint = base
        else:
            chosen = correction_frames(corrected, mask, k)
            if not chosen:
                raise ContractError(f"{config.corrections}: the first {k} episodes have no intervention frames")
            echo(
                f"fine-tuning on the demonstrations + {k} corrections episodes ({len(chosen)} correction frames, "
                f"{config.corrections_fraction:.0%} of the samples)"
            )
            checkpoint = fine_tune(
                base, training_original, training_corrected, chosen, out / f"corrections_{k}",
                fraction=config.corrections_fraction, steps=config.steps, batch_size=config.batch_size, lr=config.lr,
            )  # fmt: skip
        corrected_rate = _evaluate(hierarchy, checkpoint, task_ids, config, out / f"eval_{k}", echo)
        corrections = sum(1 for event in log.events if event.episode_index < k)
        point = {"episodes": k, "corrections": corrections, **corrected_rate, "checkpoint": str(checkpoint)}
        message = f"  {corrections:3d} corrections -> {_rate_text(corrected_rate)} on the corrected tasks"
        if config.control_tasks:
            point["control"] = _evaluate(
                hierarchy, checkpoint, config.control_tasks, config, out / f"control_{k}", echo
            )
            message += f", {_rate_text(point['control'])} on the control tasks"
        points.append(point)
        echo(message)
    result = {"config": config.to_dict(), "tasks": task_ids, "control_tasks": config.control_tasks, "points": points}
    (out / "improve.json").write_text(json.dumps(result, indent=2))
    _plot(points, out / "improve_curve.png")
    return result


def correction_frames(corrected: Any, mask: torch.Tensor | None, episodes: int) -> list[int]:
    """Indices of the correction windows of the first ``episodes`` episodes, inside intervention spans (``mask``,
    (N,) bool over the frames) unless ``mask`` is None."""
    allowed = corrected.episode_indices < episodes
    if mask is not None:
        allowed &= mask
    return [int(i) for i in torch.nonzero(allowed).flatten().tolist()]


def fine_tune(
    base: Path,
    original: Any,
    corrected: Any,
    frames: list[int],
    out: Path,
    *,
    fraction: float,
    steps: int,
    batch_size: int,
    lr: float,
) -> Path:
    """Fine-tune the low tier saved at ``base`` on its demonstrations plus corrections; returns the new checkpoint.

    Args:
        base: the checkpoint folder fine-tuned (its config, weights and normalisation statistics are kept).
        original, corrected: the training windows (hindsight-labelled as the policy reads them) of the
            demonstrations and of the corrections dataset.
        frames: the indices into ``corrected`` drawn from (:func:`correction_frames`).
        out: the run folder (replaced); the checkpoint lies under ``out/checkpoints/``.
        fraction: share of the samples of one epoch drawn from ``frames`` (every original window once besides).
        steps, batch_size, lr: AdamW steps, samples per step, learning rate (no EMA: the last weights act).
    """
    shutil.rmtree(out, ignore_errors=True)
    tuned = load_policy(base)
    mixed: torch.utils.data.Dataset[dict[str, Any]] = torch.utils.data.ConcatDataset([original, corrected])
    indices = _mixture(len(original), [len(original) + i for i in frames], fraction)
    trainer = TrainerConfig(
        steps=steps, batch_size=batch_size, num_workers=0, device="cpu", lr=lr, warmup_steps=min(50, steps // 5),
        ema=False, log_every=max(1, steps // 10), save_every=steps,
    )  # fmt: skip
    keys = set(original[0]) & set(corrected[0])
    summary = train(tuned.train(), Resampled(mixed, indices, keys), trainer, out, progress=False)
    return Path(summary.checkpoint).resolve()


def _mixture(original: int, corrections: list[int], fraction: float) -> list[int]:
    """Indices of one epoch: every original frame once, correction frames drawn to make up ``fraction``."""
    generator = torch.Generator().manual_seed(0)
    if fraction >= 1.0:
        return corrections
    extra = round(original * fraction / (1.0 - fraction))
    picks = torch.randint(len(corrections), (extra,), generator=generator).tolist()
    return list(range(original)) + [corrections[i] for i in picks]


def _logged_tasks(root: Path) -> list[str]:
    tasks = sorted({record.task_id for record in read_episode_log(root) if record.episode_index is not None})
    if not tasks:
        raise ContractError(f"{root}: the corrections dataset lists no episodes")
    return tasks


def _check_unseen_seeds(corrections: Path, task_ids: list[str], config: ImproveConfig) -> None:
    """Refuse evaluation episodes (task, seed) that the corrections log itself holds: a gain measured on the very
    scenes the policy was fine-tuned on says nothing about new ones."""
    logged = {(record.task_id, record.seed) for record in read_episode_log(corrections)}
    evaluated = {(task, config.seed + s) for task in task_ids for s in range(config.seeds)}
    reused = sorted(logged & evaluated)
    if reused:
        raise ConfigError(
            f"evaluation seeds {config.seed}..{config.seed + config.seeds - 1} include {len(reused)} episode(s) of "
            f"{corrections} (e.g. {reused[0][0]} seed {reused[0][1]}); pass a --seed beyond the logged ones"
        )


def _rate_text(rate: dict[str, Any]) -> str:
    low, high = rate["interval"]
    return f"{rate['successes']}/{rate['trials']} ({100 * rate['success']:.1f}% [{100 * low:.1f}, {100 * high:.1f}])"


def _evaluate(
    hierarchy: Any, checkpoint: Path, task_ids: list[str], config: ImproveConfig, out: Path, echo: Any
) -> dict[str, Any]:
    """Integrated-mode success of ``hierarchy`` with its low tier at ``checkpoint`` on ``task_ids``:
    ``success`` (rate), ``successes``, ``trials`` and the Wilson 95 % ``interval`` (low, high)."""
    out.mkdir(parents=True, exist_ok=True)
    variant = replace(
        hierarchy, low=replace(hierarchy.low, settings={**hierarchy.low.settings, "checkpoint": str(checkpoint)})
    )
    path = out / "hierarchy.yaml"
    variant.to_yaml(path)
    settings = EvalSettings(mode=EvalMode.INTEGRATED, hierarchy=str(path))
    jobs = [
        EpisodeJob(i, task, config.seed + s)
        for i, (task, s) in enumerate((t, s) for t in task_ids for s in range(config.seeds))
    ]
    results = run_jobs(make_runner, settings, jobs, workers=config.workers)
    (out / "results.json").write_text(json.dumps([vars(r) for r in results], indent=2, default=str))
    successes = sum(bool(r.success) for r in results)
    return {
        "success": successes / len(results),
        "successes": successes,
        "trials": len(results),
        "interval": list(wilson_interval(successes, len(results))),
    }


def _plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    counts = [p["corrections"] for p in points]
    for key, label in (("", "corrected tasks, new seeds"), ("control", "control tasks (not corrected)")):
        rates = [p[key] if key else p for p in points if not key or key in p]
        if len(rates) != len(points):
            continue
        centre = [100 * r["success"] for r in rates]
        below = [c - 100 * r["interval"][0] for c, r in zip(centre, rates, strict=True)]
        above = [100 * r["interval"][1] - c for c, r in zip(centre, rates, strict=True)]
        ax.errorbar(counts, centre, yerr=[below, above], marker="o", capsize=4, label=label)
    ax.legend(fontsize=8)
    ax.set_xlabel("corrections used for retraining")
    ax.set_ylabel("success (%), Wilson 95 %")
    ax.set_ylim(0, 100)
    ax.set_title("tiers improve")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
