"""The architecture: every import of a ``tiers`` module goes down the layer table, and no area is in a cycle.

Every module under the code folders is parsed with ``ast``; every ``import``/``from ... import`` of a ``tiers``
module counts, at the top of a file, inside a function, or under ``if TYPE_CHECKING:``. A module belongs to the
area of its longest matching prefix in ``AREAS``.

    8  cli                       one thin module per verb of ``tiers``; nothing imports it
    7  apps, deploy.ros          evaluation, benchmarks, recording, training runs, improve, demo; the ROS nodes
    6  deploy                    safety filter, watchdog, rate, the control loop: no simulator, no rclpy
    5  sim, datasets             the world (backends, kitchen, tasks, expert) and storage (LeRobotDataset I/O)
    4  policies.hierarchy        composes the tiers
    3  policies.high/mid/low     the tiers: never each other
    2  commands, services        the command language the tiers exchange; chat, sandbox, text encoder,
                                 kinematics, the training loop
    1  core                      contracts
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ("policies", "sim", "datasets", "deploy")

SHARED = {"core", "commands", "services"}
TIERS = {"policies.high", "policies.mid", "policies.low"}
# area -> the areas its modules may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "commands": {"core"},
    "services": {"core", "commands"},
    "policies": set(),  # the package docstring only
    "policies.high": SHARED,
    "policies.mid": SHARED,
    "policies.low": SHARED,
    "policies.hierarchy": SHARED | TIERS,
    "sim": SHARED,
    "datasets": SHARED,
    "deploy": SHARED | TIERS | {"policies.hierarchy"},
    # the nodes are process entry points: the simulated robot node wraps the simulator
    "deploy.ros": SHARED | TIERS | {"policies.hierarchy", "deploy", "sim"},
    "apps": SHARED | TIERS | {"policies.hierarchy", "sim", "datasets", "deploy", "deploy.ros"},
    "cli": SHARED | TIERS | {"policies.hierarchy", "sim", "datasets", "deploy", "deploy.ros", "apps"},
}
AREAS = sorted(ALLOWED, key=len, reverse=True)  # longest prefix first

# An import inside a function hides where a module stands. It is allowed only where it buys something:
# the CLI keeps `tiers --help` instant, plug-in registries load a kind when it is asked for, and modules that
# need an optional extra (rclpy, isaacsim, pxr, onnx, ray) stay out of the import of everything else.
LAZY_PACKAGES = (
    "tiers.cli.",  # each verb imports its app when it runs: `tiers --help` stays instant
    "tiers.core.",  # core's __init__ exposes its torch-backed names lazily (PEP 562)
)
LAZY_MODULES = {
    "tiers.sim": "make() loads the kitchen on first use, so `tiers.sim.isaac.preflight` stays light",
    "tiers.policies.hierarchy.kinds": "registry of hierarchy kinds: a kind's tier is imported when it is built",
    "tiers.sim.backends": "registry of simulator backends: Isaac Sim is imported only when selected",
}
OPTIONAL_EXTRAS = (
    "tiers.deploy.ros",  # rclpy
    "tiers.sim.isaac",  # isaacsim
    "tiers.sim.usd",  # pxr (usd-core)
    "tiers.policies.low.export",  # onnx, onnxruntime
    "tiers.apps.evaluation.parallel",  # ray
)


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported tiers module (or package)
    where: str  # file:line
    lazy: bool  # inside a function


def _module_name(container: str, path: Path) -> str:
    parts = list(path.relative_to(ROOT / container).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for container in CONTAINERS:
        for path in sorted((ROOT / container / "tiers").rglob("*.py")):
            found[_module_name(container, path)] = path
    return found


MODULES = _modules()


def _snap(name: str) -> str:
    """The longest known module a dotted name starts with (``tiers.a.b.Name`` -> ``tiers.a.b``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _edges() -> list[Edge]:
    edges: list[Edge] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        inside = {id(inner) for function in functions for inner in ast.walk(function)}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, base] if base else package)
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target.startswith("tiers."):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"  # type: ignore[attr-defined]
                    edges.append(Edge(module, _snap(target), where, id(node) in inside))
    return edges


def area_of(module: str) -> str:
    name = module.removeprefix("tiers.")
    for area in AREAS:
        if name == area or name.startswith(area + "."):
            return area
    raise AssertionError(f"{module} is in no area of the layer table; add its package to ALLOWED")


EDGES = _edges()


def test_every_module_has_an_area() -> None:
    for module in MODULES:
        area_of(module)


def test_no_import_goes_against_the_layers() -> None:
    wrong = [
        f"{edge.where}: {edge.source} ({area_of(edge.source)}) imports {edge.target} ({area_of(edge.target)})"
        for edge in EDGES
        if area_of(edge.target) != area_of(edge.source) and area_of(edge.target) not in ALLOWED[area_of(edge.source)]
    ]
    assert not wrong, "imports against the layer table:\n" + "\n".join(sorted(wrong))


def test_no_area_is_in_an_import_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in EDGES:
        source, target = area_of(edge.source), area_of(edge.target)
        if source != target:
            graph[source].add(target)
    cycles = [cycle for cycle in _strongly_connected(graph) if len(cycle) > 1]
    assert not cycles, f"areas in an import cycle: {cycles}"


def test_in_function_imports_only_where_they_buy_something() -> None:
    hidden = [
        f"{edge.where}: {edge.source} imports {edge.target} inside a function"
        for edge in EDGES
        if edge.lazy
        and not edge.source.startswith(LAZY_PACKAGES)
        and edge.source not in LAZY_MODULES
        and not edge.target.startswith(OPTIONAL_EXTRAS)
        and not edge.source.startswith(OPTIONAL_EXTRAS)
    ]
    assert not hidden, "move these imports to the top of the file:\n" + "\n".join(sorted(hidden))


def test_nothing_imports_the_cli() -> None:
    importers = [edge.where for edge in EDGES if area_of(edge.target) == "cli" and area_of(edge.source) != "cli"]
    assert not importers, f"the CLI is the top layer; imported from {importers}"


@pytest.mark.parametrize(
    ("module", "area"),
    [
        ("tiers.core.observation", "core"),
        ("tiers.deploy.ros.hierarchy_node", "deploy.ros"),
        ("tiers.deploy.safety", "deploy"),
        ("tiers.policies.mid.planner", "policies.mid"),
        ("tiers.apps.evaluation.runner", "apps"),
    ],
)
def test_area_is_the_longest_prefix(module: str, area: str) -> None:
    assert area_of(module) == area


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm over the area graph (a dozen nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components
