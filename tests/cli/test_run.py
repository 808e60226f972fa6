"""``tiers run``: a hierarchy in the kitchen with replayed corrections, logged as a corrections dataset."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tiers.core.errors import ConfigError
from tiers.datasets.corrections import read_corrections


def test_replayed_corrections_steer_the_run_and_are_logged(
    tmp_path: Path, parse_cli: Callable[..., object], capsys: pytest.CaptureFixture[str]
) -> None:
    from tiers.cli import run

    replay = tmp_path / "corrections.yaml"
    # the expert starts on the drawer; at 1 s the person stops it, at 1.5 s nudges it up, then it carries on
    replay.write_text("- {t: 1.0, text: stop}\n- {t: 1.5, text: move up a bit}\n")
    log = tmp_path / "yay"
    args = parse_cli(
        "run", "expert_reference", "--task", "open/drawer/0", "--corrections", str(replay), "--log", str(log)
    )
    assert run.run(args) == 0  # success
    out = capsys.readouterr().out
    assert "correction stop" in out and "correction move arm up" in out and "success" in out
    events, spans = read_corrections(log).episode(0)
    assert [event.command.text for event in events] == ["stop", "move arm up"]
    assert [event.command.source.value for event in events] == ["replay", "replay"]
    assert spans[0].text == "stop" and spans[0].ended_by == "correction"
    assert spans[1].text == "move arm up" and spans[1].ended_by == "resolved"  # the nudge ended, autonomy resumed


def test_a_malformed_corrections_file_is_named(tmp_path: Path, parse_cli: Callable[..., object]) -> None:
    from tiers.cli import run

    replay = tmp_path / "bad.yaml"
    replay.write_text("- {t: soon, text: stop}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: entry 0: t must be seconds, got 'soon'"):
        run.run(parse_cli("run", "expert_reference", "--corrections", str(replay)))


def test_list_kinds_needs_no_hierarchy(parse_cli: Callable[..., object], capsys: pytest.CaptureFixture[str]) -> None:
    from tiers.cli import run

    assert run.run(parse_cli("run", "--list-kinds")) == 0  # as the README writes it
    kinds = [line.split()[:2] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert ["planner", "grammar"] in kinds and ["mid", "keypoint_paths"] in kinds and ["low", "policy"] in kinds
    with pytest.raises(ConfigError, match="name a hierarchy to run"):
        run.run(parse_cli("run", "--task", "open/drawer/0"))
