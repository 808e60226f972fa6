"""The mid tier's random draws follow the seeds: the RRT-Connect detour and the support plane's RANSAC."""

from __future__ import annotations

import numpy as np
import pytest

from tiers.policies.mid.affordances import Affordance, AffordanceKind
from tiers.policies.mid.paths import PathConfig, PathPlanner
from tiers.policies.mid.perception import BACKGROUND, SceneCloud, SegmentationSource, fit_plane_ransac

START = np.array([0.25, 0.0, 0.3, 0.0, 0.924, -0.383, 0.0])  # TCP xyz m, wxyz (the ready pose's orientation)
START[3:] /= np.linalg.norm(START[3:])
APPLE = ([0.57, -0.03, 0.0], [0.63, 0.03, 0.07])


def _wall_scene() -> SceneCloud:
    """A counter, a wall higher than the transport height between the start and an apple (RRT must detour)."""
    grid = np.stack(np.meshgrid(np.arange(-0.1, 0.8, 0.02), np.arange(-0.6, 0.6, 0.02)), -1).reshape(-1, 2)
    blocks = [np.column_stack([grid, np.zeros(len(grid))])]
    labels = [np.full(len(grid), BACKGROUND)]
    for index, (low, high) in enumerate([([0.38, -0.25, 0.0], [0.40, 0.25, 0.45]), APPLE]):
        axes = [np.arange(lo, hi + 1e-9, 0.01) for lo, hi in zip(low, high, strict=True)]
        block = np.stack(np.meshgrid(*axes), -1).reshape(-1, 3)
        blocks.append(block)
        labels.append(np.full(len(block), BACKGROUND if index == 0 else 1))
    points = np.concatenate(blocks)
    return SceneCloud(
        points, np.full((len(points), 3), 0.5), np.concatenate(labels).astype(np.int32), {1: "apple"},
        SegmentationSource.MASKS,
    )  # fmt: skip


def _detour(planner: PathPlanner) -> np.ndarray:
    grasp = Affordance(
        AffordanceKind.GRASP, "apple", np.array([0.6, 0.0, 0.035]), yaw=-np.pi / 2, opening=0.08,
        low=np.array(APPLE[0]), high=np.array(APPLE[1]),
    )  # fmt: skip
    result = planner.plan(grasp, _wall_scene(), START, gripper=0.08)
    assert result.path is not None and result.fallback, result.reason
    return result.path.positions


def test_the_detour_follows_the_seeds_not_the_clock() -> None:
    assert PathConfig().rrt_time_limit is None  # an iteration budget, not a wall-clock deadline, by default
    planner = PathPlanner(max_ee_speed=0.5)
    unseeded = _detour(planner)
    np.testing.assert_array_equal(_detour(planner), unseeded)  # each plan draws afresh
    planner.seed(7)
    seeded = _detour(planner)
    fresh = PathPlanner(max_ee_speed=0.5)
    fresh.seed(7)
    np.testing.assert_array_equal(_detour(fresh), seeded)  # whatever the planner planned before
    others = []
    for seed in (8, 9, 10):
        planner.seed(seed)
        others.append(_detour(planner))
    assert any(o.shape != seeded.shape or not np.array_equal(o, seeded) for o in others)  # the seed matters
    with pytest.raises(ValueError, match="rrt_time_limit must be positive or null"):
        PathConfig(rrt_time_limit=0.0)


def test_the_support_plane_ransac_is_seeded_and_finds_the_counter() -> None:
    rng = np.random.default_rng(0)
    counter = np.column_stack([rng.uniform(0, 1, (4000, 2)), 0.1 + rng.normal(0, 0.002, 4000)])
    objects = np.vstack([rng.normal([0.3, 0.3, 0.15], 0.02, (800, 3)), rng.uniform(0, 1, (500, 3))])
    points = np.vstack([counter, objects])
    model, inliers = fit_plane_ransac(points, 0.008, 200, np.random.default_rng(3))
    assert abs(model[2]) == pytest.approx(1.0, abs=1e-3)
    assert -model[3] / model[2] == pytest.approx(0.1, abs=2e-3)
    assert len(inliers) >= 3990 and np.all(np.abs(points[inliers, 2] - 0.1) < 0.011)
    again_model, again_inliers = fit_plane_ransac(points, 0.008, 200, np.random.default_rng(3))
    np.testing.assert_array_equal(again_model, model)
    np.testing.assert_array_equal(again_inliers, inliers)
    line = np.column_stack([np.linspace(0, 1, 50), np.zeros(50), np.zeros(50)])  # collinear: spans no plane
    flat_model, flat_inliers = fit_plane_ransac(line, 0.008, 20, np.random.default_rng(0))
    assert not np.any(flat_model) and len(flat_inliers) == 0
