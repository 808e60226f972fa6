"""``tiers demo``: the whole stack on the embedded default (MuJoCo, CPU, offline), as the commands a user runs.

    1. record   tiers record     scripted-expert demonstrations, proprioception + language (no cameras)
    2. train    tiers train      a path-conditioned BESO low tier (configs/train/demo_paths.yaml)
    3. compose  hierarchy.yaml   grammar planner -> keypoint paths from RGB-D -> the trained policy
    4. eval     tiers eval       planner, control, integrated and corrections modes, and the all-offline
                                 IK hierarchy (offline_paths) as the reference controller, then each
                                 ``--hierarchy`` given (any planner, mid and low kind) in integrated mode
    5. report   report.md/.html  tables, learning curve, success plot, rollout videos

Every step calls the application behind its ``tiers`` verb and is printed as the ``tiers`` command that
reproduces it. ``--quick`` skips 1-2 and uses the
checkpoint shipped in ``tiers/policies/pretrained/`` (trained by the project with the full demo).
"""

from __future__ import annotations

import html
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console

from tiers.apps.evaluation.evaluate import run_evaluation
from tiers.apps.evaluation.report import EvalMode
from tiers.apps.record import print_record_summary, record_dataset
from tiers.apps.training import LowPolicyTrainConfig, train_low_policy
from tiers.core.config import Config, load_config
from tiers.core.errors import TiersError
from tiers.core.locations import preset_path
from tiers.policies.hierarchy.registry import PRETRAINED_DIR
from tiers.services.training import CHECKPOINTS, LAST

DEMO_CHECKPOINT = "kitchen_paths_beso"  # folder under tiers/policies/pretrained/
MODES = ("planner", "control", "integrated", "corrections")


@dataclass
class DemoConfig(Config):
    """Sizes of one demo run (the defaults fit 15 minutes on 2 CPU cores)."""

    tasks: list[str] = field(default_factory=lambda: ["open_close", "pick_place"])  # families or task ids
    episodes: int = 40  # expert demonstrations recorded
    train_config: str = "demo_paths"  # configs/train/<name>.yaml
    train_steps: int | None = None  # override of the preset's optimiser steps
    eval_tasks: int = 12  # tasks per executed mode (evenly spaced over the demo families)
    planner_tasks: int = 60  # instructions scored in planner mode (train and held-out)
    seed: int = 1000  # first evaluation seed (recording uses seeds from 0: evaluation scenes are new)
    videos: int = 2  # rollout videos per executed mode
    workers: int = 1  # parallel evaluation workers
    # more hierarchies (configs/hierarchies/<name>.yaml or a path; any planner, mid and low kind) evaluated in
    # integrated mode on the same tasks and seeds, beside the IK reference
    hierarchies: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("episodes", "eval_tasks", "planner_tasks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


QUICK = DemoConfig(episodes=1, eval_tasks=6, planner_tasks=20, videos=1)


@dataclass
class StepRecord:
    """One step of the demo: the command that reproduces it, how long it took, whether it succeeded."""

    name: str
    command: str
    seconds: float = 0.0
    code: int = 0


def run_demo(
    out: Path, config: DemoConfig, *, quick: bool = False, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the summary written to ``out/summary.json``.

    Each step calls the application that ``tiers <verb>`` runs (recording, training, evaluation) and is
    printed as that command, so it can be rerun alone.

    Raises:
        TiersError: a step failed (its command is in the message, to rerun it alone).
    """
    out.mkdir(parents=True, exist_ok=True)
    steps: list[StepRecord] = []
    started = time.perf_counter()

    def step(name: str, argv: list[str], run: Callable[[], int]) -> None:
        record = StepRecord(name, "tiers " + " ".join(argv))
        echo(f"\n[{len(steps) + 1}] {name}: {record.command}")
        begin = time.perf_counter()
        try:
            record.code = run()
        except TiersError as error:
            raise TiersError(f"demo step {name!r} failed: {error}; rerun it alone: {record.command}") from error
        record.seconds = time.perf_counter() - begin
        steps.append(record)

    data, train_dir = out / "data" / "demos", out / "train"
    if quick:
        checkpoint = PRETRAINED_DIR / DEMO_CHECKPOINT
        if not (checkpoint / "model.safetensors").is_file():
            raise TiersError(f"no shipped checkpoint at {checkpoint}; run the full demo (without --quick)")
    else:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(train_dir, ignore_errors=True)
        step(
            "record",
            ["record", "--out", str(data), "--num-episodes", str(config.episodes), "--tasks", *config.tasks,
             "--no-cameras", "--seed", "0"],
            partial(_record, data, config),
        )  # fmt: skip
        train_config = preset_path("train", config.train_config)
        train = ["train", "--dataset", str(data), "--policy", "beso", "--out", str(train_dir),
                 "--config", str(train_config)]  # fmt: skip
        if config.train_steps is not None:
            train += ["--steps", str(config.train_steps)]
        step("train", train, partial(_train, data, train_config, train_dir, config.train_steps))
        checkpoint = _last_checkpoint(train_dir)
    hierarchy = out / "hierarchy.yaml"
    hierarchy.write_text(learned_hierarchy_yaml(checkpoint))
    echo(f"\nhierarchy: {hierarchy} (grammar -> keypoint paths -> BESO policy {checkpoint})")
    evals = out / "eval"
    common = ["--seed", str(config.seed), "--workers", str(config.workers), "--videos", str(config.videos)]
    tasks = []
    for token in config.tasks:
        tasks += ["--task", token] if "/" in token else ["--family", token]  # record's families are eval's
    chosen = {
        "tasks": [token for token in config.tasks if "/" in token],
        "families": [token for token in config.tasks if "/" not in token],
    }
    planner_common = [
        "--limit",
        str(config.planner_tasks),
        "--seed",
        str(config.seed),
        "--workers",
        str(config.workers),
    ]
    step("planner mode", ["eval", "--mode", "planner", "--hierarchy", str(hierarchy), *planner_common,
                          "--out", str(evals / "planner")],
         partial(_evaluate, EvalMode.PLANNER, evals / "planner", hierarchy=str(hierarchy), limit=config.planner_tasks,
                 seed=config.seed, workers=config.workers))  # fmt: skip
    executed = [*tasks, "--split", "train", "--limit", str(config.eval_tasks), *common]
    sample = {**chosen, "split": "train", "limit": config.eval_tasks, "seed": config.seed,
              "workers": config.workers, "videos": config.videos}  # fmt: skip
    for mode in ("control", "integrated", "corrections"):
        log = out / "corrections" if mode == "corrections" and config.workers == 1 else None
        extra = ["--corrections-log", str(log)] if log is not None else []
        step(f"{mode} mode", ["eval", "--mode", mode, "--hierarchy", str(hierarchy), *executed, *extra,
                              "--out", str(evals / mode)],
             partial(_evaluate, EvalMode(mode), evals / mode, hierarchy=str(hierarchy), corrections_log=log,
                     **sample))  # fmt: skip
    step("reference: offline IK hierarchy", ["eval", "--mode", "integrated", "--hierarchy", "offline_paths",
                                             *executed, "--out", str(evals / "offline_paths")],
         partial(_evaluate, EvalMode.INTEGRATED, evals / "offline_paths", hierarchy="offline_paths",
                 **sample))  # fmt: skip
    extra_rows = []
    for name in config.hierarchies:
        folder = f"hierarchy_{Path(name).stem}"
        step(f"also: {name}", ["eval", "--mode", "integrated", "--hierarchy", name, *executed, "--out",
                               str(evals / folder)],
             partial(_evaluate, EvalMode.INTEGRATED, evals / folder, hierarchy=name, **sample))  # fmt: skip
        extra_rows.append((folder, f"also: integrated, {name}"))
    summary = write_report(
        out, steps, checkpoint=checkpoint, quick=quick, wall_s=time.perf_counter() - started, extra_rows=extra_rows
    )
    echo(f"\nreport: {out / 'report.html'} and {out / 'report.md'} ({summary['wall_s']:.0f} s in all)")
    return summary


# -- the steps: the applications behind tiers record / train / eval ------------------------------------------


def _record(data: Path, config: DemoConfig) -> int:
    """``tiers record``: proprioception-only expert demonstrations; 1 when fewer were kept than asked."""
    summary = record_dataset(data, num_episodes=config.episodes, tasks=config.tasks, seed=0, cameras=False)
    print_record_summary(Console(), summary)
    return 0 if summary["kept"] >= config.episodes else 1


def _train(data: Path, preset: Path, train_dir: Path, steps: int | None) -> int:
    """``tiers train --policy beso``: the path-conditioned low tier of the demo's preset, with its progress bar
    (steps, loss, time left) on the terminal instead of minutes of silence."""
    overrides = ["policy.generator=beso", *([f"trainer.steps={steps}"] if steps is not None else [])]
    train_config = load_config(LowPolicyTrainConfig, preset, overrides=overrides)
    train_low_policy(data, train_config, train_dir, progress=True)
    return 0


def _evaluate(mode: EvalMode, out: Path, **options: Any) -> int:
    """``tiers eval --mode <mode> --hierarchy ...``: writes the mode's report into ``out``."""
    run_evaluation(mode, out=out, **options)
    return 0


def learned_hierarchy_yaml(checkpoint: Path) -> str:
    """The demo's hierarchy: grammar planner -> keypoint paths -> the path-conditioned policy at ``checkpoint``."""
    return (
        "# written by tiers demo\n"
        "name: learned_paths\n"
        "description: grammar planner -> keypoint-affordance paths from RGB-D -> path-conditioned BESO policy\n"
        "robot: panda\n"
        "planner: {kind: grammar}\n"
        "mid: {kind: keypoint_paths}\n"
        f"low: {{kind: policy, settings: {{checkpoint: {json.dumps(str(checkpoint.resolve()))}}}}}\n"
        "runtime: {command_timeout_s: 30}\n"
    )


def _last_checkpoint(train_dir: Path) -> Path:
    """The last checkpoint ``tiers train`` wrote (its ``checkpoints/last`` link, resolved)."""
    last = train_dir / CHECKPOINTS / LAST
    if not (last / "model.safetensors").is_file():
        raise TiersError(f"{train_dir}: training wrote no checkpoint")
    return last.resolve()


# -- report ---------------------------------------------------------------------------------------------------


def write_report(
    out: Path,
    steps: list[StepRecord],
    *,
    checkpoint: Path,
    quick: bool,
    wall_s: float,
    extra_rows: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """``summary.json``, ``report.md`` and ``report.html`` (tables, plots, videos) from the step outputs.

    ``extra_rows``: (folder under ``eval/``, label) of the ``--hierarchy`` evaluations, after the reference.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for name, label in [
        ("planner", "planner alone (grammar planner vs gold plans)"),
        ("control", "controller alone (gold plan -> keypoint paths -> BESO)"),
        ("integrated", "integrated (grammar -> keypoint paths -> BESO)"),
        ("corrections", "integrated + simulated corrections"),
        ("offline_paths", "reference: integrated, IK path following (no learning)"),
        *(extra_rows or []),
    ]:
        results = out / "eval" / name / "results.json"
        if not results.is_file():
            continue
        data = json.loads(results.read_text())
        episodes = data["episodes"]
        row: dict[str, Any] = {"mode": name, "label": label, "episodes": len(episodes)}
        row["success"] = sum(e["success"] for e in episodes) / max(1, len(episodes))
        for split in ("train", "held_out"):
            chosen = [e for e in episodes if e["split"] == split]
            row[f"success_{split}"] = sum(e["success"] for e in chosen) / len(chosen) if chosen else None
        if name == "planner":
            row["step_accuracy"] = _mean(e["extra"].get("step_accuracy") for e in episodes)
        row["corrections_per_episode"] = _mean(e["extra"].get("corrections") for e in episodes)
        row["control_step_p50_ms"] = _mean(e["extra"].get("step_p50_ms") for e in episodes)
        row["control_step_p99_ms"] = _max(e["extra"].get("step_p99_ms") for e in episodes)
        row["videos"] = sorted(str(path.relative_to(out)) for path in (out / "eval" / name / "videos").glob("*.mp4"))
        rows.append(row)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    if rows:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.barh([r["mode"] for r in rows], [100 * r["success"] for r in rows], color="#4c72b0")
        ax.set_xlim(0, 100)
        ax.set_xlabel("success (%)")
        ax.invert_yaxis()
        ax.set_title("tiers demo: success by mode")
        fig.tight_layout()
        fig.savefig(figures / "success_by_mode.png", dpi=120)
        plt.close(fig)
    curve = out / "train" / "learning_curve.png"
    if curve.is_file():
        shutil.copy(curve, figures / "learning_curve.png")
    summary = {
        "quick": quick,
        "wall_s": wall_s,
        "checkpoint": str(checkpoint),
        "steps": [vars(s) for s in steps],
        "modes": rows,
    }
    train_log = out / "train" / "train_log.json"
    if train_log.is_file():
        summary["training"] = json.loads(train_log.read_text()).get("summary")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "report.md").write_text(_markdown(summary, figures))
    (out / "report.html").write_text(_html(summary, figures))
    return summary


def _mean(values: Any) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(numbers) / len(numbers) if numbers else None


def _max(values: Any) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(numbers) if numbers else None


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.1f}%" if percent else f"{value:.2f}"


def _markdown(summary: dict[str, Any], figures: Path) -> str:
    lines = ["# tiers demo", ""]
    lines.append(f"{'quick run (shipped checkpoint)' if summary['quick'] else 'full run'}, {summary['wall_s']:.0f} s")
    lines += ["", "| mode | episodes | success | train split | held-out | corrections/ep | step p50 ms | step p99 ms |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in summary["modes"]:
        lines.append(
            f"| {r['label']} | {r['episodes']} | {_fmt(r['success'], True)} | {_fmt(r['success_train'], True)} | "
            f"{_fmt(r['success_held_out'], True)} | {_fmt(r['corrections_per_episode'])} | "
            f"{_fmt(r['control_step_p50_ms'])} | {_fmt(r['control_step_p99_ms'])} |"
        )
    planner = next((r for r in summary["modes"] if r["mode"] == "planner"), None)
    if planner is not None:
        lines += ["", f"Planner per-step accuracy: {_fmt(planner.get('step_accuracy'), True)}."]
    if summary.get("training"):
        t = summary["training"]
        lines += ["", f"Training: {t.get('steps')} steps, {t.get('samples_per_s', 0):.0f} samples/s, "
                  f"final loss {t.get('final_loss', float('nan')):.4f}, {t.get('wall_s', 0):.0f} s."]  # fmt: skip
    lines += ["", "## Steps (each reproduces alone)", ""]
    lines += [f"- {s['name']} ({s['seconds']:.0f} s): `{s['command']}`" for s in summary["steps"]]
    names = ("success_by_mode.png", "learning_curve.png")
    drawn = [f"`figures/{name}`" for name in names if (figures / name).is_file()]
    lines += ["", f"Figures: {', '.join(drawn) or 'none'}. Videos:"]  # only those drawn (a quick run trains none)
    lines += [f"- {video}" for r in summary["modes"] for video in r["videos"]]
    return "\n".join(lines) + "\n"


def _html(summary: dict[str, Any], figures: Path) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['label'])}</td><td>{r['episodes']}</td><td>{_fmt(r['success'], True)}</td>"
        f"<td>{_fmt(r['success_train'], True)}</td><td>{_fmt(r['success_held_out'], True)}</td>"
        f"<td>{_fmt(r['corrections_per_episode'])}</td><td>{_fmt(r['control_step_p50_ms'])}</td>"
        f"<td>{_fmt(r['control_step_p99_ms'])}</td></tr>"
        for r in summary["modes"]
    )
    images = "".join(
        f'<figure><img src="figures/{name}" style="max-width:48%"><figcaption>{name}</figcaption></figure>'
        for name in ("success_by_mode.png", "learning_curve.png")
        if (figures / name).is_file()
    )
    videos = "".join(
        f'<figure><video src="{html.escape(v)}" controls width="320"></video><figcaption>{html.escape(v)}'
        "</figcaption></figure>"
        for r in summary["modes"]
        for v in r["videos"]
    )
    commands = "".join(
        f"<li><code>{html.escape(s['command'])}</code> ({s['seconds']:.0f} s)</li>" for s in summary["steps"]
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>tiers demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ddd}figure{display:inline-block;margin:8px}</style></head><body>"
        f"<h1>tiers demo</h1><p>{'quick run' if summary['quick'] else 'full run'}, {summary['wall_s']:.0f} s</p>"
        "<table><tr><th>mode</th><th>episodes</th><th>success</th><th>train</th><th>held-out</th>"
        f"<th>corrections/ep</th><th>step p50 ms</th><th>step p99 ms</th></tr>{rows}</table>"
        f"{images}<h2>Rollouts</h2>{videos}<h2>Steps</h2><ol>{commands}</ol></body></html>"
    )
