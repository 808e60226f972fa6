"""MujocoKitchen against the contracts: determinism, observation shapes, camera conventions, control, grasping."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tiers.core.errors import ContractError
from tiers.sim.backend import SimBackend
from tiers.sim.kitchen.layout import OBJECT_NAMES, KitchenLayout, ObjectPlacement, sample_layout
from tiers.sim.mujoco import ArmKinematics, MujocoKitchen

DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # wxyz: hand z axis along world -z, fingers closing along world y


@pytest.fixture(scope="module")
def kitchen() -> Iterator[MujocoKitchen]:
    backend = MujocoKitchen("panda")
    yield backend
    backend.close()


def _empty_layout() -> KitchenLayout:
    return sample_layout(0, objects=[], n_distractors=0)


def _move(kitchen: MujocoKitchen, q_target: np.ndarray, gripper: float, steps: int, hold: int = 5) -> None:
    """Interpolate the joint targets linearly to ``q_target`` over ``steps`` control periods, then hold."""
    q_start = kitchen.observe(render=False).joint_positions
    for alpha in np.linspace(0.0, 1.0, steps + 1)[1:]:
        kitchen.step(np.append(q_start + alpha * (q_target - q_start), gripper), render=False)
    for _ in range(hold):
        kitchen.step(np.append(q_target, gripper), render=False)


def test_implements_the_backend_protocol(kitchen: MujocoKitchen) -> None:
    assert isinstance(kitchen, SimBackend)


def test_same_seed_same_initial_state(kitchen: MujocoKitchen) -> None:
    first = kitchen.reset(sample_layout(11))
    qpos_first = kitchen.data.qpos.copy()
    second = kitchen.reset(sample_layout(11))
    np.testing.assert_array_equal(kitchen.data.qpos, qpos_first)
    for name in first.images:
        np.testing.assert_array_equal(first.images[name], second.images[name])
    kitchen.reset(sample_layout(12))
    assert not np.array_equal(kitchen.data.qpos, qpos_first)


def test_observation_matches_the_embodiment(kitchen: MujocoKitchen) -> None:
    spec = kitchen.embodiment
    obs = kitchen.reset(sample_layout(3))
    spec.check_observation(obs)
    assert obs.joint_positions.shape == obs.joint_velocities.shape == (spec.dof,)
    np.testing.assert_allclose(obs.joint_positions, spec.home, atol=1e-3)
    assert obs.state.shape == (spec.state_dim,) and obs.state.dtype == np.float32
    assert obs.gripper_opening == pytest.approx(spec.gripper.max_opening, abs=1e-3)
    assert obs.timestamp == 0.0
    for camera in spec.cameras:
        assert obs.images[camera.name].shape == (camera.height, camera.width, 3)
        assert obs.images[camera.name].dtype == np.uint8
        assert obs.images[camera.name].std() > 5, f"camera {camera.name!r} renders a blank image"
        assert (camera.name in obs.depths) == camera.depth
        model = obs.cameras[camera.name]
        assert (model.width, model.height) == (camera.width, camera.height)
    assert obs.depths["front"].shape == (128, 128) and obs.depths["front"].dtype == np.float32
    # Franka's ready pose: TCP 0.307 m ahead of the base, 0.487 m up, pointing down
    np.testing.assert_allclose(obs.ee_pose[:3], [0.307, 0.0, 0.487], atol=2e-3)
    assert abs(np.dot(obs.ee_pose[3:], DOWN)) == pytest.approx(1.0, abs=1e-3)
    blind = kitchen.observe(render=False)
    assert not blind.images and not blind.depths and set(blind.cameras) == set(obs.cameras)


def test_front_depth_unprojects_onto_the_counter(kitchen: MujocoKitchen) -> None:
    """Checks intrinsics, the OpenCV optical frame and the metric depth against the known counter plane."""
    obs = kitchen.reset(_empty_layout())
    camera, depth = obs.cameras["front"], obs.depths["front"]
    points = camera.unproject(depth)  # (H, W, 3) base frame
    # known points of the bare counter top -> pixels -> back to 3D
    grid = np.array([[x, y, 0.0] for x in (0.3, 0.45, 0.6) for y in (-0.2, 0.0, 0.2)])
    pixels = camera.project(grid)
    assert np.all(np.isfinite(pixels)) and np.all((pixels >= 0) & (pixels < 128))
    u, v = np.round(pixels).astype(int).T
    np.testing.assert_allclose(points[v, u], grid, atol=0.015)
    # the bare free area of the counter (~2000 pixels; the arm above it excluded) is the plane z = 0
    area = (points[..., 0] > 0.3) & (points[..., 0] < 0.6) & (np.abs(points[..., 1]) < 0.25) & (points[..., 2] < 0.1)
    assert area.sum() > 1000
    assert np.max(np.abs(points[area][:, 2])) < 0.008


def test_segmentation_finds_each_present_object(kitchen: MujocoKitchen) -> None:
    layout = sample_layout(5, n_distractors=4)
    obs = kitchen.reset(layout)
    state = kitchen.scene_state()
    segmentation, camera = obs.segmentation["front"], obs.cameras["front"]
    points = camera.unproject(obs.depths["front"])
    assert set(obs.object_names.values()) == set(layout.present)
    for object_id, name in obs.object_names.items():
        mask = segmentation == object_id
        assert mask.sum() >= 5, f"{name} is not visible in the front camera"
        bounds = state.objects[name].bounds
        inside = [bounds.contains(point, margin=0.01) for point in points[mask]]
        assert np.mean(inside) > 0.9, f"pixels labelled {name} do not unproject into its bounds"
    absent = set(range(len(OBJECT_NAMES))) - set(obs.object_names)
    assert not np.isin(segmentation, list(absent)).any()


def test_layout_is_applied_and_objects_rest(kitchen: MujocoKitchen) -> None:
    for seed in (1, 2):
        layout = sample_layout(seed, objects=list(OBJECT_NAMES), articulations={"drawer": 0.15, "cabinet": 1.0})
        kitchen.reset(layout, render=False)
        for _ in range(10):
            kitchen.step(np.append(kitchen.embodiment.home, 0.08), render=False)
        state = kitchen.scene_state()
        assert set(state.objects) == set(OBJECT_NAMES)
        for name, placement in layout.objects.items():
            moved = np.linalg.norm(state.objects[name].position - placement.position)
            assert moved < 0.01, f"seed {seed}: {name} moved {moved:.3f} m from its layout pose"
            assert state.objects[name].color == placement.color
            assert state.objects[name].bounds.low[2] > -0.003, f"{name} sinks into the counter"
        contacts = kitchen.data.contact.dist[: kitchen.data.ncon]
        assert contacts.min() > -0.003
        assert state.articulations["drawer"].joint_position == pytest.approx(0.15, abs=0.005)
        assert state.articulations["cabinet"].joint_position == pytest.approx(1.0, abs=0.02)
        assert sum(w.number for w in kitchen.data.warning) == 0


def test_regions_follow_the_fixtures(kitchen: MujocoKitchen) -> None:
    kitchen.reset(_empty_layout(), render=False)
    closed = kitchen.scene_state()
    assert set(closed.regions) == {"drawer", "cabinet", "sink", "shelf", "counter"}
    assert closed.objects == {} and closed.grasped is None
    kitchen.reset(sample_layout(0, objects=[], n_distractors=0, articulations={"drawer": 0.2}), render=False)
    opened = kitchen.scene_state()
    shift = opened.regions["drawer"].center - closed.regions["drawer"].center
    np.testing.assert_allclose(shift, [-0.2, 0.0, 0.0], atol=0.005)
    assert opened.articulations["drawer"].opening == pytest.approx(0.2 / 0.22, abs=0.03)


def test_joint_action_moves_the_arm_within_limits(kitchen: MujocoKitchen) -> None:
    spec = kitchen.embodiment
    kitchen.reset(_empty_layout(), render=False)
    target = np.asarray(spec.home) + np.array([0.3, 0.2, -0.2, 0.3, 0.2, -0.3, 0.4])
    error_before = np.abs(kitchen.observe(render=False).joint_positions - target).max()
    for _ in range(30):  # 1.5 s
        obs = kitchen.step(np.append(target, 0.08), render=False)
    assert obs.timestamp == pytest.approx(1.5)
    assert error_before > 0.2
    np.testing.assert_allclose(obs.joint_positions, target, atol=0.01)
    # beyond the limits: clipped, counted, and the arm stays inside
    lower, upper = spec.position_limits
    clipped_before = kitchen.clipped_components
    beyond = target.copy()
    beyond[0] = upper[0] + 1.0
    for _ in range(30):
        obs = kitchen.step(np.append(beyond, 0.2), render=False)
    assert kitchen.clipped_components == clipped_before + 60
    assert np.all(obs.joint_positions <= upper + 1e-3) and np.all(obs.joint_positions >= lower - 1e-3)
    assert obs.joint_positions[0] == pytest.approx(upper[0], abs=0.01)
    with pytest.raises(ContractError, match="non-finite"):
        kitchen.step(np.append(target, np.nan))
    with pytest.raises(ContractError, match="shape"):
        kitchen.step(target)


def test_gripper_grasps_and_lifts_an_object(kitchen: MujocoKitchen) -> None:
    spec = kitchen.embodiment
    layout = KitchenLayout(objects={"box": ObjectPlacement("box", np.array([0.45, 0.0, 0.0]), yaw=0.0, color="red")})
    kitchen.reset(layout, render=False)
    ik = ArmKinematics(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame)
    home = np.asarray(spec.home)
    above = ik.solve([0.45, 0.0, 0.22], DOWN, q_init=home, q_rest=home)
    grasp = ik.solve([0.45, 0.0, 0.06], DOWN, q_init=above.qpos, q_rest=home)
    assert above.success and grasp.success, (above, grasp)
    position, _ = ik.forward(grasp.qpos)
    np.testing.assert_allclose(position, [0.45, 0.0, 0.06], atol=2e-3)

    _move(kitchen, above.qpos, 0.08, steps=15)
    _move(kitchen, grasp.qpos, 0.08, steps=15)
    assert kitchen.scene_state().grasped is None
    np.testing.assert_allclose(kitchen.observe(render=False).ee_pose[:3], [0.45, 0.0, 0.06], atol=0.01)
    _move(kitchen, grasp.qpos, 0.0, steps=15)
    state = kitchen.scene_state()
    assert state.grasped == "box"
    assert state.gripper_opening == pytest.approx(0.05, abs=0.004)  # the box is 5 cm across
    _move(kitchen, above.qpos, 0.0, steps=15)
    state = kitchen.scene_state()
    assert state.grasped == "box"
    assert state.objects["box"].position[2] > 0.12, "the box was not lifted"


def _yawed_down(yaw: float) -> np.ndarray:
    """wxyz of the top-down hand turned by ``yaw`` rad about world z."""
    return np.array([0.0, np.cos(yaw / 2), np.sin(yaw / 2), 0.0])


@pytest.mark.parametrize("fixture", ["drawer", "cabinet"])
def test_fixtures_open_by_their_handles(kitchen: MujocoKitchen, fixture: str) -> None:
    """Grasp the handle from above and pull it along the fixture's path: the joint follows."""
    spec = kitchen.embodiment
    kitchen.reset(_empty_layout(), render=False)
    ik = ArmKinematics(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame)
    home = np.asarray(spec.home)
    handle = kitchen.data.site(f"{fixture}_handle").xpos + np.array([0.0, 0.0, 0.035])  # upper part of the bar
    above = ik.solve(handle + np.array([0.0, 0.0, 0.12]), DOWN, q_init=home, q_rest=home)
    grasp = ik.solve(handle, DOWN, q_init=above.qpos, q_rest=home)
    assert above.success and grasp.success
    _move(kitchen, above.qpos, 0.08, steps=15)
    _move(kitchen, grasp.qpos, 0.08, steps=10)
    _move(kitchen, grasp.qpos, 0.0, steps=10)
    hinge = np.array([0.4425, -0.58])  # cabinet door axis (scene.xml)
    q = grasp.qpos
    for i in range(1, 13):
        if fixture == "drawer":
            target, quaternion = handle - [0.016 * i, 0.0, 0.0], DOWN
        else:
            angle = 0.07 * i
            rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            target = np.append(hinge + rotation @ (handle[:2] - hinge), handle[2])
            quaternion = _yawed_down(angle)
        q = ik.solve(target, quaternion, q_init=q, q_rest=home).qpos
        _move(kitchen, q, 0.0, steps=3, hold=1)
    opened = kitchen.scene_state().articulations[fixture]
    expected = 0.19 if fixture == "drawer" else 0.84  # m pulled / rad swung
    assert opened.joint_position == pytest.approx(expected, abs=0.05 if fixture == "drawer" else 0.2)
    assert sum(w.number for w in kitchen.data.warning) == 0
