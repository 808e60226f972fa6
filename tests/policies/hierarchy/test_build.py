"""Hierarchies from YAML: the shipped presets load, hand-off mismatches are refused by name, and the
all-offline default (grammar -> keypoint paths from RGB-D -> IK) completes a kitchen task."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiers.apps.evaluation.hierarchy_episode import run_hierarchy_episode
from tiers.core.errors import ConfigError
from tiers.core.locations import config_dir
from tiers.policies.hierarchy.build import describe_kinds, hierarchy_embodiment, load_hierarchy
from tiers.policies.hierarchy.config import HierarchyConfig
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.tasks import get_task
from tiers.sim.mujoco import MujocoKitchen

PRESETS = sorted(path.stem for path in (config_dir() / "hierarchies").glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_every_shipped_hierarchy_parses_and_names_registered_kinds(name: str) -> None:
    config = HierarchyConfig.load(name)
    assert config.name == name
    listing = describe_kinds()
    for spec in (config.planner, config.mid, config.low):
        if spec is not None:
            assert f" {spec.kind} " in listing


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hierarchy.yaml"
    path.write_text(text)
    return path


def test_mismatched_handoffs_are_refused_naming_every_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: broken\nplanner: {kind: grammar}\nlow: {kind: ik_path}\n")
    with pytest.raises(ConfigError, match=r"ik_path.*follows an end-effector path.*no mid tier"):
        load_hierarchy(path)


def test_unknown_kinds_and_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown kind 'teleport'.*known low kinds: .*ik_path"):
        load_hierarchy(_write(tmp_path, "name: x\nplanner: {kind: grammar}\nlow: {kind: teleport}\n"))
    with pytest.raises(ConfigError, match=r"grammar: takes no settings"):
        load_hierarchy(
            _write(tmp_path, "name: x\nplanner: {kind: grammar, settings: {depth: 2}}\nlow: {kind: expert}\n")
        )
    with pytest.raises(ConfigError, match=r"expert: needs the kitchen simulator"):
        load_hierarchy(_write(tmp_path, "name: x\nplanner: {kind: grammar}\nlow: {kind: expert}\n"))


def test_privileged_kinds_are_declared_by_the_hierarchy_and_built_by_the_evaluation() -> None:
    import tiers.apps.evaluation.kinds  # noqa: F401  (registers the builders of the privileged kinds)
    from tiers.apps.evaluation.expert_driver import ExpertDriver

    env = KitchenEnv(render=False)
    try:
        hierarchy = load_hierarchy("expert_reference", env=env)
    finally:
        env.close()
    assert hierarchy.privileged == ["expert"] and isinstance(hierarchy.runtime.low, ExpertDriver)


def test_the_offline_default_opens_the_drawer_from_rgbd_perception() -> None:
    spec = hierarchy_embodiment("offline_paths")
    assert {camera.name: (camera.width, camera.depth) for camera in spec.cameras}["front"] == (320, True)
    env = KitchenEnv(backend=MujocoKitchen(spec), render=False)
    try:
        hierarchy = load_hierarchy("offline_paths", env=env)
        assert hierarchy.privileged == []
        task = get_task("open/drawer/0")
        episode = run_hierarchy_episode(env, hierarchy.runtime_for(task), task, seed=0)
    finally:
        env.close()
    assert episode.result.success, episode.result.reason
    assert episode.commands == ["open the drawer"]
    assert episode.timings["mid"]["calls"] == 1 and episode.timings["low"]["calls"] > 50
