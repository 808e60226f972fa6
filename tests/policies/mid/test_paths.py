"""Path planning on synthetic clouds: segments, speed limits, clearance, the RRT-Connect detour, bad input."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from tiers.core.ee_path import EEPath, wxyz_to_xyzw
from tiers.policies.mid.affordances import Affordance, AffordanceKind
from tiers.policies.mid.paths import PathConfig, PathPlanner, tool_quaternion
from tiers.policies.mid.perception import BACKGROUND, SceneCloud, SegmentationSource

HOME_POSE = np.array([0.307, 0.0, 0.487, 0.0, 0.924, -0.383, 0.0])  # the Panda's ready pose TCP, wxyz
HOME_POSE[3:] /= np.linalg.norm(HOME_POSE[3:])


def counter_cloud(*blocks: tuple[list[float], list[float], str | None]) -> SceneCloud:
    """A counter (z = 0) with axis-aligned blocks of points (low, high, object name or None)."""
    grid = np.stack(np.meshgrid(np.arange(-0.1, 0.8, 0.02), np.arange(-0.6, 0.6, 0.02)), -1).reshape(-1, 2)
    points = [np.column_stack([grid, np.zeros(len(grid))])]
    labels = [np.full(len(grid), BACKGROUND)]
    names = {}
    for index, (low, high, name) in enumerate(blocks):
        axes = [np.arange(lo, hi + 1e-9, 0.01) for lo, hi in zip(low, high, strict=True)]
        block = np.stack(np.meshgrid(*axes), -1).reshape(-1, 3)
        points.append(block)
        labels.append(np.full(len(block), index if name else BACKGROUND))
        if name:
            names[index] = name
    cloud_points = np.concatenate(points)
    return SceneCloud(
        cloud_points, np.full((len(cloud_points), 3), 0.5), np.concatenate(labels).astype(np.int32), names,
        SegmentationSource.MASKS,
    )  # fmt: skip


def grasp_of(point: list[float], low: list[float], high: list[float], yaw: float = -np.pi / 2) -> Affordance:
    return Affordance(
        AffordanceKind.GRASP, "apple", np.array(point), yaw=yaw, opening=0.08, low=np.array(low), high=np.array(high)
    )


def assert_valid(path: EEPath, planner: PathPlanner) -> None:
    assert np.all(path.segment_speeds() <= planner.max_ee_speed + 1e-6)
    assert np.all(planner.config.workspace.contains(path.positions))
    np.testing.assert_allclose(path.positions[0], HOME_POSE[:3], atol=1e-9)


def test_pick_path_has_the_segments_and_meets_limits() -> None:
    cloud = counter_cloud(([0.47, -0.03, 0.0], [0.53, 0.03, 0.07], "apple"))
    planner = PathPlanner(max_ee_speed=0.5)
    result = planner.plan(grasp_of([0.5, 0.0, 0.035], [0.47, -0.03, 0.0], [0.53, 0.03, 0.07]), cloud, HOME_POSE,
                          gripper=0.08)  # fmt: skip
    assert result.path is not None, result.reason
    assert [name for name, _ in result.segments] == ["transport", "pre-grasp", "approach", "grasp", "lift"]
    assert not result.fallback
    assert_valid(result.path, planner)
    path = result.path
    grasp_time = dict(result.segments)["grasp"]
    pose, gripper = path.sample(grasp_time + 0.5)
    np.testing.assert_allclose(pose[0, :3], [0.5, 0.0, 0.035], atol=1e-6)
    assert gripper[0] == 0.0  # the fingers close at the grasp
    _, open_gripper = path.sample(grasp_time - 0.2)
    assert open_gripper[0] == 0.08
    np.testing.assert_allclose(path.quaternions[-1], tool_quaternion(np.array([0, 0, -1.0]), -np.pi / 2), atol=1e-6)
    assert path.positions[-1, 2] == pytest.approx(0.035 + planner.config.lift_height)


def test_a_wall_on_the_straight_line_is_detoured_with_clearance() -> None:
    # a tall thin wall between the start and the pre-grasp, higher than the transport height
    wall = ([0.38, -0.25, 0.0], [0.40, 0.25, 0.45], None)
    apple = ([0.57, -0.03, 0.0], [0.63, 0.03, 0.07], "apple")
    cloud = counter_cloud(wall, apple)
    config = PathConfig()
    planner = PathPlanner(config, max_ee_speed=0.5)
    start = HOME_POSE.copy()
    start[:3] = [0.25, 0.0, 0.3]
    result = planner.plan(grasp_of([0.6, 0.0, 0.035], apple[0], apple[1]), cloud, start, gripper=0.08)
    assert result.path is not None, result.reason
    assert result.fallback  # the straight transport hits the wall: RRT-Connect went around or over it
    tree = cKDTree(cloud.points[(cloud.points[:, 2] > 0.01) & (cloud.labels == BACKGROUND)])
    free_part = result.path.times <= dict(result.segments)["approach"]
    distance, _ = tree.query(result.path.positions[free_part])
    assert distance.min() > 0.02  # the TCP keeps clear of the wall all along (the hand is checked too)
    assert np.all(result.path.segment_speeds() <= 0.5 + 1e-6)


@pytest.mark.parametrize(
    ("point", "reason"),
    [
        ([1.2, 0.0, 0.05], "outside the workspace box"),
        ([0.78, 0.6, 0.05], "out of reach"),
        ([0.05, 0.0, 0.05], "too close to the robot's base axis"),
        ([0.5, 0.0, -0.01], "below the support surface"),
    ],
)
def test_keypoints_outside_the_workspace_give_a_reason(point: list[float], reason: str) -> None:
    cloud = counter_cloud()
    low, high = np.array(point) - 0.03, np.array(point) + 0.03
    result = PathPlanner().plan(grasp_of(point, list(low), list(high)), cloud, HOME_POSE, gripper=0.08)
    assert result.path is None and reason in result.reason


def test_degenerate_input_and_unreachable_poses_give_reasons() -> None:
    empty = SceneCloud(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.int32), {}, SegmentationSource.NONE)
    affordance = grasp_of([0.5, 0.0, 0.035], [0.47, -0.03, 0.0], [0.53, 0.03, 0.07])
    result = PathPlanner().plan(affordance, empty, HOME_POSE, gripper=0.08)
    assert result.path is None and "empty" in result.reason
    nan_cloud = SceneCloud(np.full((5, 3), np.nan), np.zeros((5, 3)), np.full(5, -1, np.int32), {},
                           SegmentationSource.NONE)  # fmt: skip
    assert "non-finite" in PathPlanner().plan(affordance, nan_cloud, HOME_POSE, gripper=0.08).reason
    never = PathPlanner(reachable=lambda position, quaternion: False)
    result = never.plan(affordance, counter_cloud(), HOME_POSE, gripper=0.08)
    assert result.path is None and "inverse-kinematics" in result.reason
    # buried in a box of points: the grasp's approach collides whatever the yaw
    boxed = counter_cloud(([0.42, -0.1, 0.0], [0.58, 0.1, 0.2], None))
    result = PathPlanner().plan(affordance, boxed, HOME_POSE, gripper=0.08)
    assert result.path is None and "collides" in result.reason


def push_of(point: list[float], low: list[float], high: list[float], motion: list[float]) -> Affordance:
    return Affordance(
        AffordanceKind.PUSH, "apple", np.array(point), yaw=0.0, opening=0.0, motion=np.array(motion),
        low=np.array(low), high=np.array(high),
    )  # fmt: skip


def test_a_push_may_nudge_other_objects_but_not_the_fixtures() -> None:
    apple = ([0.47, -0.03, 0.0], [0.53, 0.03, 0.07], "apple")
    # a cup right behind the contact point: the closed fingers come down beside it and may nudge it
    cup = ([0.40, -0.06, 0.0], [0.43, 0.06, 0.09], "cup")
    push = push_of([0.434, 0.0, 0.028], apple[0], apple[1], [0.145, 0.0, 0.0])
    result = PathPlanner().plan(push, counter_cloud(apple, cup), HOME_POSE, gripper=0.0)
    assert result.path is not None, result.reason
    assert [name for name, _ in result.segments][-2:] == ["push", "retreat"]
    assert result.path.positions[:, 0].max() == pytest.approx(0.434 + 0.145, abs=1e-6)
    # the same block as a fixture (unlabelled points): no path
    wall = ([0.40, -0.06, 0.0], [0.43, 0.06, 0.09], None)
    blocked = PathPlanner().plan(push, counter_cloud(apple, wall), HOME_POSE, gripper=0.0)
    assert blocked.path is None and "collides" in blocked.reason


def test_a_push_toward_the_base_is_shortened_to_what_the_arm_reaches() -> None:
    apple = ([0.37, -0.03, 0.0], [0.43, 0.03, 0.07], "apple")
    push = push_of([0.466, 0.0, 0.028], apple[0], apple[1], [-0.145, 0.0, 0.0])
    planner = PathPlanner(reachable=lambda position, quaternion: bool(position[0] > 0.34))
    result = planner.plan(push, counter_cloud(apple), HOME_POSE, gripper=0.0)
    assert result.path is not None, result.reason
    end, _ = result.path.sample(dict(result.segments)["retreat"])
    reach = 0.466 - float(end[0, 0])
    assert planner.config.min_push_travel - 1e-6 <= reach < 0.145
    # shorter than min_push_travel would not move the object far enough: no path, with the reason
    short = PathPlanner(reachable=lambda position, quaternion: bool(position[0] > 0.38))
    failed = short.plan(push, counter_cloud(apple), HOME_POSE, gripper=0.0)
    assert failed.path is None and "end of the push" in failed.reason


def test_a_push_stops_short_of_a_fixture_ahead_only_when_every_yaw_hits_it() -> None:
    apple = ([0.47, -0.03, 0.0], [0.53, 0.03, 0.07], "apple")
    wall = ([0.60, -0.15, 0.0], [0.62, 0.15, 0.12], None)  # the full push (to x = 0.579) would reach it
    push = replace(push_of([0.434, 0.0, 0.028], apple[0], apple[1], [0.145, 0.0, 0.0]), yaw=-np.pi / 2)
    planner = PathPlanner()
    result = planner.plan(push, counter_cloud(apple, wall), HOME_POSE, gripper=0.0)
    assert result.path is not None, result.reason
    end, _ = result.path.sample(dict(result.segments)["retreat"])
    travel = float(end[0, 0]) - 0.434
    assert planner.config.min_push_travel - 1e-6 <= travel < 0.145
    # too close for even the shortest push: no path, the collision given as the reason
    near = ([0.57, -0.15, 0.0], [0.59, 0.15, 0.12], None)
    blocked = planner.plan(push, counter_cloud(apple, near), HOME_POSE, gripper=0.0)
    assert blocked.path is None and "collides" in blocked.reason


def test_a_push_keeps_the_wrist_camera_off_a_tall_object_when_another_yaw_can() -> None:
    apple = ([0.47, -0.03, 0.0], [0.53, 0.03, 0.07], "apple")
    # a tall can right behind the contact point, where the camera's housing (tool -x) is at yaw -pi/2
    can = ([0.36, -0.03, 0.0], [0.40, 0.03, 0.12], "can")
    push = replace(push_of([0.434, 0.0, 0.028], apple[0], apple[1], [0.145, 0.0, 0.0]), yaw=-np.pi / 2,
                   alternatives=(np.pi / 2,))  # fmt: skip
    result = PathPlanner().plan(push, counter_cloud(apple, can), HOME_POSE, gripper=0.0)
    assert result.path is not None, result.reason
    x_axis = Rotation.from_quat(wxyz_to_xyzw(result.path.quaternions[-1])).apply([1.0, 0.0, 0.0])
    assert x_axis[0] < -0.9  # turned half a turn: the housing rides over the low apple, off the can
    # a tall target too: the housing would climb one or the other, and the check gives way (it may nudge the can)
    tall = ([0.47, -0.03, 0.0], [0.53, 0.03, 0.12], "apple")
    result = PathPlanner().plan(push, counter_cloud(tall, can), HOME_POSE, gripper=0.0)
    assert result.path is not None, result.reason
    x_axis = Rotation.from_quat(wxyz_to_xyzw(result.path.quaternions[-1])).apply([1.0, 0.0, 0.0])
    assert x_axis[0] > 0.9  # the preferred yaw


# -- early rejection: options (tool yaws) and transport heights that surely fail are dropped before their IK
# solves and routes, without changing the path found or the reason given

APPLE = ([0.47, -0.03, 0.0], [0.53, 0.03, 0.07], "apple")
YAWS = tuple(-np.pi / 2 + k * np.pi / 12 for k in range(12))  # a round object's 12 grasp yaws, 15 deg apart


def round_grasp() -> Affordance:
    """A top-down grasp of the apple, offering every yaw of :data:`YAWS` (the first preferred)."""
    return Affordance(
        AffordanceKind.GRASP, "apple", np.array([0.5, 0.0, 0.035]), yaw=YAWS[0], opening=0.08,
        low=np.array(APPLE[0]), high=np.array(APPLE[1]), alternatives=YAWS[1:],
    )  # fmt: skip


class CountingIK:
    """A reachability check that answers yes and counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, position: np.ndarray, quaternion: np.ndarray) -> bool:
        self.calls += 1
        return True


def test_a_blocked_pre_grasp_pose_fails_every_yaw_after_one_yaws_ik_and_one_height() -> None:
    # a slab over the apple where the wrist is at the pre-grasp pose, whatever the yaw (the wrist is on the axis)
    slab = ([0.44, -0.06, 0.26], [0.56, 0.06, 0.30], None)
    cloud = counter_cloud(APPLE, slab)
    ik = CountingIK()
    planner = PathPlanner(max_ee_speed=0.5, reachable=ik)
    heights: list[float] = []
    segments_at = planner._segments_at

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        heights.append(args[-1])
        return segments_at(*args, **kwargs)

    planner._segments_at = counted  # type: ignore[method-assign]
    result = planner.plan(round_grasp(), cloud, HOME_POSE, gripper=0.08)
    assert result.path is None
    assert result.reason.startswith("all 12 tool yaws failed; the preferred one: ")  # the first yaw's reason
    assert "collides" in result.reason
    assert ik.calls == 2  # the grasp and pre-grasp poses of the first yaw; the other 11 are rejected before IK
    assert len(heights) <= 2  # not all 3 transport heights: the pre-grasp pose is blocked at each


def test_early_rejection_finds_the_path_that_trying_each_yaw_in_turn_finds() -> None:
    # a tall block beside the apple: with the closing axis along y the hand's side hits it, along x it does not
    block = ([0.46, 0.095, 0.0], [0.54, 0.15, 0.14], None)
    cloud = counter_cloud(APPLE, block)
    grasp = round_grasp()
    planner = PathPlanner(max_ee_speed=0.5, reachable=CountingIK())
    result = planner.plan(grasp, cloud, HOME_POSE, gripper=0.08)
    assert result.path is not None, result.reason
    # the reference: one yaw per plan (nothing to reject early), in the affordance's order, the first that works
    for yaw in YAWS:
        single = planner.plan(replace(grasp, yaw=yaw, alternatives=()), cloud, HOME_POSE, gripper=0.08)
        if single.path is not None:
            break
    assert yaw != YAWS[0]  # the first yaw is blocked: the scene exercises the rejection
    assert single.path is not None
    np.testing.assert_array_equal(result.path.positions, single.path.positions)
    np.testing.assert_array_equal(result.path.quaternions, single.path.quaternions)
    np.testing.assert_array_equal(result.path.times, single.path.times)
