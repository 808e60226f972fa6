"""Backend conformance: what every simulator backend must do, run over every registered backend.

Same layout -> same initial state; observation keys, shapes, dtypes and frames from the EmbodimentSpec;
camera intrinsics; the action rule (clip out-of-range, reject non-finite); privileged state that the
success predicates read. A new backend passes this file before it is listed in BACKENDS; Isaac Sim's
parameters are skipped, with the reason, on machines without isaacsim and an RTX GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from tiers.core import CameraModel, ContractError
from tiers.sim.backend import SimBackend
from tiers.sim.backends import BACKENDS, make_backend
from tiers.sim.isaac.preflight import check_isaac_requirements
from tiers.sim.kitchen.layout import ARTICULATIONS, sample_layout
from tiers.sim.kitchen.predicates import is_closed, is_open

LAYOUT = sample_layout(3, objects=["apple", "bowl", "cup"], n_distractors=1)


def _backend_params() -> list[object]:
    """Every registered backend; Isaac Sim's carries the ``isaacsim`` marker and, where it cannot start,
    a skip whose reason is the preflight's list of what is missing (run on an RTX machine: -m isaacsim)."""
    params: list[object] = []
    for name in sorted(BACKENDS):
        if name != "isaacsim":
            params.append(name)
            continue
        missing = check_isaac_requirements()
        reason = "the Isaac Sim backend cannot start here: " + "; ".join(missing)
        params.append(
            pytest.param(name, marks=[pytest.mark.isaacsim, pytest.mark.skipif(bool(missing), reason=reason)])
        )
    return params


@pytest.fixture(scope="module", params=_backend_params())
def backend(request: pytest.FixtureRequest) -> SimBackend:
    simulator = make_backend(request.param)
    yield simulator
    simulator.close()


def test_implements_the_protocol(backend: SimBackend) -> None:
    assert isinstance(backend, SimBackend)


def test_same_layout_same_initial_state(backend: SimBackend) -> None:
    first = backend.reset(LAYOUT, render=True)
    first_state = backend.scene_state()
    second = backend.reset(LAYOUT, render=True)
    second_state = backend.scene_state()
    np.testing.assert_array_equal(first.joint_positions, second.joint_positions)
    for camera in first.images:
        np.testing.assert_array_equal(first.images[camera], second.images[camera])
    assert set(first_state.objects) == set(LAYOUT.objects)
    for name, state in first_state.objects.items():
        np.testing.assert_array_equal(state.position, second_state.objects[name].position)


def test_observation_fits_the_embodiment(backend: SimBackend) -> None:
    spec = backend.embodiment
    observation = backend.reset(LAYOUT, render=True)
    spec.check_observation(observation)
    assert set(observation.images) == {camera.name for camera in spec.cameras}
    assert set(observation.depths) == {camera.name for camera in spec.cameras if camera.depth}
    lower, upper = spec.position_limits
    assert np.all(observation.joint_positions >= lower - 1e-6) and np.all(observation.joint_positions <= upper + 1e-6)
    assert 0.0 <= observation.gripper_opening <= spec.gripper.max_opening + 1e-4
    assert observation.timestamp == 0.0
    after = backend.step(np.append(spec.home, spec.gripper.max_opening), render=False)
    assert after.timestamp == pytest.approx(spec.control_period)
    assert not after.images  # render=False: proprioception only


def test_cameras_follow_the_spec_and_see_the_counter(backend: SimBackend) -> None:
    spec = backend.embodiment
    observation = backend.reset(LAYOUT, render=True)
    for camera in spec.cameras:
        model = observation.cameras[camera.name]
        expected = CameraModel.from_fovy(
            width=camera.width, height=camera.height, fovy_deg=camera.fovy_deg, base_from_camera=model.base_from_camera
        )
        np.testing.assert_allclose(model.intrinsics, expected.intrinsics)
    for fixed in ("front", "top"):  # the fixed cameras look at the middle of the counter
        u, v = observation.cameras[fixed].project(np.array([[0.45, 0.0, 0.0]]))[0]
        spec_camera = spec.camera(fixed)
        assert 0 <= u < spec_camera.width and 0 <= v < spec_camera.height, (fixed, u, v)


def test_a_single_camera_frame_for_videos_matches_the_observation(backend: SimBackend) -> None:
    observation = backend.reset(LAYOUT, render=True)
    for camera in ("front", "wrist"):
        np.testing.assert_array_equal(backend.render_rgb(camera), observation.images[camera])
    with pytest.raises(KeyError, match=r"no camera 'side'.*front"):
        backend.render_rgb("side")


def test_action_rule(backend: SimBackend) -> None:
    spec = backend.embodiment
    backend.reset(LAYOUT, render=False)
    upper = spec.position_limits[1]
    beyond = np.append(upper + 1.0, spec.gripper.max_opening + 1.0)  # every joint past its upper limit
    for _ in range(20):
        observation = backend.step(beyond, render=False)
    assert np.all(observation.joint_positions <= upper + 0.02)
    with pytest.raises(ContractError, match="non-finite"):
        backend.step(np.full(spec.dof + 1, np.nan), render=False)
    with pytest.raises(ContractError, match="shape"):
        backend.step(np.zeros(spec.dof), render=False)


def test_privileged_state_feeds_the_predicates(backend: SimBackend) -> None:
    names = list(ARTICULATIONS)
    opened = sample_layout(3, objects=["apple"], articulations={name: ARTICULATIONS[name][2] for name in names})
    backend.reset(opened, render=False)
    state = backend.scene_state()
    assert set(state.regions) >= {"drawer", "cabinet", "sink", "shelf", "counter"}
    for name in names:
        assert is_open(state, name).success, is_open(state, name).reason
    backend.reset(sample_layout(3, objects=["apple"]), render=False)
    state = backend.scene_state()
    for name in names:
        assert is_closed(state, name).success, is_closed(state, name).reason
    apple = state.objects["apple"]
    assert state.regions["counter"].contains(apple.bounds.center, margin=0.01)
