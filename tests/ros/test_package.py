"""The tiers_ros ament_python package: layout, entry points, launch files and parameter files agree.

``ros2 launch`` (the ``launch`` / ``launch_ros`` packages) has no PyPI wheels: where ``launch`` is importable the
launch files are loaded for real; otherwise they are parsed with ``ast`` and every executable, parameter file
and launch argument they name is checked to exist.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

PACKAGE = Path(__file__).resolve().parents[2] / "ros2_ws" / "src" / "tiers_ros"
LAUNCH_FILES = sorted((PACKAGE / "launch").glob("*.launch.py"))


def _console_scripts() -> dict[str, str]:
    """executable name -> module:function, from setup.py's entry points."""
    tree = ast.parse((PACKAGE / "setup.py").read_text())
    scripts: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # f"hierarchy_node = {PACKAGE}.hierarchy_node:main"
            text = "".join(str(part.value) if isinstance(part, ast.Constant) else "tiers_ros" for part in node.values)
            match = re.fullmatch(r"(\w+) = ([\w.]+):(\w+)", text)
            if match:
                scripts[match.group(1)] = f"{match.group(2)}:{match.group(3)}"
    return scripts


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) == name or getattr(node.func, "attr", None) == name)
    ]


def _keyword(call: ast.Call, key: str) -> ast.expr | None:
    return next((keyword.value for keyword in call.keywords if keyword.arg == key), None)


def test_ament_python_layout() -> None:
    assert (PACKAGE / "resource" / "tiers_ros").is_file()
    assert "<build_type>ament_python</build_type>" in (PACKAGE / "package.xml").read_text()
    setup_cfg = (PACKAGE / "setup.cfg").read_text()
    assert "script_dir=$base/lib/tiers_ros" in setup_cfg and "install_scripts=$base/lib/tiers_ros" in setup_cfg
    setup = (PACKAGE / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in setup and 'glob("config/*.yaml")' in setup


def test_every_entry_point_imports_and_is_callable() -> None:
    scripts = _console_scripts()
    assert set(scripts) == {"hierarchy_node", "mujoco_sim_node"}
    for target in scripts.values():
        module, function = target.split(":")
        path = PACKAGE / Path(*module.split(".")).with_suffix(".py")
        assert path.is_file(), f"{target}: {path} is missing"
        tree = ast.parse(path.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == function for n in tree.body), target


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_only_things_that_exist(launch_file: Path) -> None:
    if importlib.util.find_spec("launch") is not None:  # a ROS install: load it for real
        spec = importlib.util.spec_from_file_location(launch_file.stem.replace(".", "_"), launch_file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.generate_launch_description().entities
    tree = ast.parse(launch_file.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    scripts = _console_scripts()
    nodes = _calls(tree, "Node") + _calls(tree, "LifecycleNode")
    assert nodes, "the launch file starts no node"
    for call in nodes:
        package, executable = _keyword(call, "package"), _keyword(call, "executable")
        assert isinstance(package, ast.Constant) and package.value == "tiers_ros"
        assert isinstance(executable, ast.Constant) and executable.value in scripts, ast.unparse(call)
    declared = {
        call.args[0].value
        for call in _calls(tree, "DeclareLaunchArgument")
        if call.args and isinstance(call.args[0], ast.Constant)
    }
    used = {
        call.args[0].value
        for call in _calls(tree, "LaunchConfiguration")
        if call.args and isinstance(call.args[0], ast.Constant)
    }
    assert used <= declared, f"arguments used but not declared: {sorted(used - declared)}"
    for call in _calls(tree, "PathJoinSubstitution"):  # [FindPackageShare("tiers_ros"), "config", "x.yaml"]
        parts = call.args[0]
        assert isinstance(parts, ast.List)
        relative = [part.value for part in parts.elts[1:] if isinstance(part, ast.Constant)]
        assert (PACKAGE.joinpath(*relative)).is_file(), f"{launch_file.name} names missing {'/'.join(relative)}"


def test_sim_launch_has_secure_defaults() -> None:
    tree = ast.parse((PACKAGE / "launch" / "sim.launch.py").read_text())
    environment = {
        call.args[0].value: call.args[1]
        for call in _calls(tree, "SetEnvironmentVariable")
        if isinstance(call.args[0], ast.Constant)
    }
    assert isinstance(environment["ROS_AUTOMATIC_DISCOVERY_RANGE"], ast.Constant)
    assert environment["ROS_AUTOMATIC_DISCOVERY_RANGE"].value == "LOCALHOST"
    domain = next(
        call
        for call in _calls(tree, "DeclareLaunchArgument")
        if isinstance(call.args[0], ast.Constant) and call.args[0].value == "domain_id"
    )
    default = _keyword(domain, "default_value")
    assert isinstance(default, ast.Constant) and int(default.value) != 0


def test_parameter_files_fit_the_nodes() -> None:
    """Every parameter in config/*.yaml is one the node declares; the real profile is not confirmed in a file."""
    pytest.importorskip("rclpy", reason="the nodes' parameter tables need rclpy: pip install 'tiers[ros]'")
    import tiers.deploy.ros.sim_robot_node as sim_robot_node
    from tiers.deploy.ros.conventions import DEFAULT_COMMAND_TOPICS
    from tiers.deploy.ros.hierarchy_node import HIERARCHY_PARAMETERS

    # the sim node declares its parameters one by one: read their names from its source
    source = ast.parse(Path(sim_robot_node.__file__).read_text())
    sim_class = next(n for n in source.body if isinstance(n, ast.ClassDef) and n.name == "MujocoSimNode")
    sim_parameters = {
        call.args[0].value for call in _calls(sim_class, "declare") if isinstance(call.args[0], ast.Constant)
    } | {f"{interface}_topic" for interface in DEFAULT_COMMAND_TOPICS}
    assert {"task", "cameras", "camera_rate_hz", "image_stride"} <= sim_parameters
    for config in sorted((PACKAGE / "config").glob("*.yaml")):
        document = yaml.safe_load(config.read_text())
        for node, section in document.items():
            parameters = set(section["ros__parameters"])
            known = set(HIERARCHY_PARAMETERS) if node == "hierarchy_node" else sim_parameters
            assert parameters <= known, f"{config.name}: {node} has unknown parameters {sorted(parameters - known)}"
    real = yaml.safe_load((PACKAGE / "config" / "robot.yaml").read_text())["hierarchy_node"]["ros__parameters"]
    assert real["profile"] == "real" and real["confirm_real_robot"] is False
