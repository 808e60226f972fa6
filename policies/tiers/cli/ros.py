"""``tiers ros ACTION``: run the ROS 2 nodes without ``ros2 launch``, and talk to a running hierarchy node.

    tiers ros up --config ros2_ws/src/tiers_ros/config/sim.yaml   the nodes of a parameter file, one process
    tiers ros instruct "open the kitchen drawer"                 start an instruction
    tiers ros correct "move left"                                a live correction (YAY), applied next tick
    tiers ros stop ["reason"] / tiers ros resume                 the latched software stop (not an e-stop)
    tiers ros status                                             the node's status JSON

Needs the ``ros`` extra (``pip install 'tiers[ros]'``). ``--domain-id`` sets ROS_DOMAIN_ID for this process.
Without it, and with ROS_DOMAIN_ID unset (or 0), every verb uses the sim profile's secure defaults, so the
talking verbs find the nodes that ``up`` starts from ``config/sim.yaml``: ROS_DOMAIN_ID=42 and discovery on
this machine only. A real-profile ``up`` keeps the environment's domain: export the same ROS_DOMAIN_ID (or
pass ``--domain-id``) where you talk to it.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HELP = "ROS 2: start the nodes in one process (up) or instruct/correct/stop/resume a running hierarchy node"
DEFAULT_SIM_DOMAIN = 42  # a non-zero domain: a simulation must not share domain 0 with robots on the network
NODE_CLASSES = ("mujoco_sim_node", "hierarchy_node")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start the nodes of a parameter file in one process (Ctrl-C stops)")
    up.add_argument("--config", type=Path, required=True, help="ROS 2 parameter YAML keyed by node name")
    up.add_argument(
        "--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="override one parameter (repeatable)"
    )
    for name, help_text in (
        ("instruct", "start an instruction"),
        ("correct", "send a live correction, e.g. 'move left', 'stop', 'open the cabinet first'"),
        ("stop", "latch the node's software stop (NOT a hardware e-stop)"),
        ("resume", "end a hold or stop"),
        ("status", "print the node's status JSON"),
    ):
        sub = actions.add_parser(name, help=help_text)
        if name in ("instruct", "correct"):
            sub.add_argument("text", help="what to say")
        if name == "stop":
            sub.add_argument("text", nargs="?", default="stop requested from the command line", help="reason")
        sub.add_argument("--node", default="/hierarchy_node", help="fully qualified name of the hierarchy node")
        sub.add_argument("--timeout", type=float, default=5.0, help="s to wait for the node")
        sub.add_argument(
            "--domain-id",
            type=int,
            default=None,
            help=f"ROS_DOMAIN_ID (default: the environment's; unset or 0: the sim profile's {DEFAULT_SIM_DOMAIN})",
        )
    up.add_argument("--domain-id", type=int, default=None, help=f"ROS_DOMAIN_ID (sim default {DEFAULT_SIM_DOMAIN})")


def sim_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment variables the sim profile sets where ``environ`` leaves them open: a non-zero domain
    (:data:`DEFAULT_SIM_DOMAIN`) when ROS_DOMAIN_ID is unset, empty or 0, and localhost-only discovery."""
    defaults = {}
    if environ.get("ROS_DOMAIN_ID", "0").strip() in ("", "0"):
        defaults["ROS_DOMAIN_ID"] = str(DEFAULT_SIM_DOMAIN)
    if not environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        defaults["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    return defaults


def run(args: argparse.Namespace) -> int:
    if args.domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    if args.action == "up":
        return _up(args)
    # the same domain as `tiers ros up` of the sim profile (the README's example), unless told otherwise
    os.environ.update(sim_defaults(os.environ))
    from tiers.deploy.ros.client import HierarchyClient

    with HierarchyClient(args.node) as client:
        if args.action == "instruct":
            client.instruct(args.text, timeout=args.timeout)
            print(f"instruction sent to {args.node} (ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}): {args.text!r}")
        elif args.action == "correct":
            event = client.correct(args.text, timeout=args.timeout)
            if event is None:
                status = client.status(timeout=args.timeout)
                print(
                    f"correction sent to {args.node}: {args.text!r}, not applied yet: the node is {status['state']} "
                    f"({status['reason']}); instruction {status['instruction']!r}"
                )
                return 1
            command = event.get("command") or {}
            print(
                f"correction applied at tick {event.get('tick')} (received at tick {event.get('received_tick')}): "
                f"{event.get('detail')} [{command.get('style')}: {command.get('text')!r}]"
            )
        elif args.action == "stop":
            client.stop(args.text, timeout=args.timeout)
            print(f"software stop latched on {args.node} ({args.text!r}); this is not a hardware e-stop")
        elif args.action == "resume":
            client.resume(timeout=args.timeout)
            print(f"resume sent to {args.node}")
        else:
            print(json.dumps(client.status(timeout=args.timeout), indent=2))
    return 0


def _up(args: argparse.Namespace) -> int:
    from tiers.core.config import apply_override, read_yaml_mapping
    from tiers.core.errors import ConfigError

    document = read_yaml_mapping(args.config)
    sections: dict[str, dict[str, Any]] = {}
    for name, section in document.items():
        if name not in NODE_CLASSES:
            raise ConfigError(f"{args.config}: unknown node {name!r}; tiers ros up starts {', '.join(NODE_CLASSES)}")
        if not isinstance(section, dict) or not isinstance(section.get("ros__parameters", {}), dict):
            raise ConfigError(f"{args.config}: {name} must hold a ros__parameters mapping")
        sections[name] = dict(section.get("ros__parameters") or {})
    for override in args.set:
        node, _, rest = override.partition(".")
        if node not in sections:
            raise ConfigError(f"--set {override!r}: no node {node!r} in {args.config} (has {', '.join(sections)})")
        apply_override(sections[node], rest)
    real = sections.get("hierarchy_node", {}).get("profile") == "real"
    if not real:
        # secure sim defaults: a non-zero domain and discovery on this machine only (the talking verbs' too)
        os.environ.update(sim_defaults(os.environ))
    from tiers.deploy.ros.hierarchy_node import HierarchyNode
    from tiers.deploy.ros.sim_robot_node import MujocoSimNode
    from tiers.deploy.ros.spin import parameter_overrides, ros_session, spin

    with ros_session():
        nodes: list[Any] = []
        for name, parameters in sections.items():
            if name == "mujoco_sim_node":
                nodes.append(MujocoSimNode(parameter_overrides=parameter_overrides(parameters)))
            else:
                # no lifecycle manager in one process: configure + activate at startup unless told otherwise
                nodes.append(HierarchyNode(parameter_overrides=parameter_overrides({"autostart": True, **parameters})))
        print(
            f"tiers ros up: {', '.join(sections)} on ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')} "
            f"(discovery {os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'default')}); Ctrl-C stops"
        )
        spin(nodes)
    return 0
