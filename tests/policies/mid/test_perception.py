"""RGB-D -> segmented clouds on real MuJoCo renders: masks against privileged bounds, the robot removed,
the clustering fallback finding the objects, empty input."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.observation import Observation
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.perception import (
    BACKGROUND,
    PointCloudBuilder,
    SegmentationSource,
    name_clusters,
    perception_embodiment,
)
from tiers.sim.kitchen.layout import sample_layout
from tiers.sim.mujoco import MujocoKitchen
from tiers.sim.scene_state import SceneState


@pytest.fixture(scope="module")
def scene() -> Iterator[tuple[MujocoKitchen, Observation, SceneState]]:
    kitchen = MujocoKitchen(perception_embodiment(EmbodimentSpec.load("panda"), width=320, height=240))
    layout = sample_layout(3, objects=["apple", "can", "box"], n_distractors=1)
    observation = kitchen.reset(layout)
    yield kitchen, observation, kitchen.scene_state()
    kitchen.close()


def builder_for(kitchen: MujocoKitchen) -> PointCloudBuilder:
    spec = kitchen.embodiment
    fk = ArmFK.from_model(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame).double()
    return PointCloudBuilder(arm_fk=fk)


def test_mask_segments_lie_in_the_objects_true_bounds(scene: tuple[MujocoKitchen, Observation, SceneState]) -> None:
    kitchen, observation, state = scene
    cloud = builder_for(kitchen).build(observation)
    assert cloud.source is SegmentationSource.MASKS
    assert set(cloud.segment_names) == set(state.objects)
    assert abs(cloud.support_height) < 0.005  # the counter top is z = 0
    for name, obj in state.objects.items():
        points = cloud.segment(name)
        assert len(points) > 30, name
        inside = np.all((points >= obj.bounds.low - 0.01) & (points <= obj.bounds.high + 0.01), axis=1)
        assert inside.mean() > 0.98, name


def test_the_robot_is_stripped_from_the_cloud(scene: tuple[MujocoKitchen, Observation, SceneState]) -> None:
    kitchen, observation, _ = scene
    builder = builder_for(kitchen)
    cloud = builder.build(observation)
    assert builder._fk is not None
    links, _ = builder._fk.link_frames(torch.from_numpy(observation.joint_positions))
    for link in links.numpy()[2:]:  # from the upper arm on (the base sits in the counter)
        assert np.min(np.linalg.norm(cloud.points - link, axis=1)) > 0.08
    unfiltered = PointCloudBuilder().build(observation)
    assert len(unfiltered) > len(cloud)  # the robot was there before


def test_clustering_finds_the_objects_without_masks(scene: tuple[MujocoKitchen, Observation, SceneState]) -> None:
    kitchen, observation, state = scene
    builder = builder_for(kitchen)
    cloud = builder.cluster(builder.build(replace(observation, segmentation={})))
    assert cloud.source is SegmentationSource.CLUSTERS
    centres = [cloud.points[cloud.labels == i].mean(axis=0) for i in cloud.names]
    found = 0
    for obj in state.objects.values():
        distances = [np.linalg.norm(centre[:2] - obj.bounds.center[:2]) for centre in centres]
        found += int(min(distances) < 0.03)
    assert found >= len(state.objects) - 1  # touching objects may merge into one cluster
    colors = {name: placement.color for name, placement in kitchen.layout.objects.items()}  # type: ignore[union-attr]
    named = name_clusters(cloud, colors)
    assert set(colors) <= set(named.names.values())


def test_no_depth_gives_an_empty_cloud(scene: tuple[MujocoKitchen, Observation, SceneState]) -> None:
    kitchen, observation, _ = scene
    blank = {name: np.zeros_like(depth) for name, depth in observation.depths.items()}
    cloud = builder_for(kitchen).build(replace(observation, depths=blank))
    assert len(cloud) == 0
    assert np.all(cloud.labels == BACKGROUND)
