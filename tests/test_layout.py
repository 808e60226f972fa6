"""The repository layout: one namespace package `tiers` over the card's folders, nothing shadowing anything."""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ("policies", "sim", "datasets", "deploy")  # code folders holding a slice of `tiers`
TOP_LEVEL = {"pyproject.toml", "README.md", "policies", "ros2_ws", "sim", "datasets", "configs", "tests", "deploy"}
# what each container's tiers/ may hold directly: its subpackages, nothing else
SUBPACKAGES = {
    "policies": {"core", "commands", "services", "policies", "apps", "cli"},
    "sim": {"sim"},
    "datasets": {"datasets"},
    "deploy": {"deploy"},
}


def _tracked_top_level() -> set[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {line.split("/")[0] for line in listed.splitlines() if line}


def test_top_level_is_the_cards_plus_dotfiles() -> None:
    names = {name for name in _tracked_top_level() if not name.startswith(".")}
    assert names <= TOP_LEVEL, f"unexpected top-level entries: {sorted(names - TOP_LEVEL)}"
    assert {"pyproject.toml", "README.md", "policies", "sim", "datasets", "deploy", "configs", "tests"} <= names


@pytest.mark.parametrize("folder", sorted(TOP_LEVEL - {"pyproject.toml", "README.md"}))
def test_no_top_level_folder_is_a_package(folder: str) -> None:
    assert not (ROOT / folder / "__init__.py").exists(), f"{folder}/__init__.py makes {folder} importable"


@pytest.mark.parametrize("container", CONTAINERS)
def test_containers_hold_only_the_namespace(container: str) -> None:
    tiers = ROOT / container / "tiers"
    assert not (tiers / "__init__.py").exists(), "tiers is a namespace package: no tiers/__init__.py"
    stray = {path.name for path in (ROOT / container).iterdir()} - {"tiers", "README.md", "__pycache__"}
    assert not stray, f"{container}/ may hold only tiers/ and README.md, found {sorted(stray)}"
    entries = {path.name for path in tiers.iterdir() if path.name != "__pycache__"}
    assert entries == SUBPACKAGES[container], f"{container}/tiers/ holds {sorted(entries)}"
    for name in entries:
        assert (tiers / name / "__init__.py").is_file(), f"{container}/tiers/{name} needs an __init__.py"


def test_hugging_face_datasets_is_not_shadowed_from_the_repo_root() -> None:
    """`python -c` puts the working directory first on sys.path: the root datasets/ must not win."""
    result = subprocess.run(
        [sys.executable, "-c", "import datasets; print(datasets.__file__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    path = Path(result.stdout.strip())
    assert "site-packages" in path.parts, f"`import datasets` from the repo root resolved to {path}"


def test_tiers_spans_every_container() -> None:
    import tiers

    portions = {Path(path).resolve() for path in tiers.__path__}
    assert {(ROOT / container / "tiers").resolve() for container in CONTAINERS} <= portions


def test_editable_install_is_a_plain_path_file() -> None:
    """mypy and IDEs only follow plain paths in .pth files, not import hooks."""
    distribution = importlib.metadata.distribution("tiers")
    pth_files = [f for f in distribution.files or [] if f.suffix == ".pth"]
    if not pth_files:
        pytest.skip("tiers is installed as a wheel, not editable")
    lines = [line for f in pth_files for line in Path(str(f.locate())).read_text().splitlines() if line.strip()]
    assert not any(line.startswith("import ") for line in lines), f"import hook in the .pth: {lines}"
    assert {Path(line).resolve() for line in lines} == {(ROOT / c).resolve() for c in CONTAINERS}


def test_every_module_imports() -> None:
    import tiers

    names = [info.name for info in pkgutil.walk_packages(tiers.__path__, prefix="tiers.")]
    assert "tiers.core.config" in names and "tiers.cli.main" in names
    for name in names:
        importlib.import_module(name)


def test_wheel_merges_one_tiers_tree(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("tiers-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"tiers", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert "tiers/__init__.py" not in names
    for sub in ("core", "commands", "services", "policies", "apps", "cli", "sim", "datasets", "deploy"):
        assert f"tiers/{sub}/__init__.py" in names, f"tiers/{sub} missing from the wheel"
    assert "tiers/configs/robots/panda.yaml" in names
