"""The low-tier study (``tiers bench lowlevel --success``): arms, Wilson figures, resume, ddim10 on ddpm's weights,
workers. Tiny networks, one training step, three control steps per episode."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tiers.apps.bench.low_tier_study import LowTierStudyConfig, run_low_tier_study
from tiers.core.errors import ContractError


def _study(dataset: Path, **overrides: Any) -> LowTierStudyConfig:
    settings: dict[str, Any] = {
        "dataset": dataset,
        "preset": "tiny",
        "device": "cpu",
        "steps": 1,
        "batch_size": 2,
        "seeds": 1,
        "episodes": 1,
        "max_steps": 3,
        "latency_repeats": 2,
        "latency_warmup": 0,
    }
    return LowTierStudyConfig(**(settings | overrides))


def test_study_reports_wilson_and_latency_evaluates_ddim10_on_ddpm_weights_and_resumes(
    camera_dataset: Path, tmp_path: Path, parse_cli: Callable[..., Any]
) -> None:
    out = tmp_path / "study.json"
    args = parse_cli(
        "bench", "lowlevel", "--success", "--dataset", str(camera_dataset), "--preset", "tiny", "--device", "cpu",
        "--steps", "1", "--batch-size", "2", "--seeds", "1", "--episodes", "1", "--max-steps", "3",
        "--repeats", "2", "--warmup", "0", "--policies", "beso", "ddpm", "ddim10", "lerobot_act", "--out", str(out),
    )  # fmt: skip
    assert args.run(args) == 0
    figures = json.loads(out.read_text())
    folder = tmp_path / "study"
    assert figures["runs.trained"] == 3 and figures["runs.evaluated"] == 4  # ddim10 trains nothing of its own
    assert figures["tasks"] == "open/drawer/0" and figures["episodes_per_run"] == 1
    evaluations = {"beso": 3, "ddpm": 100, "ddim10": 10, "lerobot_act": 1}
    for arm, count in evaluations.items():
        assert figures[f"{arm}.network_evaluations"] == count
        assert figures[f"success.{arm}.episodes"] == 1
        low, rate, high = (figures[f"success.{arm}.{name}"] for name in ("ci95_low", "rate", "ci95_high"))
        assert 0.0 <= low <= rate <= high <= 1.0 and high - low > 0.5  # one episode pins down little
        assert figures[f"success.{arm}.std"] == 0.0 and figures[f"latency.{arm}.chunk_ms"] > 0
        assert figures[f"{arm}.train_steps_done"] == 1 and figures[f"{arm}.train_time_limited_runs"] == 0
        result = json.loads((folder / arm / "seed0" / "result.json").read_text())
        assert [episode["seed"] for episode in result["episodes"]] == [1000]  # the same unseen state for every arm
    assert figures["goal.status"] in ("met", "not met") and figures["goal.best_peer"] in evaluations
    # ddim10: ddpm's trained weights (a link, not a copy) sampled by DDIM-10, no run folder of its own
    weights = folder / "ddim10" / "seed0" / "checkpoint" / "model.safetensors"
    ddpm = json.loads((folder / "ddpm" / "seed0" / "training.json").read_text())
    assert weights.is_symlink()
    assert weights.resolve() == (folder / "ddpm" / "seed0" / ddpm["checkpoint"] / "model.safetensors").resolve()
    assert not (folder / "ddim10" / "seed0" / "checkpoints").exists()
    assert json.loads((folder / "ddim10" / "seed0" / "result.json").read_text())["trained_as"] == "ddpm"
    assert "Wilson" in (folder / "table.md").read_text() and (folder / "success.png").stat().st_size > 0

    # a rerun trains and evaluates nothing: every run and evaluation is on disk
    files = [*folder.glob("*/seed0/result.json"), *folder.glob("*/seed0/training.json")]
    stamps = {path: path.stat().st_mtime_ns for path in files}
    again = run_low_tier_study(_study(camera_dataset, arms=["beso", "ddpm", "ddim10", "lerobot_act"]), folder)
    assert again["runs.trained"] == 0 and again["runs.evaluated"] == 0
    assert {path: path.stat().st_mtime_ns for path in files} == stamps
    assert again["success.beso.rate"] == figures["success.beso.rate"]
    # another budget in the same folder is refused rather than mixed in
    with pytest.raises(ContractError, match="another budget"):
        run_low_tier_study(_study(camera_dataset, steps=2, arms=["beso"]), folder)


def test_study_over_two_workers_writes_what_one_worker_writes(camera_dataset: Path, tmp_path: Path) -> None:
    volatile = {"latency", "checkpoint", "wall_s_last_session", "samples_per_s", "peak_memory_mb"}

    def stable(path: Path) -> dict[str, Any]:
        data = json.loads(path.read_text())
        training = {key: value for key, value in data.pop("training").items() if key not in volatile}
        return {key: value for key, value in data.items() if key not in volatile} | {"training": training}

    outcomes = {}
    for workers in (1, 2):
        folder = tmp_path / f"workers{workers}"
        figures = run_low_tier_study(_study(camera_dataset, arms=["beso"], seeds=2, workers=workers), folder)
        assert figures["runs.trained"] == 2 and figures["success.beso.episodes"] == 2
        outcomes[workers] = {seed: stable(folder / "beso" / f"seed{seed}" / "result.json") for seed in (0, 1)}
    assert outcomes[1] == outcomes[2]
    assert outcomes[1][0]["training"]["final_loss"] != outcomes[1][1]["training"]["final_loss"]  # seeds differ


def test_study_records_the_steps_a_wall_clock_cap_left(camera_dataset: Path, tmp_path: Path) -> None:
    # a cap shorter than one step: every run stops after its first step, with a checkpoint, and says so
    figures = run_low_tier_study(_study(camera_dataset, arms=["beso"], steps=50, train_minutes=1e-6), tmp_path)
    training = json.loads((tmp_path / "beso" / "seed0" / "training.json").read_text())
    assert training["steps_done"] == 1 and training["time_limited"] and training["budget"]["train_minutes"] == 1e-6
    assert figures["beso.train_steps_done"] == 1 and figures["beso.train_time_limited_runs"] == 1
    assert figures["budget.train_minutes"] == 1e-6 and figures["goal.status"] == "undecided"  # no peer
