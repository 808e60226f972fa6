"""``tiers train``: train a low-tier policy (BESO, flow matching, DDPM, lerobot's) or the motion predictor.

    tiers train --dataset data/drawer --policy beso --out outputs/train/beso
    tiers train --dataset data/drawer --policy flow --out runs/flow --config configs/train/flow_kitchen.yaml \\
        --steps 20000 --batch-size 128 --device cuda trainer.lr=3e-4 policy.horizon=16
    tiers train --dataset data/drawer --out runs/flow --resume --steps 40000   # continue a run (its saved config)
    accelerate launch -m tiers.cli.main train --dataset ... --out ...   # several GPUs or nodes

Without ``--config`` the preset ``configs/train/<policy>_kitchen.yaml`` is used. Trailing ``key=value``
arguments override the config (``policy.cfg_scale=2``). A dataset that names its cameras or language
column otherwise than the preset is mapped onto it when that is unambiguous, and the mapping is printed;
otherwise the error names the override to pass (``policy.conditioning.cameras=[cam_high,cam_wrist]``,
``policy.conditioning.language_key=task``); an override given is used as is. DataLoader workers are
``trainer.num_workers`` capped to the machine (CPUs - 1), unless ``--num-workers`` or ``trainer.num_workers=``
sets them. Writes checkpoints (safetensors + JSON), the config, ``train_log.json`` and
``learning_curve.png`` into ``--out`` and ends with a summary. The runs themselves are
:mod:`tiers.apps.training` (low tier) and :mod:`tiers.apps.motion_predictor_training` (``motion``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = (
    "train a low-tier policy (beso | flow | ddpm | lerobot_diffusion | lerobot_act) or the RT-H motion predictor "
    "(motion) on a LeRobotDataset; "
    "checkpoints, resume, learning curve"
)
LEROBOT_POLICIES = ("lerobot_diffusion", "lerobot_act")  # lerobot's own policies, run through the lerobot adapter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", type=Path, required=True, help="LeRobotDataset folder (holds meta/info.json)")
    parser.add_argument(
        "--policy",
        choices=["beso", "flow", "ddpm", *LEROBOT_POLICIES, "motion"],
        default=None,
        help="generative core, lerobot policy, or 'motion' (the high tier's RT-H language-motion predictor)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, log, plot)")
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML preset (default configs/train/<policy>_kitchen.yaml)"
    )
    parser.add_argument("--steps", type=int, default=None, help="total optimiser steps (trainer.steps)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="samples per step per process (trainer.batch_size)"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="trainer.device")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="DataLoader workers (trainer.num_workers), as given; default: the preset's, capped at the CPUs - 1",
    )
    parser.add_argument("--save-every", type=int, default=None, help="steps between checkpoints (trainer.save_every)")
    parser.add_argument("--seed", type=int, default=None, help="trainer.seed")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    parser.add_argument("overrides", nargs="*", default=[], help="config overrides key=value (policy.horizon=16)")


def resolve_config(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The YAML file and the override list this invocation means (flags become overrides)."""
    from tiers.apps.training import RUN_CONFIG
    from tiers.core.errors import ConfigError
    from tiers.core.locations import preset_path

    overrides = list(args.overrides)
    if args.resume and args.config is None:
        path = args.out / RUN_CONFIG
        if not path.is_file():
            raise ConfigError(f"--resume: {path} not found (is {args.out} a tiers train run?)")
    else:
        path = args.config if args.config is not None else preset_path("train", f"{args.policy or 'beso'}_kitchen")
    if args.policy is not None and args.policy not in LEROBOT_POLICIES:
        overrides.insert(0, f"policy.generator={args.policy}")
    for flag, key in (
        ("steps", "steps"),
        ("batch_size", "batch_size"),
        ("device", "device"),
        ("num_workers", "num_workers"),
        ("save_every", "save_every"),
        ("seed", "seed"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"trainer.{key}={value}")
    return Path(path), overrides


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tiers.apps.training import (
        CAMERAS_FLAG,
        LANGUAGE_FLAG,
        RUN_CONFIG,
        LowPolicyTrainConfig,
        fit_to_dataset,
        is_lerobot_train_config,
        loader_workers,
        train_low_policy,
    )
    from tiers.core.config import load_config
    from tiers.core.errors import ConfigError
    from tiers.services.training import launched_main_process

    if args.policy == "motion":  # the high tier's language-motion predictor has its own data, preset and metrics
        from tiers.apps.motion_predictor_training import run_train

        return run_train(args)
    # several processes under torchrun / accelerate launch: rank 0 checks the folder and speaks for the run
    main = launched_main_process()
    console = Console(stderr=True, quiet=not main)
    path, overrides = resolve_config(args)
    dataset = args.dataset
    if main and not args.resume and (args.out / RUN_CONFIG).exists():
        raise ConfigError(f"{args.out} already holds a run; pass --resume to continue it or choose another --out")
    if is_lerobot_train_config(path):  # lerobot's diffusion policy or ACT, through the adapter
        return _run_lerobot(args, path, overrides)
    config = load_config(LowPolicyTrainConfig, path, overrides=overrides)
    if not args.resume:  # a resumed run reads what its checkpoint was trained on (checked when it loads)
        conditioning = config.policy.conditioning
        fit = fit_to_dataset(
            conditioning.cameras,
            conditioning.language_key,
            dataset,
            fixed_cameras=_overridden(args, CAMERAS_FLAG),
            fixed_language=_overridden(args, LANGUAGE_FLAG),
        )
        if fit.notes:
            console.print(f"dataset mapping: {'; '.join(fit.notes)}", markup=False, soft_wrap=True)
            overrides += [
                f"{CAMERAS_FLAG}={json.dumps(fit.cameras)}",
                f"{LANGUAGE_FLAG}={json.dumps(fit.language_key)}",
            ]
            config = load_config(LowPolicyTrainConfig, path, overrides=overrides)
    workers, why = loader_workers(config.trainer.num_workers, explicit=_overridden(args, "trainer.num_workers"))
    console.print(why, markup=False, soft_wrap=True)
    policy, trainer = config.policy, config.trainer
    console.print(
        f"[bold]tiers train[/bold] {policy.generator} on {dataset}: {trainer.steps} steps × {trainer.batch_size}, "
        f"To={policy.n_obs_steps} Ta={policy.horizon} cameras={policy.conditioning.cameras or 'none'} "
        f"language={policy.conditioning.language_key} -> {args.out}"
    )
    summary = train_low_policy(
        dataset, config, args.out, resume=args.resume, progress=not args.no_progress, workers=workers
    )
    console.print(
        f"done: step {summary.steps} ({summary.session_steps} this session) in {summary.wall_s:.1f} s, "
        f"{summary.samples_per_s:.1f} samples/s on {summary.device} ×{summary.processes}, "
        f"peak memory {summary.peak_memory_mb:.0f} MiB ({summary.memory_kind}), final loss {summary.final_loss:.4f}\n"
        f"checkpoint {summary.checkpoint}; log {args.out / 'train_log.json'}; curve {args.out / 'learning_curve.png'}"
    )
    return 0


def _run_lerobot(args: argparse.Namespace, path: Path, overrides: list[str]) -> int:
    """``tiers train --policy lerobot_diffusion | lerobot_act``: the same trainer, data and outputs."""
    from rich.console import Console

    from tiers.apps.training import (
        LEROBOT_CAMERAS_FLAG,
        LerobotTrainConfig,
        fit_to_dataset,
        loader_workers,
        train_lerobot_policy,
    )
    from tiers.core.config import load_config

    console = Console(stderr=True)
    config = load_config(LerobotTrainConfig, path, overrides=overrides)
    if not args.resume:
        fixed = _overridden(args, LEROBOT_CAMERAS_FLAG)
        fit = fit_to_dataset(
            config.policy.cameras, None, args.dataset, fixed_cameras=fixed, cameras_flag=LEROBOT_CAMERAS_FLAG
        )
        if fit.notes:
            console.print(f"dataset mapping: {'; '.join(fit.notes)}", markup=False, soft_wrap=True)
            overrides = [*overrides, f"{LEROBOT_CAMERAS_FLAG}={json.dumps(fit.cameras)}"]
            config = load_config(LerobotTrainConfig, path, overrides=overrides)
    workers, why = loader_workers(config.trainer.num_workers, explicit=_overridden(args, "trainer.num_workers"))
    console.print(why, markup=False, soft_wrap=True)
    policy, trainer = config.policy, config.trainer
    console.print(
        f"[bold]tiers train[/bold] lerobot {policy.kind.value} on {args.dataset}: {trainer.steps} steps × "
        f"{trainer.batch_size}, cameras={policy.cameras} lerobot={policy.lerobot or 'defaults'} -> {args.out}"
    )
    summary = train_lerobot_policy(
        args.dataset, config, args.out, resume=args.resume, progress=not args.no_progress, workers=workers
    )
    console.print(
        f"done: step {summary.steps} in {summary.wall_s:.1f} s, {summary.samples_per_s:.1f} samples/s on "
        f"{summary.device}, peak memory {summary.peak_memory_mb:.0f} MiB ({summary.memory_kind}), final loss "
        f"{summary.final_loss:.4f}\ncheckpoint {summary.checkpoint}; log {args.out / 'train_log.json'}"
    )
    return 0


def _overridden(args: argparse.Namespace, key: str) -> bool:
    """Whether the command line sets ``key`` (a ``key=value`` override, ``key.N=`` for an element, or its flag)."""
    if key == "trainer.num_workers" and args.num_workers is not None:
        return True
    return any(override.startswith((f"{key}=", f"{key}.")) for override in args.overrides)
