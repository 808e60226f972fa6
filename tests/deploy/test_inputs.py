"""What a deployed robot receives from outside is checked field by field: every rejection names the field, what
was expected and what came (the ROS node reports it on ~/status and /rosout and goes on)."""

from __future__ import annotations

import numpy as np
import pytest

from tiers.core.embodiment import EmbodimentSpec
from tiers.deploy.inputs import MAX_TEXT_CHARS, InputRejectedError, StampGuard, check_text, shorten
from tiers.deploy.observations import ObservationAssembler

SPEC = EmbodimentSpec.load("panda")
NAMES = [*SPEC.joint_names, *SPEC.gripper.joint_names]  # 9 names


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def assembler() -> ObservationAssembler:
    return ObservationAssembler(SPEC)


def _rejected(call: object, *args: object) -> InputRejectedError:
    with pytest.raises(InputRejectedError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


def test_joint_states_with_mismatched_arrays_are_rejected_by_field(assembler: ObservationAssembler) -> None:
    """9 names and 5 positions once raised IndexError in the node's control loop (a silent dead node)."""
    home = [*SPEC.home, 0.02, 0.02]
    error = _rejected(assembler.update_joints, NAMES, home[:5], [], 1.0)
    assert (error.field, error.expected, error.got) == ("position", "9 values (one per name)", "5 values")
    assert str(error) == "position: expected 9 values (one per name), got 5 values"
    assert _rejected(assembler.update_joints, NAMES, [*home, 0.0], [], 1.0).field == "position"  # more than names
    assert _rejected(assembler.update_joints, NAMES, home, [0.0] * 4, 1.0).field == "velocity"
    assert _rejected(assembler.update_joints, [*NAMES[:8], NAMES[0]], home, [], 1.0).field == "name"  # repeated
    assert "lacking" in _rejected(assembler.update_joints, NAMES[1:], home[1:], [], 1.0).got
    assert _rejected(assembler.update_joints, ["j"] * 300, [0.0] * 300, [], 1.0).field == "name"  # too many
    nan = list(home)
    nan[2] = float("nan")
    assert _rejected(assembler.update_joints, NAMES, nan, [], 1.0).field == f"position[{SPEC.joint_names[2]}]"
    fingers = list(home)
    fingers[8] = float("inf")
    assert _rejected(assembler.update_joints, NAMES, fingers, [], 1.0).field.startswith("position[panda_finger")
    assembler.update_joints(NAMES, home, [0.0] * 9, 1.0)  # a valid one still passes
    assert assembler.has_joints


def test_camera_models_are_checked(assembler: ObservationAssembler) -> None:
    assert _rejected(assembler.update_intrinsics, "front", np.full((3, 3), np.nan), 320, 240).field == "k"
    assert _rejected(assembler.update_intrinsics, "front", np.zeros((3, 3)), 320, 240).field == "k"
    assert _rejected(assembler.update_intrinsics, "front", np.eye(3), 0, 240).field == "width, height"
    pose = np.eye(4)
    pose[0, 3] = np.inf
    assert _rejected(assembler.update_pose, "front", pose).field == "pose"


def test_texts_are_bounded_and_logged_short() -> None:
    assert check_text("  open the drawer \n") == "open the drawer"
    assert _rejected(check_text, "   ").got == "an empty text"
    huge = "x" * 100_000
    error = _rejected(check_text, huge)
    assert error.expected == f"1..{MAX_TEXT_CHARS} characters" and error.got == "100000 characters"
    assert len(str(error)) < 100  # the rejection never carries the text itself
    assert len(shorten(huge)) < 120 and shorten(huge).endswith("(100000 characters)")


def test_stamps_may_not_jump_ahead_of_the_receivers_clock_nor_back() -> None:
    """A +1000 s stamp was accepted and made the runtime time its command out (30 s) at once."""
    clock = _Clock()
    guard = StampGuard(1.0, clock=clock)
    guard.accept(guard.check(5.0))  # the first stamp sets the reference, whatever clock it is on (sim time)
    clock.now += 0.05
    guard.accept(guard.check(5.05))
    for jump in (1000.0, 1.8e9, 5.05 - 2.0, float("nan")):  # ahead, a wall-clock stamp, back, not a time
        error = _rejected(guard.check, jump)
        assert error.field == "header.stamp"
    clock.now += 3.0  # a stalled sender (a slow sim) is fine: its clock may run behind ours
    guard.accept(guard.check(5.1))
    clock.now += 0.05
    assert guard.check(5.9) == 5.9  # within the tolerance of our clock's progress
    guard.reanchor()  # e.g. while nothing is driven from the states: a restarted driver's clock is taken up
    assert guard.check(0.0) == 0.0
