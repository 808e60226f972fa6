"""The `tiers` command as a user runs it: a real subprocess of the installed entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiers.cli.main import VERBS, main
from tiers.sim.isaac.preflight import check_isaac_requirements


def _tiers(*args: str) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "tiers"
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "tiers.cli.main"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=300)


def test_help_lists_every_verb() -> None:
    result = _tiers("--help")
    assert result.returncode == 0, result.stderr
    for verb in VERBS:
        assert verb in result.stdout


def test_unknown_verb_fails_with_usage() -> None:
    result = _tiers("fly")
    assert result.returncode == 2
    assert "invalid choice: 'fly'" in result.stderr


def test_info_reports_backends_without_a_traceback() -> None:
    result = _tiers("info", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    backends = {probe["name"]: probe for probe in report["backends"]}
    assert backends["mujoco"]["available"], backends["mujoco"]
    assert "offscreen rendering" in backends["mujoco"]["detail"]
    assert backends["ros"]["available"], backends["ros"]
    assert "rmw_fastrtps_cpp" in backends["ros"]["detail"]
    assert backends["lerobot"]["available"], backends["lerobot"]
    assert backends["minilm"]["available"], backends["minilm"]
    # Isaac Sim is available exactly where its preflight finds nothing missing (it is never started here)
    missing = check_isaac_requirements()
    assert backends["isaacsim"]["available"] == (not missing), backends["isaacsim"]
    if any("isaacsim package is not installed" in item for item in missing):
        assert "pip install 'tiers[isaacsim]'" in backends["isaacsim"]["detail"]
    assert backends["gpu"]["available"] == _cuda_visible()
    assert report["versions"]["lerobot"].startswith("0.6")
    assert "panda" in report["presets"]["robots"]


def _cuda_visible() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def test_info_table_is_readable() -> None:
    result = _tiers("info")
    assert result.returncode == 0, result.stderr
    assert "backends" in result.stdout and "configs:" in result.stdout
    if any("isaacsim package is not installed" in item for item in check_isaac_requirements()):
        assert "tiers[isaacsim]" in result.stdout  # rich markup must not eat the extra's brackets


def test_info_reports_a_missing_config_dir(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERS_CONFIG_DIR", "/nonexistent/configs")
    assert main(["info", "--json"]) == 0  # a missing config dir is reported, not raised
    report = json.loads(capsys.readouterr().out)
    assert report["config_dir"] is None and "is not a directory" in report["config_error"]
