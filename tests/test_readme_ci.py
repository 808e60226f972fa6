"""The README's two commands are the contract with users; CI must run the test one verbatim."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    """The command lines of the README's Quickstart section."""
    quickstart = (ROOT / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quickstart, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_readme_has_exactly_two_quickstart_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, commands
    setup_and_run, setup_and_test = commands
    assert "pip install" in setup_and_run and "tiers " in setup_and_run
    assert "pip install" in setup_and_test and "pytest" in setup_and_test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = _readme_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines, f".ci/run does not contain the README's test command: {test_command}"
