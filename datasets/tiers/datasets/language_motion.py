"""RT-H language motions from proprioception: what the end effector does next, in a fixed vocabulary.

RT-H (Belkhale et al., 2024) inserts a "language motion" between the task and the action: a short phrase such as
"move arm forward" or "close gripper" that describes the next fraction of a second of motion. The labeler
computes it from the recorded tool pose and gripper opening alone (no privileged state), so any dataset with
``observation.ee_pose`` and ``observation.state`` can be labelled, robot or sim.

Frames and units: tool centre point in the robot base frame (x forward, away from the robot; y left; z up),
metres, quaternions wxyz; gripper opening in metres (0 = closed); ``dt`` is the control period in seconds.

Vocabulary (:data:`VOCABULARY`, 31 phrases):
    "move arm <directions>"   directions: any non-empty combination, in this order, of forward|backward,
                              left|right, up|down, joined by " and " ("move arm left and down");
    "rotate gripper clockwise" / "rotate gripper counterclockwise"   yaw about the base z axis, seen from above;
    "close gripper" / "open gripper";
    "stop".

Rule at frame t (all rates from the look-ahead displacement between frames t and t + SMOOTHING_WINDOW, which
both smooths servo jitter and makes the label describe the motion about to happen):
    1. tool speed >= MIN_TRANSLATION_SPEED: "move arm ...", naming each axis whose speed is at least
       AXIS_RATIO times the fastest axis' speed;
    2. else gripper opening rate >= MIN_GRIPPER_SPEED: "open gripper" / "close gripper";
    3. else yaw rate >= MIN_YAW_SPEED: "rotate gripper (counter)clockwise";
    4. else "stop".
Runs shorter than MIN_SEGMENT_FRAMES are then merged into the run before them (the first run into the next),
so labels do not flicker at speed thresholds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from tiers.commands.motion_words import (
    AXIS_WORDS,
    CLOSE_GRIPPER,
    MOVE_PREFIX,
    OPEN_GRIPPER,
    ROTATE_CLOCKWISE,
    ROTATE_COUNTERCLOCKWISE,
    STOP,
    is_move,
    move_directions,
)
from tiers.commands.phases import Motion
from tiers.core.errors import ContractError
from tiers.core.features import FeatureKey
from tiers.datasets.features import EXPERT_MOTION

# Tuned on 15 scripted-expert kitchen episodes of five families (3365 frames): a 1 cm/s translation threshold
# and translation-before-gripper priority agree best with the expert's phases (82.6% of frames, against 69% at
# 3 cm/s, where slow contact pushes and the slow ends of min-jerk moves read as "stop").
SMOOTHING_WINDOW = 4  # frames (0.2 s at 20 Hz) of look-ahead over which rates are measured
MIN_TRANSLATION_SPEED = 0.01  # m/s, tool speed below which the arm is not "moving" (2 mm over the window)
AXIS_RATIO = 0.5  # an axis is named when its speed is >= this fraction of the fastest axis' speed
MIN_GRIPPER_SPEED = 0.005  # m/s, opening rate below which the gripper is not "opening"/"closing"
MIN_YAW_SPEED = 0.25  # rad/s, yaw rate below which the gripper is not "rotating"
MIN_SEGMENT_FRAMES = 3  # frames, shortest run of one label kept as its own segment


@dataclass(frozen=True)
class LabelerSettings:
    """Thresholds of :func:`label_motions` (defaults: the module constants, documented there)."""

    window: int = SMOOTHING_WINDOW  # frames
    min_translation_speed: float = MIN_TRANSLATION_SPEED  # m/s
    axis_ratio: float = AXIS_RATIO  # in (0, 1]
    min_gripper_speed: float = MIN_GRIPPER_SPEED  # m/s
    min_yaw_speed: float = MIN_YAW_SPEED  # rad/s
    min_segment_frames: int = MIN_SEGMENT_FRAMES  # frames

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ContractError(f"LabelerSettings.window must be >= 1 frame, got {self.window}")
        if not 0 < self.axis_ratio <= 1:
            raise ContractError(f"LabelerSettings.axis_ratio must be in (0, 1], got {self.axis_ratio}")
        for name in ("min_translation_speed", "min_gripper_speed", "min_yaw_speed"):
            if getattr(self, name) <= 0:
                raise ContractError(f"LabelerSettings.{name} must be positive, got {getattr(self, name)}")
        if self.min_segment_frames < 1:
            raise ContractError(f"LabelerSettings.min_segment_frames must be >= 1, got {self.min_segment_frames}")


def label_motions(
    ee_poses: NDArray[np.floating],
    gripper_openings: NDArray[np.floating],
    *,
    dt: float,
    settings: LabelerSettings | None = None,
) -> list[str]:
    """Language motion of every frame of one episode.

    Args:
        ee_poses: (T, 7) tool poses in the base frame: xyz (m), quaternion wxyz.
        gripper_openings: (T,) fingertip distance (m).
        dt: s between two frames (the control period).
        settings: thresholds; None: the module defaults.

    Returns:
        T phrases from :data:`VOCABULARY`. Frame t describes the motion from t to t + window (clamped to the last
        frame; the last frame of an episode is "stop").
    """
    settings = settings or LabelerSettings()
    poses = np.asarray(ee_poses, dtype=np.float64)
    openings = np.asarray(gripper_openings, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 7:
        raise ContractError(f"ee_poses must be (T, 7) xyz + quaternion wxyz, got shape {poses.shape}")
    if openings.shape != (poses.shape[0],):
        raise ContractError(f"gripper_openings must be ({poses.shape[0]},) to match ee_poses, got {openings.shape}")
    if dt <= 0:
        raise ContractError(f"dt must be positive seconds, got {dt}")
    if not (np.all(np.isfinite(poses)) and np.all(np.isfinite(openings))):
        raise ContractError("ee_poses and gripper_openings must be finite")
    count = poses.shape[0]
    if count == 0:
        return []
    ahead = np.minimum(np.arange(count) + settings.window, count - 1)  # (T,) look-ahead frame
    span = np.maximum(ahead - np.arange(count), 1) * dt  # (T,) s
    velocity = (poses[ahead, :3] - poses[:, :3]) / span[:, None]  # (T, 3) m/s, base frame
    gripper_rate = (openings[ahead] - openings) / span  # (T,) m/s
    rotations = Rotation.from_quat(np.roll(poses[:, 3:], -1, axis=1))  # scipy takes xyzw
    relative = rotations[ahead] * rotations.inv()  # rotation from t to t+window, base frame
    yaw_rate = relative.as_rotvec()[:, 2] / span  # (T,) rad/s about base +z

    raw = [
        _frame_label(velocity[t], gripper_rate[t], yaw_rate[t], settings) if ahead[t] > t else STOP
        for t in range(count)
    ]
    return merge_short_runs(raw, settings.min_segment_frames)


def _frame_label(velocity: NDArray[np.float64], gripper_rate: float, yaw_rate: float, s: LabelerSettings) -> str:
    speeds = np.abs(velocity)
    if np.linalg.norm(velocity) >= s.min_translation_speed:
        named = speeds >= s.axis_ratio * speeds.max()
        words = [AXIS_WORDS[axis][int(velocity[axis] > 0)] for axis in range(3) if named[axis]]
        return MOVE_PREFIX + " and ".join(words)
    if abs(gripper_rate) >= s.min_gripper_speed:
        return OPEN_GRIPPER if gripper_rate > 0 else CLOSE_GRIPPER
    if abs(yaw_rate) >= s.min_yaw_speed:
        # positive rotation about +z (up) is counterclockwise seen from above
        return ROTATE_COUNTERCLOCKWISE if yaw_rate > 0 else ROTATE_CLOCKWISE
    return STOP


def runs(labels: Sequence[str]) -> list[tuple[str, int, int]]:
    """Maximal runs of equal labels as (label, start, stop) with ``labels[start:stop]`` all equal."""
    result: list[tuple[str, int, int]] = []
    for index, label in enumerate(labels):
        if result and result[-1][0] == label:
            result[-1] = (label, result[-1][1], index + 1)
        else:
            result.append((label, index, index + 1))
    return result


def merge_short_runs(labels: Sequence[str], min_frames: int) -> list[str]:
    """Relabel runs shorter than ``min_frames`` with the previous run's label (the next one's for a leading run).

    An episode whose every run is short keeps its labels (there is nothing stable to merge into).
    """
    segments = runs(labels)
    if min_frames <= 1 or all(stop - start < min_frames for _, start, stop in segments):
        return list(labels)
    merged: list[str] = []
    pending = 0  # frames of a leading short run, waiting for the first long run
    for label, start, stop in segments:
        length = stop - start
        if length >= min_frames:
            merged.extend([label] * (pending + length))
            pending = 0
        elif merged:
            merged.extend([merged[-1]] * length)
        else:
            pending += length
    return merged


# --- agreement with the scripted expert's primitive phases ---------------------------------------------------


def compatible(primitive: str, phrase: str) -> bool:
    """Whether a language motion fits an expert primitive phase (a :class:`tiers.commands.phases.Motion` value).

    grasp -> "close gripper"; release -> "open gripper"; descend/lower -> a move including "down"; lift -> a move
    including "up"; idle -> "stop"; approach/transport/retreat/pull/push (free or contact moves in any direction)
    -> any move or rotation.
    """
    motion = Motion(primitive)
    if motion is Motion.GRASP:
        return phrase == CLOSE_GRIPPER
    if motion is Motion.RELEASE:
        return phrase == OPEN_GRIPPER
    if motion in (Motion.DESCEND, Motion.LOWER):
        return "down" in move_directions(phrase)
    if motion is Motion.LIFT:
        return "up" in move_directions(phrase)
    if motion is Motion.IDLE:
        return phrase == STOP
    return is_move(phrase) or phrase in (ROTATE_CLOCKWISE, ROTATE_COUNTERCLOCKWISE)


@dataclass
class Agreement:
    """Frame-level agreement of language motions with expert primitives.

    Attributes:
        frames: frames compared.
        agreeing: frames whose language motion is :func:`compatible` with the primitive.
        per_primitive: primitive -> (agreeing, frames).
        confusion: (primitive, phrase category) -> frames; categories: move, rotate, close, open, stop.
    """

    frames: int = 0
    agreeing: int = 0
    per_primitive: dict[str, list[int]] = field(default_factory=dict)
    confusion: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Fraction of agreeing frames (nan when no frame was compared)."""
        return self.agreeing / self.frames if self.frames else float("nan")

    def add(self, primitives: Iterable[str], phrases: Iterable[str], *, tolerance: int = 0) -> None:
        """Compare one episode's per-frame primitives with its per-frame language motions.

        ``tolerance`` frames: frame t also agrees when its phrase fits the primitive of a frame within
        ``t ± tolerance`` (the labeler looks ``window`` frames ahead, so its boundaries lead the expert's).
        """
        primitives, phrases = list(primitives), list(phrases)
        if len(primitives) != len(phrases):
            raise ContractError(f"{len(primitives)} expert primitives for {len(phrases)} language motions")
        for t, (primitive, phrase) in enumerate(zip(primitives, phrases, strict=True)):
            nearby = set(primitives[max(0, t - tolerance) : t + tolerance + 1])
            ok = any(compatible(other, phrase) for other in nearby)
            counts = self.per_primitive.setdefault(primitive, [0, 0])
            counts[0] += int(ok)
            counts[1] += 1
            self.frames += 1
            self.agreeing += int(ok)
            self.confusion[(primitive, phrase_category(phrase))] += 1


def phrase_category(phrase: str) -> str:
    """move | rotate | close | open | stop."""
    if is_move(phrase):
        return "move"
    return {CLOSE_GRIPPER: "close", OPEN_GRIPPER: "open", STOP: "stop"}.get(phrase, "rotate")


def measure_agreement(episodes: Iterable[tuple[Sequence[str], Sequence[str]]], *, tolerance: int = 0) -> Agreement:
    """Agreement over episodes given as (expert primitives, language motions), one entry per frame each."""
    agreement = Agreement()
    for primitives, phrases in episodes:
        agreement.add(primitives, phrases, tolerance=tolerance)
    return agreement


def dataset_agreement(root: str, *, tolerance: int = 0) -> Agreement:
    """Agreement of the ``language_motion`` and ``expert_motion`` columns of a recorded dataset.

    Reads the data parquet files directly (no video decoding).

    Raises:
        ContractError: the dataset has no ``expert_motion`` column (not recorded from the scripted expert).
    """
    columns = ["episode_index", FeatureKey.LANGUAGE_MOTION.value, EXPERT_MOTION]
    paths = sorted(Path(root).glob("data/*/*.parquet"))
    episodes: dict[int, tuple[list[str], list[str]]] = {}
    for path in paths:
        names = pq.read_schema(path).names
        if EXPERT_MOTION not in names or FeatureKey.LANGUAGE_MOTION.value not in names:
            raise ContractError(f"{path}: no {EXPERT_MOTION!r}/{FeatureKey.LANGUAGE_MOTION.value!r} columns")
        table = pq.read_table(path, columns=columns).to_pydict()
        for episode, phrase, primitive in zip(*(table[c] for c in columns), strict=True):
            primitives, phrases = episodes.setdefault(int(episode), ([], []))
            primitives.append(primitive)
            phrases.append(phrase)
    return measure_agreement(episodes.values(), tolerance=tolerance)
