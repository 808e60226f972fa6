"""Keypoint affordances on rendered kitchens: grasp points inside objects, the drawer and door openings
measured from the cloud, placement spots, and the reasons when there is no affordance."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tiers.commands.subtasks import Subtask
from tiers.core.embodiment import EmbodimentSpec
from tiers.policies.mid.affordances import AffordanceDetector, AffordanceKind, FixtureMap
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.perception import PointCloudBuilder, SceneCloud, perception_embodiment
from tiers.sim.kitchen.layout import sample_layout
from tiers.sim.mujoco import MujocoKitchen
from tiers.sim.scene_state import SceneState


@pytest.fixture(scope="module")
def kitchen() -> Iterator[MujocoKitchen]:
    kitchen = MujocoKitchen(perception_embodiment(EmbodimentSpec.load("panda"), width=320, height=240))
    yield kitchen
    kitchen.close()


def observe(kitchen: MujocoKitchen, seed: int, **articulations: float) -> tuple[SceneCloud, SceneState]:
    layout = sample_layout(seed, objects=["apple", "box", "bowl"], n_distractors=1, articulations=articulations)
    observation = kitchen.reset(layout)
    spec = kitchen.embodiment
    fk = ArmFK.from_model(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame).double()
    return PointCloudBuilder(arm_fk=fk).build(observation), kitchen.scene_state()


def test_grasps_are_inside_the_object_and_fit_the_gripper(kitchen: MujocoKitchen) -> None:
    cloud, state = observe(kitchen, 0)
    detector = AffordanceDetector(FixtureMap.from_model(kitchen.model))
    for name in ("apple", "box"):
        result = detector.detect(Subtask.parse(f"pick up the {name}"), cloud)
        assert result.affordance is not None, result.reason
        grasp = result.affordance
        bounds = state.objects[name].bounds
        assert grasp.kind is AffordanceKind.GRASP
        assert np.linalg.norm(grasp.point[:2] - bounds.center[:2]) < 0.015, name
        assert bounds.low[2] + 0.01 < grasp.point[2] < bounds.high[2], name
        assert 0.0 < grasp.opening <= 0.08
        np.testing.assert_allclose(grasp.approach, [0.0, 0.0, -1.0])
    # the box is held across its narrow side: closing axis within 20 deg of the box's short axis
    box = detector.detect(Subtask.parse("pick up the box"), cloud).affordance
    assert box is not None
    points = cloud.segment("box")[:, :2]
    width = np.ptp((points - points.mean(axis=0)) @ np.array([np.cos(box.yaw), np.sin(box.yaw)]))
    assert width < 0.075
    # the bowl is wider than the gripper: held by its wall, closing radially, on the side nearest the robot
    rim = detector.detect(Subtask.parse("pick up the bowl"), cloud).affordance
    assert rim is not None, "no rim grasp of the bowl"
    centre = state.objects["bowl"].bounds.center
    radial = rim.point[:2] - centre[:2]
    assert 0.05 < np.linalg.norm(radial) < 0.07  # the wall is at 6 cm
    assert abs(np.sin(rim.yaw - np.arctan2(radial[1], radial[0]))) < 0.1
    assert np.linalg.norm(rim.point[:2]) < np.linalg.norm(centre[:2])
    assert len(rim.alternative_points) == len(rim.alternatives) > 3
    missing = detector.detect(Subtask.parse("pick up the banana"), cloud)
    assert missing.affordance is None and "not in view" in missing.reason


@pytest.mark.parametrize(
    ("fixture", "value", "tolerance"),
    [("drawer", 0.0, 0.01), ("drawer", 0.12, 0.01), ("cabinet", 0.0, 0.06), ("cabinet", 0.9, 0.06)],
)
def test_articulations_are_measured_from_the_cloud(
    kitchen: MujocoKitchen, fixture: str, value: float, tolerance: float
) -> None:
    cloud, state = observe(kitchen, 1, **{fixture: value})
    detector = AffordanceDetector(FixtureMap.from_model(kitchen.model))
    measured = detector.articulation(fixture, cloud)
    assert measured is not None
    assert abs(measured - state.articulations[fixture].joint_position) < tolerance


def test_handle_and_place_affordances(kitchen: MujocoKitchen) -> None:
    cloud, state = observe(kitchen, 2, drawer=0.22)
    detector = AffordanceDetector(FixtureMap.from_model(kitchen.model))
    close = detector.detect(Subtask.parse("close the drawer"), cloud).affordance
    assert close is not None and close.kind is AffordanceKind.HANDLE
    assert close.motion[0] > 0.18  # pushed back in along +x
    already = detector.detect(Subtask.parse("open the drawer"), cloud)
    assert already.affordance is None and "already open" in already.reason
    into_bowl = detector.detect(Subtask.parse("put the apple in the bowl"), cloud).affordance
    assert into_bowl is not None and into_bowl.kind is AffordanceKind.PLACE
    bowl = state.objects["bowl"].bounds
    assert np.linalg.norm(into_bowl.point[:2] - bowl.center[:2]) < 0.02
    assert into_bowl.point[2] > bowl.high[2]
    into_drawer = detector.detect(Subtask.parse("put the apple in the drawer"), cloud).affordance
    region = state.regions["drawer"]
    assert into_drawer is not None
    assert np.all(into_drawer.point[:2] > region.low[:2]) and np.all(into_drawer.point[:2] < region.high[:2])
    left = detector.detect(Subtask.parse("put the apple to the left of the box"), cloud).affordance
    assert left is not None and left.point[1] > state.objects["box"].bounds.high[1]
    cabinet = detector.detect(Subtask.parse("put the apple in the cabinet"), cloud)
    assert cabinet.affordance is None and "open it first" in cabinet.reason  # the door is closed


@pytest.mark.parametrize("direction", ["to the left", "to the right", "forward", "backward"])
def test_a_push_turns_the_wrist_camera_away_from_the_object_first(kitchen: MujocoKitchen, direction: str) -> None:
    cloud, _ = observe(kitchen, 0)
    push = AffordanceDetector(FixtureMap.from_model(kitchen.model)).detect(
        Subtask.parse(f"push the box {direction}"), cloud
    )
    assert push.affordance is not None and push.affordance.kind is AffordanceKind.PUSH, push.reason
    yaws = [push.affordance.yaw, *push.affordance.alternatives]
    housing = np.array([np.sin(yaws[0]), -np.cos(yaws[0])])  # the tool's -x axis of a top-down tool at that yaw
    assert housing @ push.affordance.motion[:2] / np.linalg.norm(push.affordance.motion) < -0.99
    # every yaw is offered with the housing turned toward the object too, after all of those away from it
    half = len(yaws) // 2
    np.testing.assert_allclose(np.cos(np.subtract(yaws[half:], yaws[:half])), -1.0, atol=1e-9)
