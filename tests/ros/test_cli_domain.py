"""`tiers ros`'s talking verbs find the node that the README's `tiers ros up --config .../sim.yaml` starts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from tiers.cli import ros as ros_cli

SIM_CONFIG = Path(__file__).parents[2] / "ros2_ws/src/tiers_ros/config/sim.yaml"


def test_up_and_the_talking_verbs_agree_on_the_domain() -> None:
    """`up` of the sim profile moves an unset (or 0) ROS_DOMAIN_ID to 42; the talking verbs once kept 0 and found
    nothing without --domain-id. Both now take the same defaults from one function."""
    assert yaml.safe_load(SIM_CONFIG.read_text())["hierarchy_node"]["ros__parameters"]["profile"] == "sim"
    for unset in ({}, {"ROS_DOMAIN_ID": ""}, {"ROS_DOMAIN_ID": "0"}):
        assert ros_cli.sim_defaults(unset) == {
            "ROS_DOMAIN_ID": str(ros_cli.DEFAULT_SIM_DOMAIN),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        }
    chosen = {"ROS_DOMAIN_ID": "7", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    assert ros_cli.sim_defaults(chosen) == {}  # what a person exported is kept, by every verb


def test_a_talking_verb_uses_the_sim_domain_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rclpy", reason="needs the ros extra")
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    seen: dict[str, str] = {}

    class _Client:  # stands in for HierarchyClient: records the domain it would join
        def __init__(self, node: str) -> None:
            import os

            seen.update(domain=os.environ["ROS_DOMAIN_ID"], discovery=os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"])

        def __enter__(self) -> _Client:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def resume(self, *, timeout: float) -> None:
            pass

    monkeypatch.setattr("tiers.deploy.ros.client.HierarchyClient", _Client)
    args = argparse.Namespace(action="resume", domain_id=None, node="/hierarchy_node", timeout=1.0)
    assert ros_cli.run(args) == 0
    assert seen == {"domain": "42", "discovery": "LOCALHOST"}
