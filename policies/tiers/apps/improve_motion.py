"""``tiers improve --motion``: retrain the RT-H motion predictor on logged motion interventions, and measure it.

With a ``motion`` planner, a person's motion correction ("move left", "lower", "close the gripper") replaces the
predicted motion for ``override_s`` s and every prediction it replaces is kept by the predictor as a
:class:`~tiers.policies.high.motion_predictor.MotionIntervention` (the phrase said, who said it, what the predictor
would have said, the inputs it would have said it from). This module stores them (``interventions.jsonl``), turns
them into training frames labelled with the corrected phrase, and fine-tunes the predictor from its checkpoint on
those frames mixed with its original training data (RT-H's intervention training)::

    interventions.jsonl (k corrections, ~override_s / period_s frames each)   original frames (train episodes)
                 │  label = corrected phrase                                         │  label = auto-labelled motion
                 └──────────── fraction ─────────┬───────────── 1 - fraction ────────┘
                                                 ▼
                      predictor checkpoint ── fine-tune (steps, lr) ──▶ <out>/corrections_<k>/

The measurement (:func:`corrections_curve`, ``python -m tiers.apps.improve_motion``) runs in the kitchen: on tasks
the base hierarchy fails, a scripted corrector (:class:`ExpertMotionCorrector`) says the scripted expert's current
language motion whenever the predictor's motion disagrees with it; the predictor is retrained on the first N
corrections and the hierarchy evaluated (integrated, no corrections) on seeds not used to collect them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tiers.apps.evaluation.hierarchy_episode import run_hierarchy_episode
from tiers.apps.motion_predictor_training import (
    MotionClassifierLoss,
    MotionFrameItems,
    MotionFrames,
    MotionTrainerConfig,
    _predict,
    embed_texts,
    load_motion_frames,
    loop_config,
)
from tiers.commands.motion_words import STOP, is_move, move_directions
from tiers.core.config import Config, load_config
from tiers.core.errors import ContractError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.locations import preset_path
from tiers.core.observation import Observation
from tiers.datasets.language_motion import LabelerSettings, label_motions, phrase_category
from tiers.policies.hierarchy.build import hierarchy_embodiment, load_hierarchy
from tiers.policies.hierarchy.config import HierarchyConfig
from tiers.policies.hierarchy.runtime import HierarchyRuntime, RuntimeStep
from tiers.policies.high.motion_predictor import (
    INTERVENTIONS_FILE,
    MotionClassifier,
    MotionIntervention,
    MotionPredictor,
    append_interventions,
    load_model,
    read_interventions,
)
from tiers.services.kinematics import ArmKinematics
from tiers.services.text_encoder import TextEncoder
from tiers.services.training import train
from tiers.sim.backends import make_backend
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.expert import ScriptedExpert
from tiers.sim.kitchen.tasks import Task, get_task, success_of

NO_DONE = 1e3  # s "until the subtask ends" given to intervention frames: their done target is 0


def corrections_of(interventions: Sequence[MotionIntervention]) -> list[list[MotionIntervention]]:
    """The interventions grouped by correction (same source, time said and phrase), in the order said."""
    groups: dict[tuple[str, float, str, str], list[MotionIntervention]] = {}
    for intervention in interventions:
        key = (intervention.source, intervention.corrected_at, intervention.corrected, intervention.instruction)
        groups.setdefault(key, []).append(intervention)
    return list(groups.values())


# --- frames and retraining ----------------------------------------------------------------------------------------


def intervention_frames(interventions: Sequence[MotionIntervention], model: MotionClassifier) -> MotionFrames:
    """Training frames of ``interventions``, labelled with the corrected phrase (done target 0).

    Raises:
        ContractError: the predictor reads a camera (interventions keep no image), a phrase is not in its
            vocabulary, or a state has another size or other keys than the predictor reads.
    """
    config = model.config
    if config.camera is not None:
        raise ContractError(f"interventions keep no image; the predictor reads camera {config.camera!r}")
    index = {phrase: number for number, phrase in enumerate(config.vocabulary)}
    tasks: dict[str, int] = {}
    subtasks: dict[str, int] = {}
    for item in interventions:
        if item.corrected not in index:
            raise ContractError(f"intervention phrase {item.corrected!r} is not in the predictor's vocabulary")
        if len(item.state) != model.state_dim or (item.state_keys and list(item.state_keys) != list(config.state_keys)):
            raise ContractError(
                f"an intervention's state has {len(item.state)} values of {item.state_keys}; the predictor reads "
                f"{model.state_dim} of {list(config.state_keys)}"
            )
    count = len(interventions)
    return MotionFrames(
        images=torch.zeros(count, 0, 1, 1, dtype=torch.uint8),
        states=torch.tensor([item.state for item in interventions], dtype=torch.float32).reshape(count, -1),
        tasks=torch.tensor([tasks.setdefault(item.instruction, len(tasks)) for item in interventions]),
        labels=torch.tensor([index[item.corrected] for item in interventions], dtype=torch.long),
        episodes=torch.full((count,), -1, dtype=torch.long),
        task_texts=list(tasks),
        subtasks=torch.tensor(
            [subtasks.setdefault(item.subtask or item.instruction, len(subtasks)) for item in interventions]
        ),
        elapsed=torch.tensor([item.elapsed for item in interventions], dtype=torch.float32),
        remaining=torch.full((count,), NO_DONE),
        subtask_texts=list(subtasks),
    )


def concat_frames(first: MotionFrames, second: MotionFrames) -> MotionFrames:
    """``first`` then ``second`` as one :class:`MotionFrames` (text indices of ``second`` shifted)."""
    tasks, subtasks = len(first.task_texts), len(first.subtask_texts)
    return MotionFrames(
        images=torch.cat([first.images, second.images]),
        states=torch.cat([first.states, second.states]),
        tasks=torch.cat([first.tasks, second.tasks + tasks]),
        labels=torch.cat([first.labels, second.labels]),
        episodes=torch.cat([first.episodes, second.episodes]),
        task_texts=first.task_texts + second.task_texts,
        subtasks=torch.cat([first.subtasks, second.subtasks + subtasks]),
        elapsed=torch.cat([first.elapsed, second.elapsed]),
        remaining=torch.cat([first.remaining, second.remaining]),
        subtask_texts=first.subtask_texts + second.subtask_texts,
    )


@dataclass
class MotionImproveConfig(Config):
    """How the predictor is fine-tuned on interventions."""

    steps: int = 200  # optimiser steps from the checkpoint
    batch_size: int = 64  # frames per step
    lr: float = 3e-4  # AdamW peak learning rate (warmup, cosine decay)
    fraction: float = 0.25  # share of training frames drawn from the interventions (the rest: original frames)
    label_smoothing: float = 0.05  # as in training
    seed: int = 0  # torch seed of batches and of the mixture

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def retrain_on_interventions(
    model: MotionClassifier,
    interventions: Sequence[MotionIntervention],
    out_dir: str | Path,
    *,
    base: MotionFrames | None = None,
    config: MotionImproveConfig | None = None,
    encoder: TextEncoder | None = None,
) -> MotionClassifier:
    """A copy of ``model`` fine-tuned on ``interventions`` (+ the original ``base`` frames), saved in ``out_dir``.

    The mixture is drawn once: every intervention frame repeated so that they make ``fraction`` of the samples, the
    ``base`` frames the rest (all of them; the trainer shuffles). The state normalisation stays the checkpoint's.
    """
    config = config or MotionImproveConfig()
    if not interventions:
        raise ContractError("no interventions to retrain on")
    tuned = MotionClassifier(model.config, model.state_dim)
    tuned.load_state_dict(model.state_dict())
    corrected = intervention_frames(interventions, tuned)
    frames = corrected if base is None else concat_frames(base, corrected)
    first = 0 if base is None else len(base.labels)
    generator = torch.Generator().manual_seed(config.seed)
    rows = torch.arange(first)
    if base is not None and config.fraction < 1.0:
        wanted = round(first * config.fraction / (1.0 - config.fraction))
    else:
        wanted = max(len(corrected.labels), config.batch_size)
    repeats = torch.randint(0, len(corrected.labels), (max(wanted, 1),), generator=generator) + first
    rows = torch.cat([rows, repeats])
    texts = embed_texts(frames, encoder or TextEncoder())
    trainer = MotionTrainerConfig(
        steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        warmup_steps=min(20, config.steps // 5),
        seed=config.seed,
        eval_every=0,
    )
    wrapper = MotionClassifierLoss(
        tuned,
        label_smoothing=config.label_smoothing,
        shift_pixels=0,
        provenance={"interventions": len(interventions), "improve": config.to_dict()},
    )
    out_dir = Path(out_dir)
    train(
        wrapper,
        MotionFrameItems(frames, rows, texts, done_s=0.25),
        loop_config(trainer),
        out_dir / "training",
        progress=False,
    )
    tuned.eval()
    wrapper.save(out_dir, step=config.steps)
    return tuned


def accuracy_on(model: MotionClassifier, frames: MotionFrames, rows: torch.Tensor, encoder: TextEncoder) -> float:
    """Frame accuracy of ``model`` on ``frames[rows]`` (nan without rows)."""
    if not len(rows):
        return float("nan")
    predicted = _predict(model, frames, rows, embed_texts(frames, encoder))
    return float((predicted == frames.labels[rows]).float().mean())


# --- the scripted corrector ---------------------------------------------------------------------------------------


def motions_disagree(predicted: str, expert: str) -> bool:
    """Whether a person would object: different kinds of motion, or moves with no direction in common."""
    if phrase_category(predicted) != phrase_category(expert):
        return True
    if is_move(predicted) and is_move(expert):
        return not (move_directions(predicted) & move_directions(expert))
    return predicted != expert


@dataclass
class ExpertCorrectorSettings(Config):
    """When the scripted motion corrector speaks up."""

    every_s: float = 0.5  # s between two looks at what the robot does
    look_ahead: int = 8  # control steps of the expert's motion labelled (the labeller's window is 4)
    patience: int = 2  # consecutive looks that must disagree before a correction is said
    cooldown_s: float = 2.0  # s after a correction before the next (its override span)
    max_corrections: int = 8  # per episode
    speak: bool = True  # False: only measure agreement (evaluation)


class ExpertMotionCorrector:
    """A privileged person who says the scripted expert's current language motion when the predictor disagrees.

    Every ``every_s`` it re-plans the scripted expert from the scene as it is, for the gold-plan steps not yet
    achieved (progress: each step's own effect, as :mod:`tiers.apps.evaluation.corrector` tracks it), runs it
    ``look_ahead`` control steps on a copy of the arm's kinematics (the simulator is not touched), and labels the
    resulting tool motion with the dataset's labeller (:func:`tiers.datasets.language_motion.label_motions`). When
    the motion in force (the runtime's ``language_motion``) disagrees with it (:func:`motions_disagree`) on
    ``patience`` looks in a row, it says the expert's phrase (never "stop": that halts the robot) through
    :meth:`HierarchyRuntime.correct` as a ``simulated_corrector``. Use it as ``run_hierarchy_episode``'s ``on_tick``.
    """

    def __init__(
        self, env: KitchenEnv, runtime: HierarchyRuntime, task: Task, settings: ExpertCorrectorSettings | None = None
    ) -> None:
        self.env = env
        self.runtime = runtime
        self.task = task
        self.settings = settings or ExpertCorrectorSettings()
        self._expert: ScriptedExpert | None = None
        self._arm = ArmKinematics.for_robot(env.embodiment)
        self.said: list[tuple[float, str]] = []
        self.looks = 0  # looks where both the expert and the predictor had a motion
        self.agreements = 0  # of those, looks where they agreed
        self._initial: Any = None
        self._next = 0
        self._last_look = -np.inf
        self._last_said = -np.inf
        self._disagreeing = 0

    def start_episode(self) -> None:
        self._initial = self.env.scene_state()
        self._next = 0
        self._last_look = self._last_said = -np.inf
        self._disagreeing = 0
        self.said = []

    def expert_motion(self, observation: Observation) -> str | None:
        """The scripted expert's language motion from here, or None when the gold plan is achieved."""
        state = self.env.scene_state()
        plan = self.task.plan
        while self._next < len(plan) and success_of([plan[self._next]])(self._initial, state):
            self._next += 1
        if self._next >= len(plan):
            return None
        if self._expert is None:
            self._expert = ScriptedExpert.from_kitchen(self.env.backend)  # type: ignore[arg-type]
        self._expert.reset(list(plan[self._next :]), state, observation)
        poses = [np.concatenate(self._arm.forward(observation.joint_positions))]
        openings = [float(observation.gripper_opening)]
        for _ in range(self.settings.look_ahead):
            step = self._expert.act(observation, state)
            if step.done:
                break
            poses.append(np.concatenate(self._arm.forward(step.action[:-1])))
            openings.append(float(step.action[-1]))
        if len(poses) < 2:
            return None
        labels = label_motions(
            np.stack(poses),
            np.asarray(openings),
            dt=1.0 / self.env.embodiment.control_rate_hz,
            settings=LabelerSettings(min_segment_frames=1),
        )
        return labels[0]

    def __call__(self, observation: Observation, step: RuntimeStep, said: str | None) -> None:
        """Look (every ``every_s``) and maybe correct; the signature of a tick observer."""
        if self._initial is None:
            self.start_episode()
        now = float(observation.timestamp)
        if now - self._last_look < self.settings.every_s or self.runtime.done or self.runtime.stopped:
            return
        self._last_look = now
        command = self.runtime.command
        if command is None or command.style is not CommandStyle.MOTION:
            return
        expert = self.expert_motion(observation)
        if expert is None:
            return
        self.looks += 1
        predicted = command.text
        if not motions_disagree(predicted, expert):
            self.agreements += 1
            self._disagreeing = 0
            return
        self._disagreeing += 1
        if (
            not self.settings.speak
            or expert == STOP
            or command.source is not CommandSource.PLANNER
            or self._disagreeing < self.settings.patience
            or now - self._last_said < self.settings.cooldown_s
            or len(self.said) >= self.settings.max_corrections
        ):
            return
        self.runtime.correct(expert, source=CommandSource.SIMULATED_CORRECTOR, timestamp=now)
        self.said.append((now, expert))
        self._last_said = now
        self._disagreeing = 0


# --- the measurement ------------------------------------------------------------------------------------------------


@dataclass
class CurveConfig(Config):
    """One corrections curve: collect, retrain on the first N corrections, evaluate on other seeds."""

    hierarchy: str = "configs/hierarchies/motion_beso.yaml"  # a hierarchy with planner kind motion
    dataset: str = "outputs/rth/seen"  # the predictor's original training data
    tasks: list[str] = field(default_factory=lambda: ["open/drawer/0", "close/drawer/0", "open/cabinet/0"])
    collect_seeds: list[int] = field(default_factory=lambda: [600, 601, 602, 603])  # seeds the corrections come from
    eval_seeds: list[int] = field(default_factory=lambda: [700, 701, 702, 703, 704])  # never used to collect
    counts: list[int] = field(default_factory=lambda: [0, 10, 30])  # corrections per point
    improve: MotionImproveConfig = field(default_factory=MotionImproveConfig)
    corrector: ExpertCorrectorSettings = field(default_factory=ExpertCorrectorSettings)

    def __post_init__(self) -> None:
        if set(self.collect_seeds) & set(self.eval_seeds):
            raise ValueError(f"eval_seeds {self.eval_seeds} must not reuse collect_seeds {self.collect_seeds}")
        if any(count < 0 for count in self.counts):
            raise ValueError(f"counts must be >= 0, got {self.counts}")


def _episodes(
    hierarchy: Any,
    env: KitchenEnv,
    tasks: Sequence[str],
    seeds: Sequence[int],
    settings: ExpertCorrectorSettings,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """Run every task × seed; corrections said when ``settings.speak``. Success, agreement and interventions."""
    predictor = hierarchy.runtime.planner
    if not isinstance(predictor, MotionPredictor):
        raise ContractError(f"the hierarchy's planner is {type(predictor).__name__}, not a motion predictor")
    predictor.drain_interventions()
    results, interventions, looks, agreements = [], [], 0, 0
    for task_id in tasks:
        task = get_task(task_id)
        for seed in seeds:
            runtime = hierarchy.runtime_for(task)
            corrector = ExpertMotionCorrector(env, runtime, task, settings)
            episode = run_hierarchy_episode(env, runtime, task, seed=seed, on_tick=corrector)
            logged = predictor.drain_interventions()
            interventions += logged
            looks, agreements = looks + corrector.looks, agreements + corrector.agreements
            results.append(
                {
                    "task": task_id,
                    "seed": seed,
                    "success": episode.result.success,
                    "corrections": len(corrector.said),
                    "intervention_frames": len(logged),
                }
            )
            echo(
                f"  {task_id} seed {seed}: {'success' if episode.result.success else 'failure'}, "
                f"{len(corrector.said)} corrections, agreement {corrector.agreements}/{corrector.looks}"
            )
    success = float(np.mean([r["success"] for r in results])) if results else float("nan")
    return {
        "episodes": results,
        "success": success,
        "agreement": agreements / max(looks, 1),
        "looks": looks,
        "interventions": interventions,
    }


def corrections_curve(config: CurveConfig, out: str | Path, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Collect corrections, retrain on the first N of them for each N, evaluate each; writes ``curve.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    spec = hierarchy_embodiment(config.hierarchy)
    env = KitchenEnv(None, backend=make_backend("mujoco", spec), render=False)
    hierarchy = load_hierarchy(config.hierarchy, env=env)
    predictor = hierarchy.runtime.planner
    if not isinstance(predictor, MotionPredictor):
        raise ContractError(f"{config.hierarchy}: the planner is {type(predictor).__name__}, not a motion predictor")
    base_model = predictor.model
    base_state = {key: value.clone() for key, value in base_model.state_dict().items()}
    encoder = predictor.encoder

    echo(f"collecting corrections on {config.tasks} × seeds {config.collect_seeds}")
    (out / INTERVENTIONS_FILE).unlink(missing_ok=True)
    collected = _episodes(hierarchy, env, config.tasks, config.collect_seeds, config.corrector, echo)
    append_interventions(out, collected["interventions"])
    groups = corrections_of(collected["interventions"])
    echo(f"  {len(groups)} corrections, {len(collected['interventions'])} intervention frames")

    frames, _ = load_motion_frames(config.dataset, base_model.config)
    checkpoint = json.loads((Path(_checkpoint(hierarchy)) / "config.json").read_text())
    held = checkpoint.get("training", {}).get("held_out_episodes", [])
    held_mask = torch.isin(frames.episodes, torch.tensor(held, dtype=torch.long))
    instructions = {get_task(task_id).instruction for task_id in config.tasks}
    of_tasks = torch.tensor([frames.task_texts[t] in instructions for t in frames.tasks.tolist()])
    base = _subset(frames, torch.nonzero(~held_mask)[:, 0])
    held_rows = torch.nonzero(held_mask & of_tasks)[:, 0]

    points = []
    silent = replace(config.corrector, speak=False)
    for count in config.counts:
        if count > len(groups):
            echo(f"N = {count}: only {len(groups)} corrections were collected; skipped")
            continue
        base_model.load_state_dict(base_state)
        if count:
            used = [item for group in groups[:count] for item in group]
            tuned = retrain_on_interventions(
                base_model, used, out / f"corrections_{count}", base=base, config=config.improve, encoder=encoder
            )
            base_model.load_state_dict(tuned.state_dict())
        base_model.eval()
        echo(f"N = {count}: evaluating on {config.tasks} × seeds {config.eval_seeds}")
        evaluated = _episodes(hierarchy, env, config.tasks, config.eval_seeds, silent, echo)
        point = {
            "corrections": count,
            "intervention_frames": sum(len(group) for group in groups[:count]),
            "success": evaluated["success"],
            "episodes": evaluated["episodes"],
            "rollout_agreement": evaluated["agreement"],  # predictor vs the expert's motion on the eval rollouts
            "rollout_looks": evaluated["looks"],
            "held_out_accuracy": accuracy_on(base_model, frames, held_rows, encoder),
            "held_out_frames": len(held_rows),
        }
        points.append(point)
        echo(
            f"N = {count}: success {point['success']:.1%}, held-out accuracy {point['held_out_accuracy']:.1%}, "
            f"rollout agreement {point['rollout_agreement']:.1%}"
        )
    base_model.load_state_dict(base_state)
    result = {
        "config": config.to_dict(),
        "collected": {
            "episodes": collected["episodes"],
            "corrections": len(groups),
            "intervention_frames": len(collected["interventions"]),
            "success": collected["success"],
        },
        "points": points,
        "wall_time_s": time.perf_counter() - start,
    }
    (out / "curve.json").write_text(json.dumps(result, indent=2))
    env.close()
    return result


def _checkpoint(hierarchy: Any) -> str:
    return str(hierarchy.config.planner.settings["checkpoint"])


def _subset(frames: MotionFrames, rows: torch.Tensor) -> MotionFrames:
    return replace(
        frames,
        images=frames.images[rows],
        states=frames.states[rows],
        tasks=frames.tasks[rows],
        labels=frames.labels[rows],
        episodes=frames.episodes[rows],
        subtasks=frames.subtasks[rows],
        elapsed=frames.elapsed[rows],
        remaining=frames.remaining[rows],
    )


# --- the tiers improve --motion entry ---------------------------------------------------------------------------


def improve_motion(
    hierarchy: str | Path,
    dataset: str | Path,
    corrections: str | Path,
    out: str | Path,
    *,
    curve: Sequence[int] = (-1,),
    config: MotionImproveConfig | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Retrain the hierarchy's motion predictor on the first k logged corrections for each k of ``curve``.

    ``corrections``: a folder (or file) holding ``interventions.jsonl``. Each retrained predictor lies in
    ``out/corrections_<k>/`` (run it with ``planner.settings.checkpoint=out/corrections_<k>``); ``improve_motion.json``
    lists them with their accuracy on the intervention frames (the corrected phrase) before and after.
    """
    out = Path(out)
    config = config or MotionImproveConfig()
    spec = HierarchyConfig.load(preset_path("hierarchies", hierarchy))
    if spec.planner.kind != "motion":
        raise ContractError(f"{hierarchy}: planner kind {spec.planner.kind!r}; --motion retrains a 'motion' planner")
    checkpoint = Path(str(spec.planner.settings["checkpoint"]))
    model = load_model(checkpoint)
    held = json.loads((checkpoint / "config.json").read_text()).get("training", {}).get("held_out_episodes", [])
    frames, _ = load_motion_frames(dataset, model.config)
    base = _subset(frames, torch.nonzero(~torch.isin(frames.episodes, torch.tensor(held, dtype=torch.long)))[:, 0])
    groups = corrections_of(read_interventions(corrections))
    encoder = TextEncoder()
    points = []
    for k in curve:
        used_groups = groups if k < 0 else groups[:k]
        used = [item for group in used_groups for item in group]
        if not used:
            continue
        logged = intervention_frames(used, model)
        rows = torch.arange(len(logged.labels))
        before = accuracy_on(model, logged, rows, encoder)
        tuned = retrain_on_interventions(
            model, used, out / f"corrections_{len(used_groups)}", base=base, config=config, encoder=encoder
        )
        after = accuracy_on(tuned, logged, rows, encoder)
        points.append(
            {
                "corrections": len(used_groups),
                "frames": len(used),
                "checkpoint": str(out / f"corrections_{len(used_groups)}"),
                "accuracy_before": before,
                "accuracy_after": after,
            }
        )
        echo(f"{len(used_groups)} corrections ({len(used)} frames): corrected phrase {before:.1%} -> {after:.1%}")
    result = {"hierarchy": str(hierarchy), "checkpoint": str(checkpoint), "points": points}
    out.mkdir(parents=True, exist_ok=True)
    (out / "improve_motion.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tiers.apps.improve_motion --out DIR [key=value ...]``: the corrections curve (CurveConfig)."""
    parser = argparse.ArgumentParser(prog="python -m tiers.apps.improve_motion", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for interventions.jsonl, curve.json")
    parser.add_argument("overrides", nargs="*", default=[], help="CurveConfig overrides key=value (counts=[0,10])")
    args = parser.parse_args(argv)
    config = load_config(CurveConfig, None, overrides=args.overrides)
    result = corrections_curve(config, args.out)
    for point in result["points"]:
        print(
            f"{point['corrections']:3d} corrections: success {point['success']:.1%}, "
            f"held-out accuracy {point['held_out_accuracy']:.1%}"
        )
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.exit(main())
