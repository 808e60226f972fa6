"""Test-time-shift scenes and `tiers bench steering` end to end (tiny)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tiers.sim.kitchen.layout import FREE_AREA_X, OBJECT_NAMES
from tiers.sim.kitchen.shifts import OBSTACLE, Shift, shifted_layout


def test_shifted_scenes_do_what_they_say() -> None:
    built = [shifted_layout(Shift.OBSTACLE, held="apple", target="bowl", seed=seed) for seed in range(8)]
    obstacles = [layout for layout in built if layout is not None]
    assert obstacles  # some seeds leave room between the two
    for layout in obstacles:
        start, end = layout.objects["apple"].position[:2], layout.objects["bowl"].position[:2]
        np.testing.assert_allclose(layout.objects[OBSTACLE].position[:2], 0.5 * (start + end))
    moved = shifted_layout(Shift.SHIFTED, held="apple", target="bowl", seed=0)
    assert moved is not None and moved.objects["bowl"].position[0] > FREE_AREA_X[1] - 0.1
    cluttered = shifted_layout(Shift.CLUTTER, held="apple", target="bowl", seed=0)
    assert cluttered is not None and set(cluttered.objects) == set(OBJECT_NAMES)


def test_bench_steering_writes_its_figures(tmp_path: Path, parse_cli: Callable[..., argparse.Namespace]) -> None:
    from tiers.cli import bench

    out = tmp_path / "steering.json"
    assert bench.run(parse_cli("bench", "steering", "--frames", "1", "--out", str(out))) == 0
    figures = json.loads(out.read_text())
    assert figures["frames"] == 1 and figures["resolution"].startswith("640x480")
    assert figures["plan_ms_per_frame_median"] > 0 and figures["plan_cpu_ms_per_frame_median"] > 0
    assert figures["paths_found"] >= 1 and figures["vls_gradient_ms_per_step_P8_Ta16"] > 0
