"""Naming anonymous clusters by class without masks: synthetic clouds (geometry priors, the instruction's colour
words, remembered colours, the held object following the TCP) and the mask-free path planning a pick on a
rendered kitchen."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tiers.commands.palette import PALETTE
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.policies.mid.cluster_naming import ClusterNamer, instruction_colors
from tiers.policies.mid.outcomes import OutcomeChecker
from tiers.policies.mid.perception import BACKGROUND, SceneCloud, SegmentationSource, perception_embodiment
from tiers.policies.mid.planner import KeypointPathPlanner, MidPlannerConfig
from tiers.sim.kitchen.layout import sample_layout
from tiers.sim.mujoco import MujocoKitchen


def cylinder(centre: tuple[float, float], radius: float, height: float, rng: np.random.Generator) -> np.ndarray:
    """(M, 3) points on a standing cylinder's top and side (as two cameras from above and the front see it)."""
    angle, r = rng.uniform(0, 2 * np.pi, 200), radius * np.sqrt(rng.uniform(0, 1, 200))
    top = np.stack([r * np.cos(angle), r * np.sin(angle), np.full(200, height)], axis=1)
    angle, z = rng.uniform(0, 2 * np.pi, 150), rng.uniform(0.01, height, 150)
    side = np.stack([radius * np.cos(angle), radius * np.sin(angle), z], axis=1)
    return np.vstack([top, side]) + np.array([centre[0], centre[1], 0.0])


def dome(centre: tuple[float, float], radius: float, rng: np.random.Generator) -> np.ndarray:
    """(M, 3) points on the upper half of a sphere standing on z = 0 (an apple)."""
    direction = rng.normal(size=(300, 3))
    direction[:, 2] = np.abs(direction[:, 2])
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * radius + [centre[0], centre[1], radius + 0.01]


def capsule_row(centre: tuple[float, float], length: float, radius: float, rng: np.random.Generator) -> np.ndarray:
    """(M, 3) points on the upper half of a capsule lying along x (a banana, seen from above)."""
    x = rng.uniform(-length / 2 + radius, length / 2 - radius, 300)
    y = rng.uniform(-radius, radius, 300)
    z = radius + np.sqrt(radius**2 - y**2)
    return np.stack([x, y, z], axis=1) + np.array([centre[0], centre[1], 0.0])


def synthetic_cloud(colors: dict[str, str]) -> tuple[SceneCloud, dict[str, int]]:
    """Anonymous clusters of a can, an apple and a banana, painted in ``colors``; the object -> cluster id."""
    rng = np.random.default_rng(0)
    parts = {
        "can": cylinder((0.5, 0.2), 0.033, 0.121, rng),
        "apple": dome((0.4, -0.1), 0.035, rng),
        "banana": capsule_row((0.3, 0.15), 0.16, 0.017, rng),
    }
    points, paint, labels, ids = [], [], [], {}
    for index, (name, part) in enumerate(parts.items()):
        points.append(part)
        paint.append(np.tile(PALETTE[colors[name]][:3], (len(part), 1)))
        labels.append(np.full(len(part), index, dtype=np.int32))
        ids[name] = index
    counter = np.column_stack([rng.uniform(0.2, 0.7, 500), rng.uniform(-0.3, 0.3, 500), np.zeros(500)])
    cloud = SceneCloud(
        np.vstack([*points, counter]), np.vstack([*paint, np.full((500, 3), 0.6)]),
        np.concatenate([*labels, np.full(500, BACKGROUND, dtype=np.int32)]),
        {index: f"cluster_{index}" for index in ids.values()}, SegmentationSource.CLUSTERS, 0.0,
    )  # fmt: skip
    return cloud, ids


def observation(instruction: str = "", opening: float = 0.08, tcp: tuple[float, ...] = (0.4, 0.0, 0.3)) -> Observation:
    return Observation(
        joint_positions=np.zeros(7), joint_velocities=np.zeros(7), ee_pose=np.array([*tcp, 0.0, 1.0, 0.0, 0.0]),
        gripper_opening=opening, timestamp=0.0, instruction=instruction,
    )  # fmt: skip


def test_clusters_are_named_by_class_geometry() -> None:
    cloud, ids = synthetic_cloud({"can": "red", "apple": "green", "banana": "yellow"})
    named = ClusterNamer().name(cloud, observation())
    for name in ("can", "apple", "banana"):
        assert named.names.get(ids[name]) == name, named.names
        np.testing.assert_array_equal(named.segment(name), cloud.points[cloud.labels == ids[name]])
    assert named.source is SegmentationSource.CLUSTERS


def test_the_instruction_colour_and_remembered_colours_decide_between_lookalikes() -> None:
    assert instruction_colors("Put the red apple in the blue bowl") == {"apple": "red", "bowl": "blue"}
    assert instruction_colors("pick up the mug") == {}
    rng = np.random.default_rng(1)
    twins = [cylinder((0.4, -0.1), 0.033, 0.121, rng), cylinder((0.5, 0.2), 0.033, 0.121, rng)]
    cloud = SceneCloud(
        np.vstack(twins), np.vstack([np.tile(PALETTE["blue"][:3], (350, 1)), np.tile(PALETTE["red"][:3], (350, 1))]),
        np.repeat(np.array([0, 1], dtype=np.int32), 350), {0: "cluster_0", 1: "cluster_1"},
        SegmentationSource.CLUSTERS,
    )  # fmt: skip
    namer = ClusterNamer()
    named = namer.name(cloud, observation("pick up the red can"))
    assert named.names == {1: "can"}  # two cans' worth of geometry: the colour word picks the red one
    # a later frame without the colour word: the can keeps the colour it was seen with
    later = namer.name(cloud, observation("pick up the can"))
    assert later.names == {1: "can"}
    assert np.all(later.labels[:350] == BACKGROUND)  # the unnamed cluster is background, as fixtures are


def test_the_held_object_follows_the_tcp_while_the_fingers_hold_it() -> None:
    cloud, ids = synthetic_cloud({"can": "red", "apple": "green", "banana": "yellow"})
    namer = ClusterNamer()
    namer.name(cloud, observation())
    apple = cloud.points[cloud.labels == ids["apple"]]
    grasp = np.array([0.4, -0.1, 0.045, 0.0, 1.0, 0.0, 0.0])
    namer.attach("apple", apple, cloud.colors[cloud.labels == ids["apple"]], grasp)
    # the self-filter removed the apple with the hand: the lifted TCP carries it
    gone = replace(cloud, labels=np.where(cloud.labels == ids["apple"], BACKGROUND, cloud.labels).astype(np.int32))
    lifted = namer.name(gone, observation(opening=0.06, tcp=(0.4, -0.1, 0.145)))
    held = lifted.segment("apple")
    assert len(held) == len(apple)
    np.testing.assert_allclose(held.mean(axis=0), apple.mean(axis=0) + np.array([0.0, 0.0, 0.1]), atol=1e-9)
    assert lifted.segment("can").shape == cloud.segment("cluster_0").shape
    # fingers shut on nothing or open: nothing is held
    for opening in (0.0, 0.08):
        assert len(namer.name(gone, observation(opening=opening)).segment("apple")) == 0


def command(text: str) -> LanguageCommand:
    return LanguageCommand(text=text, style=CommandStyle.SUBTASK, source=CommandSource.PLANNER, timestamp=0.0)


def test_the_mask_free_path_names_and_plans_a_pick_in_the_kitchen() -> None:
    kitchen = MujocoKitchen(perception_embodiment(EmbodimentSpec.load("panda"), width=320, height=240))
    try:
        config = MidPlannerConfig.from_dict(
            {"perception": {"use_masks": False, "plane_distance": 0.004, "plane_iterations": 60}}
        )
        planner = KeypointPathPlanner.for_kitchen(kitchen, config)
        seen = kitchen.reset(sample_layout(5, objects=["apple", "bowl"], n_distractors=2))
        assert seen.segmentation  # the simulator gives masks: the planner must not use them
        planner.seed(0)
        outcome = planner.plan_detailed(seen, command("pick up the apple"))
        assert outcome.ok, outcome.reason
        assert outcome.cloud is not None and outcome.cloud.source is SegmentationSource.CLUSTERS
        # the named apple lies where the simulator's mask says it is
        masked = KeypointPathPlanner.for_kitchen(kitchen).builder.build(seen).segment("apple")
        apple = outcome.cloud.segment("apple")
        assert len(apple) > 20
        np.testing.assert_allclose(apple.mean(axis=0)[:2], masked.mean(axis=0)[:2], atol=0.02)
        assert planner.namer.attached is not None and planner.namer.attached.name == "apple"
        # the outcome checker sees the same named clusters (the apple is still on the counter: not picked)
        checker = OutcomeChecker.for_mid(planner)
        assert checker is not None
        result = checker.check("pick up the apple", seen)
        assert result.failed and "apple" in result.reason
    finally:
        kitchen.close()
