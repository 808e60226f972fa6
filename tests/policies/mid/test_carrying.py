"""Carrying a light object into the cabinet without losing it: the closing axis the insertion leans about."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tiers.commands.subtasks import Subtask
from tiers.core.embodiment import EmbodimentSpec
from tiers.policies.mid.affordances import AffordanceDetector, FixtureMap
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.perception import PointCloudBuilder, perception_embodiment
from tiers.sim.kitchen.layout import sample_layout
from tiers.sim.mujoco import MujocoKitchen


@pytest.fixture(scope="module")
def kitchen() -> Iterator[MujocoKitchen]:
    kitchen = MujocoKitchen(perception_embodiment(EmbodimentSpec.load("panda"), width=320, height=240))
    yield kitchen
    kitchen.close()


@pytest.mark.parametrize(("held", "along_entry"), [("sponge", True), ("banana", False), ("cup", False)])
def test_a_flat_compact_object_goes_into_the_cabinet_with_the_fingers_along_the_entry(
    kitchen: MujocoKitchen, held: str, along_entry: bool
) -> None:
    layout = sample_layout(3, objects=[held], n_distractors=1, articulations={"cabinet": 1.5})
    observation = kitchen.reset(layout)
    spec = kitchen.embodiment
    fk = ArmFK.from_model(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame).double()
    cloud = PointCloudBuilder(arm_fk=fk).build(observation)
    detector = AffordanceDetector(FixtureMap.from_model(kitchen.model))
    result = detector.detect(Subtask.parse(f"put the {held} in the cabinet"), cloud)
    assert result.affordance is not None, result.reason
    affordance = result.affordance
    assert affordance.inserts
    # the closing axis (cos yaw, sin yaw): along the entry (+x) leans the hand about the axis across the pads
    # (they hold the object as it tilts); across it, about the closing axis (the pads' friction alone)
    closing = np.array([np.cos(affordance.yaw), np.sin(affordance.yaw)])
    assert bool(abs(closing[0]) > 0.99) == along_entry
    yaws = [affordance.yaw, *affordance.alternatives]
    if along_entry:  # the other closing axis stays an option
        assert any(abs(np.cos(yaw)) < 0.01 for yaw in yaws)
