"""The sandbox: real child processes, the full escape corpus, benign programs, limits and the API bridge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiers.core.errors import TiersError
from tiers.services.sandbox import (
    SandboxLimitError,
    SandboxLimits,
    SandboxProgramError,
    SandboxViolation,
    run_sandboxed,
)
from tiers.services.sandbox_child import FORBIDDEN_NAMES, SAFE_BUILTINS, check_program
from tiers.services.sandbox_corpus import ATTACKS, BENIGN, run_corpus

FAST = SandboxLimits(cpu_seconds=1.0, wall_seconds=2.0, memory_bytes=192 * 1024 * 1024)


def test_escape_corpus_has_no_effect_and_benign_programs_run() -> None:
    report = run_corpus(FAST)
    effects = [(o.name, o.outcome, o.message) for o in report.attacks if o.effect]
    rejected = [(o.name, o.outcome, o.message) for o in report.benign if o.effect]
    assert not effects, f"attacks with an effect: {effects}"
    assert not rejected, f"benign programs rejected: {rejected}"
    figures = report.figures()
    assert figures["sandbox_attacks_tried"] == len(ATTACKS) >= 50
    assert figures["sandbox_benign_tried"] == len(BENIGN) >= 20
    categories = {o.category for o in report.attacks}
    assert {"import", "attribute", "getattr", "format", "file", "network", "exec", "resource"} <= categories
    # the resource bombs were stopped by a limit, not by the checker: the runtime layers were exercised
    stopped = {o.name: o.outcome for o in report.attacks if o.category == "resource" and "fork" not in o.name}
    assert set(stopped.values()) == {"limit"}, stopped


def test_api_calls_reach_the_parent_with_plain_data_only(tmp_path: Path) -> None:
    seen: list[object] = []

    def position(name: str) -> np.ndarray:
        seen.append(name)
        return np.array([0.5, -0.25, 0.125])

    api = {"robot.position": position, "say": lambda text: seen.append(("say", text))}
    program = "def far(p):\n    return p[0] > 0.4\np = robot.position('cup')\nsay(f'x={p[0]}')\nret_val = [p, far(p)]"
    result = run_sandboxed(program, api, limits=FAST)
    assert result.value == [[0.5, -0.25, 0.125], True]  # the numpy array crossed as a list
    assert seen == ["cup", ("say", "x=0.5")]
    assert [call[0] for call in result.calls] == ["robot.position", "say"]


def test_an_api_returning_an_object_is_refused_inside_the_program() -> None:
    with pytest.raises(SandboxProgramError, match="ApiError") as raised:
        run_sandboxed("x = leak()", {"leak": lambda: Path("/")}, limits=FAST)
    assert raised.value.kind == "ApiError" and raised.value.line == 1


def test_api_errors_can_be_handled_by_the_program() -> None:
    def fail() -> None:
        raise ValueError("unreachable pose")

    program = "try:\n    fail()\n    ret_val = 'moved'\nexcept ApiError as e:\n    ret_val = str(e)"
    assert run_sandboxed(program, {"fail": fail}, limits=FAST).value == "fail: ValueError: unreachable pose"


def test_program_errors_name_the_kind_and_line() -> None:
    with pytest.raises(SandboxProgramError, match="ZeroDivisionError at line 2") as raised:
        run_sandboxed("print('before')\nx = 1 / 0", {}, limits=FAST)
    assert raised.value.output == "before\n"
    assert not isinstance(raised.value, SandboxViolation) and isinstance(raised.value, TiersError)


def test_violations_name_line_and_construct_before_any_process_starts() -> None:
    with pytest.raises(SandboxViolation, match=r"line 3, column 4: attributes starting with '_'.*__class__"):
        run_sandboxed("x = 1\nif x:\n    ().__class__", {}, limits=FAST)
    with pytest.raises(SandboxViolation, match="API name '_private'"):
        run_sandboxed("x = 1", {"_private": lambda: 1}, limits=FAST)


def test_wall_clock_limit_excludes_time_spent_in_api_calls() -> None:
    import time

    def slow_motion() -> str:
        time.sleep(0.6)
        return "done"

    result = run_sandboxed("ret_val = [slow_motion() for _ in range(3)]", {"slow_motion": slow_motion}, limits=FAST)
    assert result.value == ["done"] * 3
    assert result.api_seconds > 1.5 and result.wall_seconds < FAST.wall_seconds
    with pytest.raises(SandboxLimitError, match="wall-clock"):
        run_sandboxed("while True:\n    pass", {}, limits=SandboxLimits(cpu_seconds=5.0, wall_seconds=0.5))


def test_curated_builtins_hold_no_escape_hatch() -> None:
    exposed = set(SAFE_BUILTINS)
    assert not exposed & FORBIDDEN_NAMES
    assert not {"__import__", "open", "eval", "exec", "getattr", "type", "object", "vars"} & exposed
    assert all(not hasattr(value, "__file__") for value in SAFE_BUILTINS.values())  # no module objects
    check_program("x = robot.grasp('cup')", ["grasp"])  # API members extend the attribute allow-list


def test_time_spent_in_api_calls_has_its_own_limit() -> None:
    import time

    limits = SandboxLimits(cpu_seconds=1.0, wall_seconds=2.0, api_seconds=0.3)
    with pytest.raises(SandboxLimitError, match="API calls took"):
        run_sandboxed("while True:\n    slow()", {"slow": lambda: time.sleep(0.1)}, limits=limits)
