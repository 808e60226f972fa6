"""The RT-H language-motion labeler on synthetic trajectories (base frame: x forward, y left, z up)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tiers.commands.motion_words import (
    CLOSE_GRIPPER,
    OPEN_GRIPPER,
    ROTATE_CLOCKWISE,
    ROTATE_COUNTERCLOCKWISE,
    STOP,
    VOCABULARY,
)
from tiers.core.errors import ContractError
from tiers.datasets.language_motion import (
    MIN_SEGMENT_FRAMES,
    MIN_TRANSLATION_SPEED,
    LabelerSettings,
    label_motions,
    measure_agreement,
    merge_short_runs,
    runs,
)

DT = 0.05  # s, 20 Hz
DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # wxyz: tool z pointing down (180 degrees about x)


def _trajectory(velocity: tuple[float, float, float], steps: int = 40, *, yaw_rate: float = 0.0) -> np.ndarray:
    """(steps, 7) poses moving at ``velocity`` m/s and turning at ``yaw_rate`` rad/s about base z."""
    t = np.arange(steps)[:, None] * DT
    positions = np.array([0.4, 0.0, 0.3]) + t * np.asarray(velocity)
    base = Rotation.from_quat(np.roll(DOWN, -1))
    turns = Rotation.from_rotvec(np.array([[0.0, 0.0, yaw_rate]]) * t)
    quaternions = np.roll((turns * base).as_quat(), 1, axis=1)
    return np.hstack([positions, quaternions])


def _labels(poses: np.ndarray, openings: np.ndarray | None = None) -> list[str]:
    if openings is None:
        openings = np.full(len(poses), 0.04)
    return label_motions(poses, openings, dt=DT)


def _bulk(labels: list[str]) -> str:
    """The label of the middle of a trajectory (edges: look-ahead clamping)."""
    return labels[len(labels) // 2]


def test_vocabulary_is_documented_size_and_unique() -> None:
    assert len(VOCABULARY) == len(set(VOCABULARY)) == 31
    assert {"move arm forward", "move arm left and down", ROTATE_CLOCKWISE, CLOSE_GRIPPER, OPEN_GRIPPER, STOP} <= set(
        VOCABULARY
    )


@pytest.mark.parametrize(
    ("velocity", "phrase"),
    [
        ((0.1, 0.0, 0.0), "move arm forward"),
        ((-0.1, 0.0, 0.0), "move arm backward"),
        ((0.0, 0.1, 0.0), "move arm left"),
        ((0.0, -0.1, 0.0), "move arm right"),
        ((0.0, 0.0, 0.1), "move arm up"),
        ((0.0, 0.0, -0.1), "move arm down"),
        ((0.0, 0.08, -0.08), "move arm left and down"),
        ((0.1, -0.1, 0.1), "move arm forward and right and up"),
        ((0.1, 0.02, 0.0), "move arm forward"),  # a minor axis below AXIS_RATIO is not named
    ],
)
def test_translation_directions_in_the_base_frame(velocity: tuple[float, float, float], phrase: str) -> None:
    labels = _labels(_trajectory(velocity))
    assert _bulk(labels) == phrase
    assert all(label in VOCABULARY for label in labels)


def test_still_arm_is_stop_and_slow_drift_below_threshold_too() -> None:
    assert set(_labels(_trajectory((0.0, 0.0, 0.0)))) == {STOP}
    assert set(_labels(_trajectory((0.5 * MIN_TRANSLATION_SPEED, 0.0, 0.0)))) == {STOP}


def test_gripper_changes() -> None:
    poses = _trajectory((0.0, 0.0, 0.0))
    closing = np.linspace(0.08, 0.0, len(poses))  # 0.08 m in 2 s: 0.04 m/s
    assert _bulk(_labels(poses, closing)) == CLOSE_GRIPPER
    assert _bulk(_labels(poses, closing[::-1].copy())) == OPEN_GRIPPER


def test_translation_wins_over_a_gripper_change() -> None:
    poses = _trajectory((0.1, 0.0, 0.0))
    assert _bulk(_labels(poses, np.linspace(0.08, 0.04, len(poses)))) == "move arm forward"


def test_yaw_rotation_seen_from_above() -> None:
    assert _bulk(_labels(_trajectory((0.0, 0.0, 0.0), yaw_rate=1.0))) == ROTATE_COUNTERCLOCKWISE
    assert _bulk(_labels(_trajectory((0.0, 0.0, 0.0), yaw_rate=-1.0))) == ROTATE_CLOCKWISE


def test_labels_look_ahead_and_segments_follow_a_piecewise_path() -> None:
    """forward 1 s, pause 1 s, close gripper 1 s, up 1 s: four segments, boundaries led by at most the window."""
    window = LabelerSettings().window
    parts = [_trajectory((0.1, 0.0, 0.0), 20)]
    for velocity in ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.1)):
        step = _trajectory(velocity, 21)[1:]
        step[:, :3] += parts[-1][-1, :3] - step[0, :3] + np.asarray(velocity) * DT
        parts.append(step)
    poses = np.vstack(parts)  # (80, 7)
    openings = np.concatenate([np.full(40, 0.08), np.linspace(0.08, 0.02, 20), np.full(20, 0.02)])
    labels = _labels(poses, openings)
    assert [label for label, _, _ in runs(labels)] == ["move arm forward", STOP, CLOSE_GRIPPER, "move arm up"]
    starts = {label: start for label, start, _ in runs(labels)}
    assert 40 - window <= starts[CLOSE_GRIPPER] <= 40
    assert 60 - window <= starts["move arm up"] <= 60


def test_short_runs_are_merged_into_their_neighbours() -> None:
    flicker = ["a"] * 5 + ["b"] + ["a"] * 5 + ["c"] * 2 + ["d"] * 4
    assert merge_short_runs(flicker, 3) == ["a"] * 13 + ["d"] * 4
    assert merge_short_runs(["x", "y"] + ["z"] * 4, 3) == ["z"] * 6  # a short leading run takes the next label
    assert merge_short_runs(["x", "y", "x"], 3) == ["x", "y", "x"]  # nothing stable to merge into
    noisy = _trajectory((0.1, 0.0, 0.0), 30)
    noisy[15, 2] += 0.01  # a 1 cm spike in z for one frame
    labels = _labels(noisy)
    assert min(stop - start for _, start, stop in runs(labels)) >= MIN_SEGMENT_FRAMES


def test_bad_inputs_name_the_argument() -> None:
    poses = _trajectory((0.1, 0.0, 0.0), 5)
    with pytest.raises(ContractError, match=r"ee_poses must be \(T, 7\)"):
        label_motions(poses[:, :3], np.zeros(5), dt=DT)
    with pytest.raises(ContractError, match="gripper_openings"):
        label_motions(poses, np.zeros(4), dt=DT)
    with pytest.raises(ContractError, match="dt must be positive"):
        label_motions(poses, np.zeros(5), dt=0.0)
    with pytest.raises(ContractError, match="axis_ratio"):
        LabelerSettings(axis_ratio=0.0)
    assert label_motions(np.zeros((0, 7)), np.zeros(0), dt=DT) == []


def test_agreement_with_expert_primitives() -> None:
    primitives = ["approach"] * 4 + ["grasp"] * 2 + ["lift"] * 2 + ["idle"]
    phrases = ["move arm forward"] * 3 + [CLOSE_GRIPPER] * 3 + ["move arm up"] * 2 + [STOP]
    agreement = measure_agreement([(primitives, phrases)])
    assert agreement.frames == 9 and agreement.agreeing == 8  # the 4th approach frame already closes
    assert agreement.per_primitive["approach"] == [3, 4]
    assert measure_agreement([(primitives, phrases)], tolerance=1).rate == 1.0
    with pytest.raises(ContractError, match="2 expert primitives for 1 language motions"):
        measure_agreement([(["idle", "idle"], [STOP])])
