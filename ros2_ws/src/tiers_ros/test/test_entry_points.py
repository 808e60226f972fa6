"""`colcon test --packages-select tiers_ros`: the executables import and expose main() (needs tiers[ros])."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["tiers_ros.hierarchy_node", "tiers_ros.mujoco_sim_node"])
def test_executable_modules_import(module: str) -> None:
    assert callable(importlib.import_module(module).main)


def test_the_node_parameters_are_declared_with_descriptions() -> None:
    from tiers.deploy.ros.hierarchy_node import HIERARCHY_PARAMETERS

    assert all(description for _, _, description in HIERARCHY_PARAMETERS.values())
    assert HIERARCHY_PARAMETERS["profile"][0] == "sim" and HIERARCHY_PARAMETERS["confirm_real_robot"][0] is False
