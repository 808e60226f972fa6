"""``tiers bench lowlevel``: the figures exist and are sane on tiny networks; the success study runs end to end."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def test_bench_lowlevel_writes_latency_ratio_speedup_and_training_figures(
    tmp_path: Path, parse_cli: Callable[..., Any]
) -> None:
    out = tmp_path / "lowlevel.json"
    timing = ["--evaluations", "1", "3", "--repeats", "2", "--warmup", "1", "--lerobot-repeats", "1"]
    training = ["--train-steps", "1", "--train-batch", "2"]
    policies = ["--policies", "beso", "lerobot_diffusion"]
    args = parse_cli("bench", "lowlevel", "--preset", "tiny", *timing, *training, *policies, "--out", str(out))
    assert args.run(args) == 0
    figures = json.loads(out.read_text())
    assert figures["device"] == "cpu" and figures["preset"] == "tiny"
    assert figures["ratio_basis"] in ("cpu_time", "fastest_wall_time")
    for count in (1, 3):
        for kind in ("sample_ms", "chunk_ms", "chunk_cpu_ms"):
            assert figures[f"beso.{kind}.{count}"] > 0
        # ratios to `count` forwards; their values are the benchmark's business (timings on a shared CPU vary)
        assert math.isfinite(figures[f"beso.sampler_ratio.{count}"]) and figures[f"beso.sampler_ratio.{count}"] > 0
        assert math.isfinite(figures[f"beso.chunk_ratio.{count}"]) and figures[f"beso.chunk_ratio.{count}"] > 0
        # the same chunk against the network compute it cannot skip: the camera encoder's time joins the divisor
        assert figures[f"beso.encoder_cpu_ms.{count}"] > 0
        assert 0 < figures[f"beso.chunk_over_network.{count}"] < figures[f"beso.chunk_ratio.{count}"]
    assert figures["beso.forward_ms"] > 0
    assert figures["beso.forward_mmac"] > 0 and figures["beso.image_encoder_mmac"] > 0  # the tiny preset has a camera
    # lerobot's diffusion policy, measured in the same run; its speed-up over BESO-3 follows from the two latencies
    assert figures["lerobot_diffusion.network_evaluations"] == 10  # the tiny preset's DDPM steps
    kind = "chunk_cpu_ms" if figures["ratio_basis"] == "cpu_time" else "chunk_ms"
    assert math.isclose(
        figures["speedup.lerobot_over_beso3"],
        figures[f"lerobot_diffusion.{kind}"] / figures[f"beso.{kind}.3"],
        rel_tol=1e-9,
    )
    # BESO exported at 3 evaluations and run by ONNX Runtime (the onnx low tier), beside torch in the same run
    assert figures["onnx.network_evaluations"] == 3 and figures["onnx.chunk_ms"] > 0
    assert math.isclose(
        figures["speedup.torch_over_onnx"], figures[f"beso.{kind}.3"] / figures[f"onnx.{kind}"], rel_tol=1e-9
    )
    assert figures["onnx.control_step_ms_p99"] >= figures["onnx.control_step_ms_p50"] >= 0
    for name in ("beso", "lerobot_diffusion"):
        assert figures[f"{name}.train_samples_per_s"] > 0
        assert 100 < figures[f"{name}.train_peak_rss_mb"] < 64_000  # a Python process with torch, in MiB
    assert figures["lerobot_diffusion.parameters_m"] > figures["beso.parameters_m"]  # a ResNet-18 vs a tiny CNN
    assert out.with_suffix(".png").stat().st_size > 0


@pytest.mark.slow
def test_bench_lowlevel_success_trains_each_policy_and_runs_it_in_the_kitchen(
    camera_dataset: Path, tmp_path: Path, parse_cli: Callable[..., Any]
) -> None:
    out = tmp_path / "success.json"
    args = parse_cli(
        "bench", "lowlevel", "--success", "--dataset", str(camera_dataset), "--preset", "tiny", "--steps", "1",
        "--batch-size", "2", "--seeds", "1", "--episodes", "1", "--max-steps", "3",
        "--policies", "beso", "lerobot_diffusion", "--out", str(out),
    )  # fmt: skip
    assert args.run(args) == 0
    figures = json.loads(out.read_text())
    assert figures["tasks"] == "open/drawer/0" and figures["episodes_per_run"] == 1
    for name in ("beso", "lerobot_diffusion"):
        assert 0.0 <= figures[f"success.{name}.mean"] <= 1.0 and figures[f"success.{name}.std"] == 0.0
        assert figures[f"{name}.train_samples_per_s"] > 0
        assert (tmp_path / "success" / name / "seed0" / "checkpoints" / "last" / "model.safetensors").is_file()
    assert (tmp_path / "success" / "success.png").stat().st_size > 0
