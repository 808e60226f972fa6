"""Property tests of the path geometry: densifying and timing any segment, however short, long or repetitive.

A regression of `close/cabinet/7` seed 4242: a three-vertex segment whose arc lengths summed to a last slerp key of
0.9999999999999999, so Slerp refused s = 1 and the whole evaluation run died.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.transform import Rotation

from tiers.policies.mid.paths import PathPlanner, _densify, _Segment

# vertices within the arm's workspace (m); steps from sub-micrometre to decimetres
coordinates = st.floats(min_value=-0.8, max_value=0.8, allow_nan=False, allow_infinity=False)
steps = st.one_of(st.floats(min_value=0.0, max_value=1e-6), st.floats(min_value=1e-6, max_value=0.3), st.just(0.0))


@st.composite
def segments(draw: st.DrawFn) -> _Segment:
    """A polyline of 2..40 vertices built from random, often tiny or zero, steps, with per-vertex or end
    orientations."""
    count = draw(st.integers(min_value=2, max_value=40))
    start = draw(arrays(np.float64, 3, elements=coordinates))
    lengths = draw(arrays(np.float64, count - 1, elements=steps))
    directions = draw(arrays(np.float64, (count - 1, 3), elements=st.floats(-1.0, 1.0)))
    norms = np.linalg.norm(directions, axis=1, keepdims=True)
    directions = np.where(norms > 1e-6, directions / np.maximum(norms, 1e-6), np.array([1.0, 0.0, 0.0]))
    positions = np.vstack([start, start + np.cumsum(directions * lengths[:, None], axis=0)])
    per_vertex = draw(st.booleans())
    seed = draw(st.integers(min_value=0, max_value=2**31 - 1))
    rotations = Rotation.random(count if per_vertex else 2, random_state=seed).as_quat()  # xyzw
    quaternions = np.roll(rotations, 1, axis=1)  # wxyz
    speed = draw(st.floats(min_value=0.01, max_value=0.5))
    return _Segment("move", positions, quaternions, gripper=0.04, speed=speed)


def _unit(quaternions: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(quaternions, axis=1), 1.0, atol=1e-9))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(segment=segments(), step=st.floats(min_value=0.002, max_value=0.1))
def test_densify_covers_the_segment_end_to_end(segment: _Segment, step: float) -> None:
    points, quaternions = _densify(segment, step)
    assert points.shape[1] == 3 and quaternions.shape == (len(points), 4)
    assert np.all(np.isfinite(points)) and _unit(quaternions)
    np.testing.assert_allclose(points[0], segment.positions[0], atol=1e-9)
    np.testing.assert_allclose(points[-1], segment.positions[-1], atol=1e-9)
    # consecutive samples are never farther apart than the step (the segment's length is split evenly)
    assert np.all(np.linalg.norm(np.diff(points, axis=0), axis=1) <= step + 1e-9)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(segment=segments())
def test_timing_any_segment_gives_a_valid_path(segment: _Segment) -> None:
    planner = PathPlanner(max_ee_speed=0.5)
    path, starts = planner._timed([segment])
    assert starts == [0.0]
    assert np.all(np.diff(path.times) > 0), "times must increase strictly"
    np.testing.assert_allclose(path.positions[0], segment.positions[0], atol=1e-9)
    np.testing.assert_allclose(path.positions[-1], segment.positions[-1], atol=1e-9)
    assert _unit(path.waypoints[:, 3:])
    assert np.all(path.segment_speeds() <= segment.speed + 1e-6)


def test_the_slerp_key_that_rounded_below_one() -> None:
    """Nine vertices whose lengths, summed pairwise by numpy, exceed their running sum in the last bit."""
    positions = np.array(
        [[0.12, 0.17, 0.19], [0.08, 0.12, 0.28], [0.19, 0.18, 0.02], [0.02, 0.06, 0.04], [0.3, 0.0, 0.11],
         [0.02, 0.19, 0.01], [0.02, 0.02, 0.08], [0.17, 0.24, 0.08], [0.08, 0.25, 0.22]]
    )  # fmt: skip
    lengths = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    assert np.cumsum(lengths)[-1] / lengths.sum() < 1.0  # the case itself
    quaternions = np.roll(Rotation.random(len(positions), random_state=1).as_quat(), 1, axis=1)
    points, _ = _densify(_Segment("move", positions, quaternions, 0.04, 0.1), 0.01)
    np.testing.assert_allclose(points[-1], positions[-1], atol=1e-12)
