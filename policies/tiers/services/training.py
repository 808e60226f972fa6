"""The one training loop: accelerate, AdamW + warmup/cosine, EMA, checkpoints with training state, resume, log.

:func:`train` is generic: any ``nn.Module`` with ``forward(batch) -> (loss, info)`` and
``save(path, *, weights, step)`` trains with it, on batches collated from any torch ``Dataset`` (the generative
low-tier policies, the lerobot adapter, the RT-H motion predictor). What a model is built from, which data it
reads and how a run is evaluated is the application's (``tiers.apps.training``: ``tiers train``); this module
knows no tier, dataset format or simulator.

Output folder (the application adds its own files, e.g. ``train_config.yaml``)::

    <out>/
      checkpoints/<step>/        what the model's ``save`` writes + training_state/
      checkpoints/last           symlink to the newest checkpoint
      train_log.json             per-interval loss, learning rate, grad norm, throughput; evaluations; the summary
      learning_curve.png         loss against step

``training_state/`` (safetensors + JSON, never pickle): ``model.safetensors`` the raw weights,
``optimizer.safetensors`` AdamW's moments, ``ema.safetensors`` the EMA shadow weights, ``state.json`` the
step, the scheduler's counters, the optimiser's param groups, EMA counters, RNG state tensors in
``rng.safetensors``. Resuming restores all of it; the data order restarts with a fresh shuffle.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from tiers.core.config import Config
from tiers.core.errors import ConfigError, ContractError

CHECKPOINTS = "checkpoints"
LAST = "last"
TRAINING_STATE = "training_state"
LOG_FILE = "train_log.json"
CURVE_FILE = "learning_curve.png"


class TrainablePolicy(Protocol):
    """What :func:`train` needs of a policy (an ``nn.Module``)."""

    def __call__(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, Any] | None]: ...

    def save(self, path: Path, *, weights: str = "raw", step: int = 0) -> Any: ...


@dataclass
class TrainerConfig(Config):
    """How to optimise: steps, batches, optimiser, schedule, EMA, logging and checkpoints."""

    steps: int = 100_000  # optimiser steps in total (a resumed run continues up to this number)
    batch_size: int = 64  # samples per step per process
    num_workers: int = 4  # DataLoader worker processes (video decoding); 0 loads in the main process
    seed: int = 0  # seeds torch, numpy and python (accelerate's set_seed) and the data order
    device: str = "auto"  # "auto" (cuda when available) | "cpu" | "cuda"; multi-GPU: launch with accelerate
    mixed_precision: str = "no"  # accelerate's "no" | "fp16" | "bf16"
    lr: float = 1e-4  # AdamW peak learning rate
    weight_decay: float = 1e-6  # AdamW weight decay
    betas: tuple[float, float] = (0.95, 0.999)  # AdamW betas (diffusion_policy's)
    warmup_steps: int = 500  # linear warmup from 0 to lr
    lr_schedule: str = "cosine"  # diffusers' schedule name: "cosine" | "linear" | "constant_with_warmup"
    lr_floor: float = 0.0  # cosine only: decay to lr_floor × lr instead of 0 (the motion predictor's 0.05)
    grad_clip: float | None = 10.0  # max global gradient norm; None: no clipping
    ema: bool = True  # keep an exponential moving average of the weights; checkpoints act with it
    ema_decay: float = 0.9999  # the EMA's decay ceiling
    ema_power: float = 0.75  # EMA warmup: decay = 1 - (1 + step)^-power, capped at ema_decay
    find_unused_parameters: bool = False  # DDP: True for policies with parameters some steps leave unused
    log_every: int = 50  # steps between log records (mean loss of the interval)
    save_every: int = 5000  # steps between checkpoints (and one at the end)
    # wall-clock cap of one session, minutes: training stops at the first step past it, with a checkpoint (the
    # run ends short of ``steps``; the summary says so); None: no cap
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0 or self.warmup_steps < 0:
            raise ValueError(f"num_workers and warmup_steps must be >= 0, got {self.num_workers}, {self.warmup_steps}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if not 0.0 <= self.lr_floor < 1.0:
            raise ValueError(f"lr_floor must be in [0, 1), got {self.lr_floor}")
        if self.lr_floor and self.lr_schedule != "cosine":
            raise ValueError(f"lr_floor applies to the cosine schedule, not {self.lr_schedule!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or null, got {self.grad_clip}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive or null, got {self.max_minutes}")


@dataclass
class TrainSummary:
    """The end of a run, for the console and ``train_log.json``."""

    steps: int  # the step count reached (including steps of earlier sessions when resumed)
    session_steps: int  # steps run in this session
    samples_per_s: float  # training samples per second in this session (all processes)
    wall_s: float  # seconds of this session
    peak_memory_mb: float  # peak CUDA memory allocated (GPU) or peak resident set size (CPU), MiB
    memory_kind: str  # "cuda_allocated" | "cpu_rss"
    final_loss: float  # mean loss over the last log interval
    checkpoint: str  # the last checkpoint folder
    device: str  # where it trained
    processes: int  # accelerate processes
    main_process: bool = True  # whether this process is the one that writes checkpoints and logs
    time_limited: bool = False  # stopped by ``max_minutes`` before ``steps``

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def train(
    policy: nn.Module,
    dataset: torch.utils.data.Dataset[Any],
    config: TrainerConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    on_checkpoint: Callable[[Path, int], dict[str, Any]] | None = None,
) -> TrainSummary:
    """Train ``policy`` on ``dataset`` and write checkpoints, the log and the learning curve into ``out``.

    Args:
        policy: an ``nn.Module`` that is a :class:`TrainablePolicy` (``forward(batch) -> (loss, info)``,
            ``save(path, *, weights, step)``).
        dataset: items collated by torch's default collate into the policy's batches.
        config: the optimisation settings.
        out: the run folder (see the module docstring).
        resume: continue from ``out/checkpoints/last`` (weights, optimiser, schedule, EMA, step).
        progress: show a rich progress bar (main process only).
        on_log: called with each log record (step, loss, lr, ...).
        on_checkpoint: called on the main process with (checkpoint folder, step) after each checkpoint; what it
            returns (e.g. a success rate) is logged under ``"eval"`` in ``train_log.json``.

    Raises:
        ContractError: ``resume`` without a checkpoint, or a checkpoint that does not fit the policy.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    out = Path(out)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but torch sees no CUDA GPU; use device=cpu or auto")
    accelerator = Accelerator(
        cpu=config.device == "cpu",
        mixed_precision=config.mixed_precision,
        step_scheduler_with_optimizer=False,  # one scheduler step per optimiser step, whatever the process count
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
    )
    set_seed(config.seed)
    data_generator = torch.Generator().manual_seed(config.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(dataset) >= config.batch_size,  # type: ignore[arg-type]
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        pin_memory=accelerator.device.type == "cuda",
        generator=data_generator,
    )
    if len(loader) == 0:
        raise ContractError("the training dataset is empty")
    decay, no_decay = _parameter_groups(policy)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=config.betas,
    )
    scheduler = (
        _cosine_to_floor(optimizer, config)
        if config.lr_floor
        else get_scheduler(
            config.lr_schedule, optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=config.steps
        )
    )
    model, optimizer, loader, scheduler = accelerator.prepare(policy, optimizer, loader, scheduler)
    raw = accelerator.unwrap_model(model)
    ema = None
    if config.ema:
        ema = EMAModel(raw.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=config.ema_power)
        ema.to(accelerator.device)
    step, log, evals = 0, list[dict[str, Any]](), list[dict[str, Any]]()
    if resume:
        step, log, evals = _load_training_state(out, raw, optimizer, scheduler, ema)
        if accelerator.is_main_process:
            print(f"resuming from step {step} ({last_checkpoint(out)})")
    if step >= config.steps:
        raise ConfigError(f"the run in {out} already reached step {step}; ask for more with --steps > {step}")

    main = accelerator.is_main_process
    start_step, start = step, time.perf_counter()
    if accelerator.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    interval_loss, interval_count, interval_start, grad_norm = 0.0, 0, time.perf_counter(), float("nan")
    newest = last_checkpoint(out)
    bar = _progress(main and progress, total=config.steps, completed=step)
    deadline = None if config.max_minutes is None else start + 60 * config.max_minutes
    out_of_time = False
    model.train()
    try:
        while step < config.steps and not out_of_time:
            for batch in loader:
                loss, _ = model(batch)
                accelerator.backward(loss)
                if config.grad_clip is not None:
                    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), config.grad_clip))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.step(raw.parameters())
                step += 1
                interval_loss += float(loss.detach())
                interval_count += 1
                if deadline is not None:
                    out_of_time = _past(deadline, accelerator) and step < config.steps
                if step % config.log_every == 0 or step == config.steps or out_of_time:
                    elapsed = time.perf_counter() - interval_start
                    record = {
                        "step": step,
                        # the mean over every process's samples (a collective: every rank logs at the same steps)
                        "loss": float(
                            accelerator.reduce(
                                torch.tensor(interval_loss / interval_count, device=accelerator.device), "mean"
                            )
                        ),
                        "lr": scheduler.get_last_lr()[0],
                        "grad_norm": grad_norm,
                        "samples_per_s": interval_count * config.batch_size * accelerator.num_processes / elapsed,
                    }
                    log.append(record)
                    if on_log is not None:
                        on_log(record)
                    interval_loss, interval_count, interval_start = 0.0, 0, time.perf_counter()
                if bar is not None:
                    bar.update(step, loss=float(loss.detach()))
                if step % config.save_every == 0 or step == config.steps or out_of_time:
                    accelerator.wait_for_everyone()
                    if main:
                        newest = _save_checkpoint(out, raw, optimizer, scheduler, ema, step, log, evals)
                        if on_checkpoint is not None:
                            evals.append({"step": step, **on_checkpoint(newest, step)})
                            write_log(out, log, None, evals)
                if step >= config.steps or out_of_time:
                    break
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    if accelerator.device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(accelerator.device) / 2**20, "cuda_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_rss"
    summary = TrainSummary(
        steps=step,
        session_steps=step - start_step,
        samples_per_s=(step - start_step) * config.batch_size * accelerator.num_processes / wall,
        wall_s=wall,
        peak_memory_mb=peak,
        memory_kind=kind,
        final_loss=log[-1]["loss"] if log else float("nan"),
        checkpoint=str(newest),
        device=str(accelerator.device),
        processes=accelerator.num_processes,
        main_process=main,
        time_limited=out_of_time,
    )
    if main:
        write_log(out, log, summary, evals)
    accelerator.end_training()
    return summary


def _past(deadline: float, accelerator: Any) -> bool:
    """Whether the wall clock passed ``deadline``; with several processes, whether any one's did (a collective,
    so every rank stops at the same step)."""
    late = time.perf_counter() >= deadline
    if accelerator.num_processes == 1:
        return late
    return bool(accelerator.reduce(torch.tensor(float(late), device=accelerator.device), "max") > 0)


def launched_main_process() -> bool:
    """Whether this is rank 0 of a ``torchrun`` / ``accelerate launch`` job (or a plain single process).

    Read from the launcher's ``RANK`` variable, so it is known before an ``Accelerator`` exists.
    """
    return os.environ.get("RANK", "0") == "0"


# -- checkpoints with training state ----------------------------------------------------------------------


def _save_checkpoint(
    out: Path,
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    ema: Any,
    step: int,
    log: list[dict[str, Any]],
    evals: list[dict[str, Any]],
) -> Path:
    """Write ``checkpoints/<step>/`` (policy checkpoint + training_state/) and point ``last`` at it."""
    folder = out / CHECKPOINTS / f"{step:08d}"
    state_dir = folder / TRAINING_STATE
    state_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, str(state_dir / "model.safetensors"))  # the raw weights the optimiser updates
    optimizer_tensors, optimizer_meta = _optimizer_to_tensors(optimizer.state_dict())
    save_file(optimizer_tensors, str(state_dir / "optimizer.safetensors"))
    state: dict[str, Any] = {
        "step": step,
        "scheduler": _jsonable(scheduler.state_dict()),
        "optimizer": optimizer_meta,
        "ema": None,
    }
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(rng, str(state_dir / "rng.safetensors"))
    if ema is not None:
        ema_state = ema.state_dict()
        save_file(
            {f"shadow.{i}": p.detach().contiguous() for i, p in enumerate(ema_state["shadow_params"])},
            str(state_dir / "ema.safetensors"),
        )
        state["ema"] = {key: value for key, value in ema_state.items() if key != "shadow_params"}
        ema.store(model.parameters())
        ema.copy_to(model.parameters())
        try:
            model.save(folder, weights="ema", step=step)  # type: ignore[operator]
        finally:
            ema.restore(model.parameters())
    else:
        model.save(folder, weights="raw", step=step)  # type: ignore[operator]
    (state_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    link = out / CHECKPOINTS / LAST
    tmp = link.with_name(f".{LAST}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(folder.name)
    os.replace(tmp, link)
    write_log(out, log, None, evals)
    return folder


def _load_training_state(
    out: Path, model: nn.Module, optimizer: Any, scheduler: Any, ema: Any
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    folder = last_checkpoint(out)
    state_dir = folder / TRAINING_STATE
    if not (state_dir / "state.json").is_file():
        raise ContractError(f"{out}: nothing to resume (no {CHECKPOINTS}/{LAST}/{TRAINING_STATE}/state.json)")
    state = json.loads((state_dir / "state.json").read_text())
    missing, unexpected = load_model(model, str(state_dir / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise ContractError(
            f"{state_dir}/model.safetensors does not fit the policy of this run: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    optimizer.load_state_dict(
        _optimizer_from_tensors(load_file(str(state_dir / "optimizer.safetensors")), state["optimizer"])
    )
    scheduler.load_state_dict(state["scheduler"])
    rng = load_file(str(state_dir / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if ema is not None:
        if state["ema"] is None:
            raise ContractError(f"{state_dir}: the checkpoint has no EMA, this run keeps one (trainer.ema)")
        device = next(model.parameters()).device
        shadow = load_file(str(state_dir / "ema.safetensors"))
        ema.load_state_dict(
            {**state["ema"], "shadow_params": [shadow[f"shadow.{i}"].to(device) for i in range(len(shadow))]}
        )
    log_path = out / LOG_FILE
    saved = json.loads(log_path.read_text()) if log_path.is_file() else {}
    step = int(state["step"])
    log = [record for record in saved.get("log", []) if record["step"] <= step]
    return step, log, [record for record in saved.get("eval", []) if record["step"] <= step]


def last_checkpoint(out: Path) -> Path:
    """``out/checkpoints/last``: the newest checkpoint folder of the run in ``out``."""
    return out / CHECKPOINTS / LAST


def _optimizer_to_tensors(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """torch optimiser state -> (tensors for safetensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": _jsonable(state["param_groups"]), "scalars": scalars}


def _optimizer_from_tensors(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    groups = [dict(group, betas=tuple(group["betas"])) if "betas" in group else group for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return repr(value)


def _cosine_to_floor(optimizer: torch.optim.Optimizer, config: TrainerConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """diffusers' linear warmup + half-cosine, ending at ``lr_floor × lr`` rather than 0."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return step / max(1, config.warmup_steps)
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.lr_floor + (1.0 - config.lr_floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _parameter_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights that decay (matrices, kernels) and those that do not (biases, norms, embeddings of size 1)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return decay, no_decay


# -- log, plot, progress ------------------------------------------------------------------------------------


def write_log(
    out: Path, log: list[dict[str, Any]], summary: TrainSummary | None, evals: list[dict[str, Any]] | None = None
) -> None:
    """``train_log.json`` (loss records, kitchen evaluations, summary) and ``learning_curve.png``."""
    payload: dict[str, Any] = {"log": log, "eval": evals or []}
    if summary is not None:
        payload["summary"] = summary.to_dict()
    (out / LOG_FILE).write_text(json.dumps(payload, indent=2) + "\n")
    if log:
        plot_learning_curve(log, out / CURVE_FILE, evals or [])


def plot_learning_curve(log: list[dict[str, Any]], path: Path, evals: list[dict[str, Any]] | None = None) -> None:
    """Loss (log scale) and learning rate against step; kitchen success rates below when there are evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [record["step"] for record in log]
    if evals:
        figure, (axis, eval_axis) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=[2, 1])
        eval_steps = [record["step"] for record in evals]
        eval_axis.plot(eval_steps, [record["success_rate"] for record in evals], marker="o", label="task success")
        eval_axis.plot(eval_steps, [record["subtask_rate"] for record in evals], marker="s", label="subtasks reached")
        eval_axis.set_ylim(-0.05, 1.05)
        eval_axis.set_ylabel("kitchen (control mode)")
        eval_axis.set_xlabel("optimiser step")
        eval_axis.legend(loc="upper left")
        eval_axis.grid(alpha=0.3)
    else:
        figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(steps, [record["loss"] for record in log], color="tab:blue", marker="o" if len(log) < 30 else None)
    if not evals:
        axis.set_xlabel("optimiser step")
    axis.set_ylabel("training loss (interval mean)", color="tab:blue")
    if all(record["loss"] > 0 for record in log):
        axis.set_yscale("log")
    lr_axis = axis.twinx()
    lr_axis.plot(steps, [record["lr"] for record in log], color="tab:orange", alpha=0.6)
    lr_axis.set_ylabel("learning rate", color="tab:orange")
    axis.set_title("tiers train: learning curve")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


class _Bar:
    """A rich progress bar showing step, loss and rate."""

    def __init__(self, total: int, completed: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeRemainingColumn(),
        )
        self._task = self._progress.add_task("train", total=total, completed=completed, loss=float("nan"))
        self._progress.start()

    def update(self, step: int, *, loss: float) -> None:
        self._progress.update(self._task, completed=step, loss=loss)

    def close(self) -> None:
        self._progress.stop()


def _progress(enabled: bool, *, total: int, completed: int) -> _Bar | None:
    return _Bar(total, completed) if enabled else None
