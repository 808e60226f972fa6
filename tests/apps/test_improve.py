"""``tiers improve``: fine-tuning on logged corrections moves the policy the way they said; its checks."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import tiers.sim
from tiers.apps.improve import ImproveConfig, _check_unseen_seeds, correction_frames, fine_tune
from tiers.apps.record import roll_out_expert
from tiers.apps.training import generative_loading_config
from tiers.cli import improve
from tiers.core.errors import ConfigError
from tiers.core.features import CommandSource, CommandStyle, FeatureKey
from tiers.core.language import LanguageCommand
from tiers.datasets.corrections import CorrectionsSpec, CorrectionsWriter, intervention_frame_mask
from tiers.datasets.features import DatasetSpec
from tiers.datasets.loading import load_training_dataset
from tiers.datasets.recorder import EPISODES_LOG, EpisodeRecord
from tiers.policies.low.checkpoint import PolicyFeatures, load_policy
from tiers.policies.low.policy import GenerativeLowPolicy, GenerativeLowPolicyConfig
from tiers.services.training import TrainerConfig, train

ACTION = FeatureKey.ACTION.value


LEFT = 0.3  # rad added to the base joint's target by the correction: + turns the arm to the robot's left
SPAN = (40, 100)  # frames of the replayed episode under "move arm left"


def test_fine_tuning_on_a_move_left_correction_moves_the_action_left(tmp_path: Path, state_dataset: Path) -> None:
    """The fixed scenario: a tiny state-only BESO fitted to 3 expert episodes of open/drawer/0; one corrections
    episode replays the first of them with "move arm left" in force over SPAN, where the logged actions turn the base
    joint (panda_joint1, a yaw about the vertical: + swings the hand to the robot's left) LEFT rad further than the
    expert did. After :func:`fine_tune` on the demonstrations + those correction frames (tiers improve's mixture,
    half the samples from the corrections), the policy's actions at the corrected states must have moved left, by a
    margin, and more than any other joint moved."""

    env = tiers.sim.make(["open/drawer/0"], render=False)
    try:
        spec = CorrectionsSpec.extend(DatasetSpec.from_embodiment(env.embodiment, cameras=False))
        episode = roll_out_expert(env, "open/drawer/0", 0, spec)  # the recording's first episode, replayed
    finally:
        env.close()
    assert episode.success and len(episode.frames) > SPAN[1]
    log = tmp_path / "yay"
    left = LanguageCommand("move arm left", CommandStyle.MOTION, CommandSource.SIMULATED_CORRECTOR, timestamp=2.0)
    with CorrectionsWriter(log, spec) as writer:
        for index, frame in enumerate(episode.frames):
            if index == SPAN[0]:
                writer.interject(left, motion="move arm left")
            if index == SPAN[1]:
                writer.end_intervention()
            action = frame[ACTION].copy()
            action[0] += LEFT if SPAN[0] <= index < SPAN[1] else 0.0
            writer.add_frame({**frame, ACTION: action})
        writer.save_episode(EpisodeRecord("open/drawer/0", "open the kitchen drawer", 0, True, len(episode.frames)))

    tiny = {"noise_embed_dim": 16, "transformer": {"width": 32, "depth": 1, "heads": 2}}
    config = GenerativeLowPolicyConfig.from_dict(
        {
            "generator": "beso",
            "generator_options": {"network": tiny},
            "horizon": 8,
            "n_action_steps": 4,
            "conditioning": {"token_dim": 32, "cameras": [], "language_key": None},
        }
    )
    demos, stats = load_training_dataset(generative_loading_config(config, state_dataset))
    corrected, _ = load_training_dataset(generative_loading_config(config, log))
    features = PolicyFeatures.from_dataset(state_dataset, cameras=[], image_size=None, language_key=None)
    torch.manual_seed(0)
    fit = TrainerConfig(steps=300, batch_size=32, num_workers=0, device="cpu", lr=1e-3, warmup_steps=10, ema=False)
    summary = train(GenerativeLowPolicy(config, features, stats), demos, fit, tmp_path / "base", progress=False)
    base = Path(summary.checkpoint)

    frames = correction_frames(corrected, intervention_frame_mask(log, corrected), episodes=1)
    assert frames == list(range(*SPAN))
    tuned = fine_tune(
        base, demos, corrected, frames, tmp_path / "tuned", fraction=0.5, steps=200, batch_size=32, lr=1e-3
    )

    batch = torch.utils.data.default_collate([corrected[i] for i in frames * 4])  # 4 samples per corrected state
    noise = torch.randn(len(frames) * 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def actions(checkpoint: Path) -> torch.Tensor:  # (8,) mean first action at the corrected states
        policy: GenerativeLowPolicy = load_policy(checkpoint)
        return policy.predict_action_chunk(batch, noise=noise)[:, 0].mean(dim=0)

    moved = actions(tuned) - actions(base)
    assert moved[0] > LEFT / 4, f"panda_joint1 moved {moved[0]:.3f} rad after the correction (want > {LEFT / 4})"
    assert moved[0] > moved[1:].abs().max(), f"the correction moved other joints more: {moved.tolist()}"


def test_improve_needs_a_learned_low_tier(tmp_path: Path, parse_cli: Callable[..., argparse.Namespace]) -> None:
    with pytest.raises(ConfigError, match="retrains a learned low tier"):
        improve.run(
            parse_cli(
                "improve",
                "--hierarchy",
                "offline_paths",
                "--dataset",
                str(tmp_path),
                "--corrections",
                str(tmp_path),
                "--out",
                str(tmp_path / "out"),
            )
        )


def test_improve_measures_on_seeds_the_corrections_never_saw(tmp_path: Path) -> None:
    """Evaluation episodes that the corrections log holds (same task, same seed) are refused, naming one; control
    tasks must be tasks nobody corrected."""
    import json
    from dataclasses import asdict

    log = tmp_path / "yay"
    (log / EPISODES_LOG).parent.mkdir(parents=True)
    records = [EpisodeRecord("open/drawer/0", "open the drawer", seed, False, 10, episode_index=i) for i, seed in
               enumerate((2000, 2001))]  # fmt: skip
    (log / EPISODES_LOG).write_text("".join(json.dumps(asdict(record)) + "\n" for record in records))

    def config(seed: int) -> ImproveConfig:
        return ImproveConfig(hierarchy="learned_all", dataset="d", corrections=str(log), seeds=3, seed=seed)

    with pytest.raises(ConfigError, match=r"open/drawer/0 seed 2000.*--seed beyond"):
        _check_unseen_seeds(log, ["open/drawer/0"], config(1999))
    _check_unseen_seeds(log, ["open/drawer/0"], config(2002))  # 2002..2004: never logged
