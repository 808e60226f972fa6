"""The low-tier study (``tiers bench lowlevel --success``): every low tier trained on one recording, run in the kitchen.

Arms (:data:`ARMS`), each trained on the same recorded LeRobotDataset with the same optimiser steps × batch
(and, with ``train_minutes``, the same wall-clock cap per run), for ``seeds`` training seeds::

    beso                BESO (EDM score model) sampled with 3 network evaluations
    flow                rectified flow matching at its preset's Euler steps
    ddpm                the DDPM baseline at 100 ancestral steps
    ddim10              the *same* trained DDPM weights sampled by DDIM with 10 steps (no training of its own: a
                        checkpoint folder whose config.json names the sampler, its weights a link to ddpm's)
    lerobot_diffusion   lerobot's DiffusionPolicy through the adapter (DDPM 100 steps)
    lerobot_act         lerobot's ACT through the adapter (one forward pass per chunk)

Presets (:data:`STUDY_PRESETS`): ``cpu`` (the tiers kitchen presets; lerobot's policies at the CPU sizes of
``configs/train/lerobot_{diffusion,act}_cpu.yaml``, whose comments say how they differ from lerobot's defaults),
``kitchen`` (lerobot at its defaults: a GPU) and ``tiny`` (tests).

Each run is evaluated by ``tiers eval``'s control-mode controller on the dataset's tasks from the same unseen
initial states (seeds ``EVAL_SEED_OFFSET + e``), and its chunk latency is measured on the trained checkpoint in
the same run (one chunk, B = 1, on the CPU, median of ``latency_repeats``; with one torch thread the process
CPU time, which other processes on a shared machine do not inflate).

Resumable: everything a run produces lies under ``out/``::

    study.json                       the budget; a rerun with another budget in the same folder is refused
    <policy>/seed<k>/                the trainer's run folder (checkpoints, train_log.json) and
        training.json                what the run trained: steps done, wall time, whether the time cap stopped it
    <arm>/seed<k>/episodes.jsonl     one line per evaluated episode, appended as they finish
    <arm>/seed<k>/result.json        the finished evaluation: episodes, successes, latency per chunk
    summary.json, table.md, success.png

A rerun trains only what has no ``training.json`` (resuming from the last checkpoint), evaluates only what has
no ``result.json`` (skipping the episodes already in ``episodes.jsonl``). ``workers`` spreads the (policy, seed)
jobs over processes (spawned, one torch thread each unless ``threads`` says otherwise).

Figures per arm: pooled successes / episodes over seeds with the Wilson 95 % interval, mean ± std of the
per-seed success rates, latency per chunk, steps trained; and the study's goal (:func:`goal_check`): BESO-3 at
least as successful as the best peer at one tenth of its latency or less.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from tiers.apps.bench.lowlevel import one_step_batch, time_call
from tiers.apps.evaluation.report import EvalMode, wilson_interval
from tiers.apps.evaluation.runner import EpisodeRunner
from tiers.apps.evaluation.settings import EpisodeJob, EvalSettings
from tiers.apps.training import LerobotTrainConfig, LowPolicyTrainConfig, train_lerobot_policy, train_low_policy
from tiers.core.config import Config, load_config
from tiers.core.errors import ContractError
from tiers.core.locations import preset_path
from tiers.datasets.recorder import EPISODES_LOG, read_episode_log
from tiers.policies.low.checkpoint import CONFIG_FILE, EMBODIMENT_FILE, STATS_FILE, WEIGHTS_FILE, load_policy
from tiers.policies.low.lerobot_adapter import LerobotKind, LerobotPolicyAdapter

ARMS = ("beso", "flow", "ddpm", "ddim10", "lerobot_diffusion", "lerobot_act")  # table order
TRAINED_AS = {"ddim10": "ddpm"}  # arms evaluated on another arm's trained weights
# what each trained policy's run config is told beyond its preset (the sampler the arm is named after)
POLICY_OVERRIDES = {"beso": ["policy.sampler_steps=3"], "ddpm": ["policy.sampler_steps=100"]}
DDIM_STEPS = 10
STUDY_PRESETS = ("cpu", "kitchen", "tiny")
BESO = "beso"
GOAL_SPEEDUP = 10.0  # BESO-3's latency must be at most 1/GOAL_SPEEDUP of the best peer's
EVAL_SEED_OFFSET = 1000  # evaluation episodes start from seeds the recording (seeds 0, 1, …) never used
STUDY_FILE, TRAINING_FILE, EPISODES_FILE, RESULT_FILE = "study.json", "training.json", "episodes.jsonl", "result.json"
BUDGET_FIELDS = ("dataset", "steps", "batch_size", "preset", "device", "train_minutes", "max_steps")


@dataclass
class LowTierStudyConfig(Config):
    """``tiers bench lowlevel --success``: the training budget, the evaluation sample and how the jobs run."""

    dataset: Path  # a LeRobotDataset recorded by ``tiers record`` (its meta/tiers_episodes.jsonl names the tasks)
    steps: int = 2000  # optimiser steps per training run (the same budget for every policy)
    batch_size: int = 32  # windows per step (the same for every policy)
    train_minutes: float | None = None  # wall-clock cap per training run (the same for every policy); None: none
    seeds: int = 3  # training seeds per policy
    episodes: int = 5  # evaluation episodes per task and training seed (unseen initial states)
    preset: str = "cpu"  # network sizes: "cpu" | "kitchen" | "tiny" (see the module docstring)
    device: str = "auto"  # trainer.device: "auto" | "cpu" | "cuda" (latency is always measured on the CPU)
    num_workers: int = 0  # DataLoader workers per training run (0: in the job's process; jobs run side by side)
    max_steps: int | None = None  # per-episode control-step limit; None: the benchmark's own
    arms: list[str] = field(default_factory=lambda: list(ARMS))  # which arms to train and evaluate
    workers: int = 1  # processes the (policy, seed) jobs are spread over
    threads: int = 1  # torch CPU threads per job (training, episodes and latency)
    latency_repeats: int = 20  # timed chunks per run (the median is reported)
    latency_warmup: int = 2  # untimed chunks before them

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "seeds", "episodes", "workers", "threads", "latency_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.latency_warmup < 0 or self.num_workers < 0:
            raise ValueError(f"latency_warmup, num_workers must be >= 0, got {self.latency_warmup}, {self.num_workers}")
        if self.train_minutes is not None and self.train_minutes <= 0:
            raise ValueError(f"train_minutes must be positive or null, got {self.train_minutes}")
        if self.preset not in STUDY_PRESETS:
            raise ValueError(f"preset must be one of {list(STUDY_PRESETS)}, got {self.preset!r}")
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown or not self.arms:
            raise ValueError(f"arms must be among {list(ARMS)}, got {self.arms}")
        self.arms = [arm for arm in ARMS if arm in self.arms]  # table order, no repeats

    def budget(self) -> dict[str, Any]:
        """What makes runs comparable (a rerun in the same folder must keep it)."""
        values = {name: getattr(self, name) for name in BUDGET_FIELDS}
        values["dataset"] = str(Path(self.dataset).resolve())
        return values


def trained_as(arm: str) -> str:
    """The policy whose training run an arm evaluates (itself, or ddpm for ddim10)."""
    return TRAINED_AS.get(arm, arm)


def study_train_config(policy: str, preset: str, overrides: Iterable[str] = ()) -> Any:
    """The run config of a trained policy at a study preset (a LowPolicyTrainConfig or LerobotTrainConfig)."""
    overrides = list(overrides)
    if policy.startswith("lerobot_"):
        kind = policy.removeprefix("lerobot_")
        tiny = "lerobot_tiny" if kind == "diffusion" else f"lerobot_{kind}_tiny"
        name = {"cpu": f"lerobot_{kind}_cpu", "kitchen": f"lerobot_{kind}_kitchen", "tiny": tiny}[preset]
        return load_config(LerobotTrainConfig, preset_path("train", name), overrides=overrides)
    name = "tiny" if preset == "tiny" else f"{policy}_kitchen"
    return load_config(
        LowPolicyTrainConfig, preset_path("train", name), overrides=[f"policy.generator={policy}", *overrides]
    )


def dataset_tasks(root: Path) -> list[str]:
    """The kitchen task ids of the episodes kept in a ``tiers record`` dataset.

    Raises:
        ContractError: the dataset has no ``meta/tiers_episodes.jsonl`` (it was not recorded by tiers).
    """
    tasks = sorted({record.task_id for record in read_episode_log(root) if record.episode_index is not None})
    if not tasks:
        raise ContractError(f"{root / EPISODES_LOG}: no kept episode; the success study needs a tiers recording")
    return tasks


# -- one job: train one policy for one seed, evaluate the arms that use it ------------------------------------


@dataclass(frozen=True)
class StudyJob:
    """One (policy, seed) training run and the arms evaluated on it (picklable: it travels to a worker)."""

    config: LowTierStudyConfig
    out: Path
    tasks: tuple[str, ...]
    policy: str
    seed: int
    arms: tuple[str, ...]


@dataclass
class JobOutcome:
    """What a job did: whether it trained, which arms it evaluated, the arms' results."""

    policy: str
    seed: int
    trained: bool
    evaluated: list[str]
    results: dict[str, dict[str, Any]]


def run_job(job: StudyJob, say: Callable[[str], None] | None = None) -> JobOutcome:
    """Train (unless finished) and evaluate (unless finished) with ``job.config.threads`` torch threads."""
    say = say or (lambda message: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(job.config.threads)
    try:
        training, trained = _train(job, say)
        results, evaluated = {}, []
        for arm in job.arms:
            result_path = job.out / arm / f"seed{job.seed}" / RESULT_FILE
            if result_path.is_file():  # finished, unless more episodes are asked for now
                result = json.loads(result_path.read_text())
                if {(episode["task"], episode["seed"]) for episode in result["episodes"]} == set(_episodes(job)):
                    results[arm] = result
                    continue
            results[arm] = _evaluate(job, arm, training, say)
            evaluated.append(arm)
        return JobOutcome(job.policy, job.seed, trained, evaluated, results)
    finally:
        torch.set_num_threads(threads)


def _train(job: StudyJob, say: Callable[[str], None]) -> tuple[dict[str, Any], bool]:
    """``training.json`` of the job's run: read when finished, else trained (resumed from its last checkpoint)."""
    config, run_dir = job.config, job.out / job.policy / f"seed{job.seed}"
    record_path = run_dir / TRAINING_FILE
    if record_path.is_file():
        return json.loads(record_path.read_text()), False
    finished = _finished_summary(run_dir, config.steps)  # the trainer ended but training.json was not written
    resumed = (run_dir / "checkpoints" / "last").exists()
    if finished is None:
        overrides = [
            f"trainer.steps={config.steps}",
            f"trainer.batch_size={config.batch_size}",
            f"trainer.seed={job.seed}",
            f"trainer.device={config.device}",
            f"trainer.num_workers={config.num_workers}",
            f"trainer.save_every={max(1, config.steps // 4)}",  # checkpoints to resume from
            f"trainer.log_every={max(1, min(50, config.steps))}",
            f"trainer.warmup_steps={min(500, config.steps // 10)}",
            *([f"trainer.max_minutes={config.train_minutes}"] if config.train_minutes else []),
            *POLICY_OVERRIDES.get(job.policy, []),
        ]
        run_config = study_train_config(job.policy, config.preset, overrides)
        cap = f", at most {config.train_minutes:g} min" if config.train_minutes else ""
        say(f"{job.policy} seed {job.seed}: training {config.steps} steps × {config.batch_size}{cap}")
        trainer = train_lerobot_policy if job.policy.startswith("lerobot_") else train_low_policy
        finished = trainer(config.dataset, run_config, run_dir, resume=resumed, progress=False).to_dict()
    record = {
        "policy": job.policy,
        "seed": job.seed,
        "budget": {"steps": config.steps, "batch_size": config.batch_size, "train_minutes": config.train_minutes},
        "steps_done": finished["steps"],
        "time_limited": bool(finished.get("time_limited", False)),
        "resumed": resumed,
        "wall_s_last_session": finished["wall_s"],
        "samples_per_s": finished["samples_per_s"],
        "peak_memory_mb": finished["peak_memory_mb"],
        "memory_kind": finished["memory_kind"],
        "final_loss": finished["final_loss"],
        "checkpoint": os.path.relpath(Path(finished["checkpoint"]).resolve(), run_dir.resolve()),
    }
    _write_json(record_path, record)
    return record, True


def _finished_summary(run_dir: Path, steps: int) -> dict[str, Any] | None:
    """The trainer's summary in ``train_log.json`` when its run reached ``steps`` or its time cap, else None."""
    log = run_dir / "train_log.json"
    if not log.is_file():
        return None
    summary: dict[str, Any] | None = json.loads(log.read_text()).get("summary")
    if summary and (summary["steps"] >= steps or summary.get("time_limited")):
        return summary
    return None


def _evaluate(job: StudyJob, arm: str, training: Mapping[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """Run the arm's episodes (those not yet in episodes.jsonl), measure its chunk latency, write result.json."""
    config, arm_dir = job.config, job.out / arm / f"seed{job.seed}"
    arm_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = (job.out / job.policy / f"seed{job.seed}" / training["checkpoint"]).resolve()
    if arm == "ddim10":
        checkpoint = sampler_variant(checkpoint, arm_dir / "checkpoint", sampler="ddim", steps=DDIM_STEPS)
    wanted = _episodes(job)
    episodes_path = arm_dir / EPISODES_FILE
    done = _read_episodes(episodes_path)
    todo = [key for key in wanted if key not in done]
    if todo:
        say(f"{arm} seed {job.seed}: evaluating {len(todo)} of {len(wanted)} episodes")
        settings = EvalSettings(
            mode=EvalMode.CONTROL, controller=str(checkpoint), max_steps=config.max_steps, torch_threads=config.threads
        )
        runner = EpisodeRunner(settings)
        try:
            with episodes_path.open("a") as lines:
                for index, (task, seed) in enumerate(todo):
                    outcome = runner(EpisodeJob(index, task, seed))
                    record = {
                        "task": task,
                        "seed": seed,
                        "success": bool(outcome.success),
                        "steps": outcome.steps,
                        "reason": outcome.reason,
                    }
                    lines.write(json.dumps(record) + "\n")
                    lines.flush()
                    done[task, seed] = record
        finally:
            runner.env.close()
    say(f"{arm} seed {job.seed}: latency per chunk")
    episodes = [done[key] for key in wanted]
    successes = sum(record["success"] for record in episodes)
    result = {
        "arm": arm,
        "seed": job.seed,
        "trained_as": job.policy,
        "checkpoint": os.path.relpath(checkpoint, job.out.resolve()),
        "training": dict(training),
        "episodes": episodes,
        "successes": successes,
        "episode_count": len(episodes),
        "success_rate": successes / len(episodes),
        "latency": chunk_latency(checkpoint, repeats=config.latency_repeats, warmup=config.latency_warmup),
    }
    _write_json(arm_dir / RESULT_FILE, result)
    return result


def _episodes(job: StudyJob) -> list[tuple[str, int]]:
    """(task, initial-state seed) of every episode a run is evaluated on: the same for every arm and seed."""
    return [(task, EVAL_SEED_OFFSET + episode) for task in job.tasks for episode in range(job.config.episodes)]


def _read_episodes(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Episodes already evaluated, by (task, seed); a line cut short by an interruption is ignored."""
    done: dict[tuple[str, int], dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[record["task"], record["seed"]] = record
    return done


def sampler_variant(source: Path, dest: Path, *, sampler: str, steps: int) -> Path:
    """A checkpoint folder at ``dest`` that samples ``source``'s DDPM weights with another sampler.

    config.json names the sampler and its steps; the statistics and features are copied; model.safetensors is a
    relative link to the source's (no copy, no training). Returns ``dest``.
    """
    meta = json.loads((source / CONFIG_FILE).read_text())
    policy = meta["config"]
    if policy.get("generator") != "ddpm":
        raise ContractError(f"{source}: a {policy.get('generator')!r} checkpoint; sampler variants are DDPM's")
    policy.setdefault("generator_options", {})["sampler"] = sampler
    policy["sampler_steps"] = steps
    dest.mkdir(parents=True, exist_ok=True)
    _write_json(dest / CONFIG_FILE, meta)
    for name in (STATS_FILE, EMBODIMENT_FILE):
        (dest / name).write_text((source / name).read_text())
    link = dest / WEIGHTS_FILE
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(source / WEIGHTS_FILE, dest))
    return dest


def chunk_latency(checkpoint: Path, *, repeats: int, warmup: int) -> dict[str, Any]:
    """One action chunk of the checkpoint's policy on the CPU, B = 1: median / fastest wall ms, median CPU ms."""
    policy = load_policy(checkpoint, device="cpu").eval()
    batch = one_step_batch(policy, "cpu")
    timing = time_call(partial(policy.predict_action_chunk, batch), repeats=repeats, warmup=warmup, device="cpu")
    return {
        "chunk_ms": timing.median_ms,
        "chunk_best_ms": timing.best_ms,
        "chunk_cpu_ms": timing.cpu_ms,
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
        "network_evaluations": network_evaluations(policy),
    }


def network_evaluations(policy: Any) -> int:
    """Denoising-network (or transformer) evaluations per chunk of a loaded low-tier policy."""
    if isinstance(policy, LerobotPolicyAdapter):
        lerobot = policy.policy.config
        if policy.config.kind is LerobotKind.ACT:
            return 1
        return int(lerobot.num_inference_steps or lerobot.num_train_timesteps)
    return int(policy.config.sampler_steps or policy.generator.config.steps)


def _write_json(path: Path, data: Any) -> None:
    """Write next to the final name and rename: a reader (or a rerun after a kill) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# -- the study -------------------------------------------------------------------------------------------------


def study_jobs(config: LowTierStudyConfig, out: Path, tasks: list[str]) -> list[StudyJob]:
    """One job per (trained policy, seed), with the arms evaluated on it; seeds outermost, so the first
    results cover every arm."""
    policies = list(dict.fromkeys(trained_as(arm) for arm in config.arms))
    return [
        StudyJob(
            config,
            out,
            tuple(tasks),
            policy,
            seed,
            tuple(arm for arm in config.arms if trained_as(arm) == policy),
        )
        for seed in range(config.seeds)
        for policy in policies
    ]


def run_low_tier_study(
    config: LowTierStudyConfig, out: Path, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Train and evaluate every arm's runs under ``out`` (resuming what is there); the study's figures.

    Writes ``summary.json`` (the figures), ``table.md`` and ``success.png`` into ``out``; returns the figures
    (flat: see :func:`summarise`), with ``runs.trained`` / ``runs.evaluated``: what this call did.

    Raises:
        ContractError: ``out`` holds a study with another budget (see :data:`BUDGET_FIELDS`).
    """
    say = progress or (lambda message: None)
    out = Path(out).resolve()
    tasks = dataset_tasks(config.dataset)
    _claim(out, config)
    jobs = study_jobs(config, out, tasks)
    outcomes: list[JobOutcome] = []
    if config.workers == 1:
        outcomes = [run_job(job, say) for job in jobs]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(config.workers, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(run_job, job): job for job in jobs}
            for future in as_completed(futures):
                outcome = future.result()
                outcomes.append(outcome)
                evaluated = ", ".join(outcome.evaluated) or "nothing"
                say(f"{outcome.policy} seed {outcome.seed}: done ({evaluated} evaluated)")
    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in config.arms}
    for outcome in sorted(outcomes, key=lambda outcome: outcome.seed):
        for arm, result in outcome.results.items():
            results[arm].append(result)
    figures = summarise(config, tasks, results)
    figures["runs.trained"] = sum(outcome.trained for outcome in outcomes)
    figures["runs.evaluated"] = sum(len(outcome.evaluated) for outcome in outcomes)
    _write_json(out / "summary.json", figures)
    (out / "table.md").write_text(markdown_table(figures) + "\n")
    plot_study(figures, out / "success.png")
    return figures


def _claim(out: Path, config: LowTierStudyConfig) -> None:
    """Write ``study.json`` with the budget, or check that the study already in ``out`` has the same one."""
    path, budget = out / STUDY_FILE, config.budget()
    if path.is_file():
        held = json.loads(path.read_text())["budget"]
        changed = {name: (held.get(name), budget[name]) for name in BUDGET_FIELDS if held.get(name) != budget[name]}
        if changed:
            raise ContractError(
                f"{out} holds a study with another budget ({changed}: held, asked); resume it as it was or pass "
                "another --out"
            )
        return
    _write_json(path, {"budget": budget})


def summarise(
    config: LowTierStudyConfig, tasks: list[str], results: Mapping[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Flat figures per arm (pooled Wilson interval, mean ± std over seeds, latency, training) and the goal."""
    cpu = config.threads == 1
    figures: dict[str, Any] = {
        "tasks": " ".join(tasks),
        "episodes_per_run": len(tasks) * config.episodes,
        "budget.steps": config.steps,
        "budget.batch_size": config.batch_size,
        "budget.train_minutes": config.train_minutes,
        "preset": config.preset,
        "seeds": config.seeds,
        "arms": " ".join(config.arms),
        # CPU time with one thread: the latency a free core would give, whatever else the machine runs
        "latency_basis": "cpu_ms_1_thread" if cpu else "wall_ms_median",
    }
    for arm, runs in results.items():
        if not runs:
            continue
        rates = [run["success_rate"] for run in runs]
        successes = sum(run["successes"] for run in runs)
        episodes = sum(run["episode_count"] for run in runs)
        low, high = wilson_interval(successes, episodes)
        latencies = [run["latency"]["chunk_cpu_ms" if cpu else "chunk_ms"] for run in runs]
        trainings = [run["training"] for run in runs]
        figures.update(
            {
                f"success.{arm}.successes": successes,
                f"success.{arm}.episodes": episodes,
                f"success.{arm}.rate": successes / episodes,
                f"success.{arm}.ci95_low": low,
                f"success.{arm}.ci95_high": high,
                f"success.{arm}.mean": statistics.fmean(rates),
                f"success.{arm}.std": statistics.pstdev(rates),
                f"success.{arm}.per_seed": " ".join(f"{rate:.3f}" for rate in rates),
                f"latency.{arm}.chunk_ms": statistics.fmean(latencies),
                f"latency.{arm}.per_seed": " ".join(f"{value:.2f}" for value in latencies),
                f"{arm}.network_evaluations": runs[0]["latency"]["network_evaluations"],
                f"{arm}.trained_as": trained_as(arm),
                f"{arm}.train_steps_done": statistics.fmean(training["steps_done"] for training in trainings),
                f"{arm}.train_time_limited_runs": sum(training["time_limited"] for training in trainings),
                f"{arm}.train_samples_per_s": statistics.fmean(training["samples_per_s"] for training in trainings),
                f"{arm}.train_peak_memory_mb": statistics.fmean(training["peak_memory_mb"] for training in trainings),
            }
        )
    figures.update(goal_check(figures))
    return figures


def goal_check(figures: Mapping[str, Any]) -> dict[str, Any]:
    """BESO-3 at least as successful (pooled rate) as the best peer at <= 1/10 of its latency: goal.* figures.

    The best peer is the other arm with the highest pooled success rate (ties: the fastest, the hardest to beat
    by ten times). ``goal.status`` is "met", "not met" or "undecided" (BESO or every peer missing);
    ``goal.detail`` says which condition fails, with the figures.
    """
    arms = [key.split(".")[1] for key in figures if key.startswith("success.") and key.endswith(".rate")]
    peers = [arm for arm in arms if arm != BESO]
    if BESO not in arms or not peers:
        return {"goal.status": "undecided", "goal.detail": "needs the beso arm and at least one peer"}

    def rate(arm: str) -> float:
        return float(figures[f"success.{arm}.rate"])

    def latency(arm: str) -> float:
        return float(figures[f"latency.{arm}.chunk_ms"])

    best = min(peers, key=lambda arm: (-rate(arm), latency(arm)))
    ratio = latency(best) / latency(BESO)
    failures = []
    if rate(BESO) < rate(best):
        failures.append(f"success {rate(BESO):.1%} < {best}'s {rate(best):.1%}")
    if ratio < GOAL_SPEEDUP:
        failures.append(
            f"latency {latency(BESO):.1f} ms is 1/{ratio:.1f} of {best}'s {latency(best):.1f} ms, "
            f"not <= 1/{GOAL_SPEEDUP:g}"
        )
    met = not failures
    detail = (
        f"success {rate(BESO):.1%} >= {best}'s {rate(best):.1%} at 1/{ratio:.1f} of its latency"
        if met
        else "; ".join(failures)
    )
    return {
        "goal.status": "met" if met else "not met",
        "goal.best_peer": best,
        "goal.speedup_over_best_peer": ratio,
        "goal.success_gap_points": 100 * (rate(BESO) - rate(best)),
        "goal.detail": detail,
    }


def goal_line(figures: Mapping[str, Any]) -> str:
    """The goal check as printed: ``BESO-3 ≥ best peer at ≤ 1/10 latency: met (…)``."""
    return f"BESO-3 ≥ best peer at ≤ 1/10 latency: {figures['goal.status']} ({figures['goal.detail']})"


def study_rows(figures: Mapping[str, Any]) -> list[list[str]]:
    """One row per arm: arm, network evaluations, success pooled [Wilson 95 %], mean ± std over seeds,
    latency per chunk, steps trained."""
    rows = []
    for arm in str(figures["arms"]).split():
        if f"success.{arm}.rate" not in figures:
            continue
        limited = figures[f"{arm}.train_time_limited_runs"]
        rows.append(
            [
                arm,
                str(figures[f"{arm}.network_evaluations"]),
                f"{figures[f'success.{arm}.successes']}/{figures[f'success.{arm}.episodes']} = "
                f"{figures[f'success.{arm}.rate']:.1%} [{figures[f'success.{arm}.ci95_low']:.1%}, "
                f"{figures[f'success.{arm}.ci95_high']:.1%}]",
                f"{figures[f'success.{arm}.mean']:.1%} ± {figures[f'success.{arm}.std']:.1%}",
                f"{figures[f'latency.{arm}.chunk_ms']:.1f}",
                f"{figures[f'{arm}.train_steps_done']:.0f}" + (f" ({limited} capped)" if limited else ""),
            ]
        )
    return rows


STUDY_COLUMNS = (
    "arm",
    "evals/chunk",
    "success, pooled [Wilson 95%]",
    "mean ± std over seeds",
    "ms/chunk",
    "steps trained",
)


def markdown_table(figures: Mapping[str, Any]) -> str:
    """The study's table in Markdown, with its budget and the goal line (for the low tier's README)."""
    minutes = figures.get("budget.train_minutes")
    lines = [
        f"Budget: {figures['budget.steps']} steps × {figures['budget.batch_size']} windows"
        + (f", at most {minutes:g} min" if minutes else "")
        + f" per run; {figures['seeds']} seeds; {figures['episodes_per_run']} episodes per run "
        f"({figures['tasks']}); preset {figures['preset']}; latency: {figures['latency_basis']}, B = 1.",
        "",
        "| " + " | ".join(STUDY_COLUMNS) + " |",
        "|" + "|".join("---" for _ in STUDY_COLUMNS) + "|",
        *("| " + " | ".join(row) + " |" for row in study_rows(figures)),
        "",
        goal_line(figures),
    ]
    return "\n".join(lines)


def plot_study(figures: Mapping[str, Any], path: Path) -> Path:
    """Success (pooled, Wilson 95 % bars) against latency per chunk (log x), per-seed rates as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    arms = [arm for arm in str(figures["arms"]).split() if f"success.{arm}.rate" in figures]
    for index, arm in enumerate(arms):
        rate, x = figures[f"success.{arm}.rate"], figures[f"latency.{arm}.chunk_ms"]
        errors = [[rate - figures[f"success.{arm}.ci95_low"]], [figures[f"success.{arm}.ci95_high"] - rate]]
        colour = colours[index % len(colours)]
        axis.errorbar([x], [rate], yerr=errors, fmt="o", capsize=5, color=colour, markersize=8, label=arm)
        seeds_x = [float(value) for value in str(figures[f"latency.{arm}.per_seed"]).split()]
        seeds_y = [float(value) for value in str(figures[f"success.{arm}.per_seed"]).split()]
        axis.plot(seeds_x, seeds_y, ".", color=colour, alpha=0.5)
    axis.set_xscale("log")
    axis.set_ylim(-0.02, 1.05)
    axis.set_xlabel(f"latency per chunk, ms ({figures['latency_basis']}, B = 1)")
    axis.set_ylabel("success rate (kitchen control mode)")
    minutes = figures.get("budget.train_minutes")
    cap = f", ≤ {minutes:g} min" if minutes else ""
    axis.set_title(
        f"low-tier study: {figures['budget.steps']} steps × {figures['budget.batch_size']}{cap}, "
        f"{figures['seeds']} seeds, {figures['episodes_per_run']} episodes/run; bars: Wilson 95%",
        fontsize=9,
    )
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
