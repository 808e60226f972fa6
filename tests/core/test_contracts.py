"""The hand-off types between tiers: shapes, units, frames, and refusal of bad values."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from tiers.core import (
    ActionChunk,
    CameraModel,
    CommandSource,
    CommandStyle,
    ContractError,
    EEPath,
    FeatureKey,
    Guidance,
    LanguageCommand,
    LowLevelPolicy,
    Observation,
    guidance_gradient,
)


def _observation(**changes: object) -> Observation:
    fields: dict[str, object] = {
        "joint_positions": np.zeros(7),
        "joint_velocities": np.zeros(7),
        "ee_pose": np.array([0.3, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0]),
        "gripper_opening": 0.08,
        "timestamp": 1.5,
    }
    fields.update(changes)
    return Observation(**fields)  # type: ignore[arg-type]


# --- Observation and CameraModel -------------------------------------------------------------------


def test_observation_state_is_joints_then_gripper() -> None:
    observation = _observation(joint_positions=np.arange(7.0))
    assert observation.state.dtype == np.float32
    np.testing.assert_allclose(observation.state, [0, 1, 2, 3, 4, 5, 6, 0.08])


def test_with_instruction_shares_the_arrays_and_leaves_the_original() -> None:
    observation = _observation(joint_positions=np.arange(7.0))
    told = observation.with_instruction("open the drawer")
    assert told.instruction == "open the drawer" and observation.instruction == ""
    assert told.joint_positions is observation.joint_positions  # no copy, no second validation
    assert told.timestamp == observation.timestamp


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"joint_velocities": np.zeros(6)}, r"joint_velocities must have shape \(7,\)"),
        ({"ee_pose": np.zeros(7)}, "unit norm"),
        ({"joint_positions": np.full(7, np.nan)}, "non-finite"),
        ({"images": {"front": np.zeros((4, 4, 3), np.float32)}}, r"images\['front'\] must be \(H, W, 3\) uint8"),
        ({"images": {"front": np.zeros((4, 4, 3), np.uint8)}}, "no CameraModel for it"),
    ],
)
def test_observation_refuses_bad_fields(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        _observation(**changes)


def _camera() -> CameraModel:
    # a camera 1 m above and 0.5 m in front of the base, looking down and tilted
    base_from_camera = np.eye(4)
    base_from_camera[:3, :3] = Rotation.from_euler("xyz", [180, 20, 10], degrees=True).as_matrix()
    base_from_camera[:3, 3] = [0.5, 0.1, 1.0]
    return CameraModel.from_fovy(width=64, height=48, fovy_deg=60.0, base_from_camera=base_from_camera)


def test_camera_intrinsics_from_fovy() -> None:
    camera = _camera()
    # half the image height subtends half the vertical field of view
    assert camera.intrinsics[1, 1] == pytest.approx(24 / np.tan(np.deg2rad(30)))
    assert camera.intrinsics[0, 2] == 31.5 and camera.intrinsics[1, 2] == 23.5  # pixel centres at integers


def test_a_moved_camera_keeps_its_intrinsics_and_refuses_a_bad_pose() -> None:
    camera = _camera()
    pose = camera.base_from_camera.copy()
    pose[:3, 3] += [0.1, 0.0, -0.2]
    moved = camera.moved_to(pose)
    assert moved.intrinsics is camera.intrinsics and (moved.width, moved.height) == (64, 48)
    np.testing.assert_array_equal(moved.base_from_camera, pose)
    assert camera.base_from_camera[0, 3] == pytest.approx(0.5)  # the original is unchanged
    pose[0, 0] = np.nan
    with pytest.raises(ContractError, match="finite"):
        camera.moved_to(pose)


def test_unproject_then_project_returns_the_pixels() -> None:
    camera = _camera()
    depth = np.random.default_rng(0).uniform(0.5, 1.5, size=(48, 64)).astype(np.float32)
    points = camera.unproject(depth)  # (H, W, 3) in the base frame
    pixels = camera.project(points.reshape(-1, 3))
    v, u = np.indices(depth.shape)
    np.testing.assert_allclose(pixels, np.stack([u.ravel(), v.ravel()], axis=1), atol=1e-6)
    # a point on the optical axis is `depth` metres from the camera centre
    axis = camera.unproject(np.ones((48, 64), np.float32))[23:25, 31:33].mean(axis=(0, 1))
    assert np.linalg.norm(axis - camera.base_from_camera[:3, 3]) == pytest.approx(1.0, rel=1e-3)


def test_points_behind_the_camera_do_not_project() -> None:
    camera = _camera()
    behind = camera.base_from_camera[:3, 3] - camera.base_from_camera[:3, 2]  # 1 m behind, along -optical axis
    assert np.isnan(camera.project(behind[None])).all()


def test_camera_pose_must_be_a_rotation() -> None:
    with pytest.raises(ContractError, match="not orthonormal"):
        CameraModel(intrinsics=np.eye(3), base_from_camera=np.diag([2.0, 1, 1, 1]), width=4, height=4)


# --- ActionChunk -------------------------------------------------------------------------------------


def test_action_chunk_timeline() -> None:
    chunk = ActionChunk(np.zeros((2, 4, 8)), start_time=10.0, dt=0.05)
    assert (chunk.batch_size, chunk.horizon, chunk.action_dim) == (2, 4, 8)
    np.testing.assert_allclose(chunk.times(), [10.0, 10.05, 10.1, 10.15])
    assert chunk.step_at(10.0) == 0 and chunk.step_at(10.149) == 2 and chunk.step_at(10.2) is None
    rest = chunk.from_step(1)
    assert rest.horizon == 3 and rest.start_time == pytest.approx(10.05)
    assert chunk.end_time == pytest.approx(10.2)


def test_action_chunk_refuses_nan_and_names_where() -> None:
    actions = np.zeros((1, 5, 8), dtype=np.float32)
    actions[0, 3, 6] = np.nan
    with pytest.raises(ContractError, match="first at batch 0, step 3, dim 6"):
        ActionChunk(actions, start_time=0.0, dt=0.05)
    with pytest.raises(ContractError, match="non-finite"):
        ActionChunk.from_tensor(torch.full((1, 2, 8), float("inf")), start_time=0.0, dt=0.05)


def test_action_chunk_cannot_be_written_after_the_check() -> None:
    source = np.zeros((1, 2, 3), dtype=np.float32)
    chunk = ActionChunk(source, start_time=0.0, dt=0.1)
    source[0, 0, 0] = np.nan  # the caller's array is not the chunk's
    assert np.isfinite(chunk.actions).all()
    with pytest.raises(ValueError, match="read-only"):
        chunk.actions[0, 0, 0] = np.nan


@pytest.mark.parametrize("shape", [(8,), (4, 8), (1, 0, 8)])
def test_action_chunk_needs_three_non_empty_axes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ContractError):
        ActionChunk(np.zeros(shape), start_time=0.0, dt=0.05)


def test_action_chunk_from_policy_tensor() -> None:
    chunk = ActionChunk.from_tensor(torch.ones(3, 8, dtype=torch.float64), start_time=1.0, dt=0.05)
    assert chunk.actions.shape == (1, 3, 8) and chunk.actions.dtype == np.float32


# --- LanguageCommand ---------------------------------------------------------------------------------


def test_correction_chain_and_log_round_trip() -> None:
    subtask = LanguageCommand("pick up  the red cup", CommandStyle.SUBTASK, CommandSource.PLANNER, timestamp=1.0)
    correction = LanguageCommand("no, the blue cup first", "correction", "human_live", timestamp=2.5, replaces=subtask)
    assert subtask.text == "pick up the red cup"  # whitespace normalised
    assert correction.style is CommandStyle.CORRECTION and correction.source is CommandSource.HUMAN_LIVE
    assert [c.text for c in correction.history()] == ["no, the blue cup first", "pick up the red cup"]
    lines = [json.dumps(c.to_dict()) for c in (subtask, correction)]
    known: dict[str, LanguageCommand] = {}
    for line in lines:
        command = LanguageCommand.from_dict(json.loads(line), known)
        known[command.id] = command
    assert known[correction.id] == correction


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": "   "}, "text is empty"),
        ({"style": "shout"}, r"style must be one of \['subtask', 'motion', 'correction', 'stop'\], got 'shout'"),
        ({"source": "ghost"}, "source must be one of"),
    ],
)
def test_language_command_refuses_bad_fields(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"text": "stop", "style": "stop", "source": "human_live", "timestamp": 0.0}
    fields.update(kwargs)
    with pytest.raises(ContractError, match=message):
        LanguageCommand(**fields)  # type: ignore[arg-type]


def test_unknown_replaced_id_is_an_error() -> None:
    data = {"id": "b", "text": "left", "style": "motion", "source": "human_live", "timestamp": 0, "replaces": "a"}
    with pytest.raises(ContractError, match="replaces unknown command id 'a'"):
        LanguageCommand.from_dict(data, {})


# --- EEPath ------------------------------------------------------------------------------------------


def _path() -> EEPath:
    down = [0.0, 1.0, 0.0, 0.0]  # wxyz: 180 deg about x, gripper pointing down
    turned = Rotation.from_euler("xz", [180, 90], degrees=True).as_quat()  # xyzw
    turned_wxyz = [turned[3], *turned[:3]]
    return EEPath(
        waypoints=[[0.3, 0.0, 0.5, *down], [0.5, 0.2, 0.3, *turned_wxyz], [0.5, 0.2, 0.1, *turned_wxyz]],
        times=[0.0, 2.0, 3.0],
        gripper=[0.08, 0.08, 0.0],
    )


def test_path_sampling_interpolates_positions_and_rotations() -> None:
    path = _path()
    poses, gripper = path.sample([0.0, 1.0, 2.5, 99.0])
    np.testing.assert_allclose(poses[1, :3], [0.4, 0.1, 0.4])
    np.testing.assert_allclose(poses[3, :3], [0.5, 0.2, 0.1])  # clamped to the end
    halfway = Rotation.from_quat(np.roll(poses[1, 3:], -1))
    start = Rotation.from_quat(np.roll(path.quaternions[0], -1))
    assert np.rad2deg((start.inv() * halfway).magnitude()) == pytest.approx(45.0)  # half of the 90 deg turn
    np.testing.assert_allclose(gripper, [0.08, 0.08, 0.08, 0.0])  # held until the last waypoint
    assert path.duration == 3.0
    np.testing.assert_allclose(path.segment_speeds(), [np.sqrt(0.12) / 2, 0.2])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"times": [0.0, 2.0, 2.0]}, "strictly increase"),
        ({"waypoints": np.zeros((3, 6))}, r"must be \(N, 7\)"),
        ({"gripper": [0.0, 0.0]}, r"must be \(3,\)"),
        ({"waypoints": np.zeros((3, 7))}, "unit norm"),
    ],
)
def test_path_refuses_bad_input(changes: dict[str, object], message: str) -> None:
    path = _path()
    fields: dict[str, object] = {"waypoints": path.waypoints, "times": path.times, "gripper": path.gripper}
    fields.update(changes)
    with pytest.raises(ContractError, match=message):
        EEPath(**fields)  # type: ignore[arg-type]


# --- Guidance ----------------------------------------------------------------------------------------


def test_guidance_gradient_is_the_weighted_reward_gradient() -> None:
    target = torch.tensor([0.5, -0.2])

    def reach(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
        return -((actions[:, -1, :2] - target) ** 2).sum(dim=-1)  # (B,)

    def smooth(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
        return -(actions.diff(dim=1) ** 2).sum(dim=(1, 2))

    actions = torch.randn(4, 6, 3)
    terms = [Guidance("reach", reach, weight=2.0), Guidance("smooth", smooth, weight=0.5)]
    reward, gradient = guidance_gradient(terms, actions)
    assert reward.shape == (4,) and gradient.shape == actions.shape
    assert not actions.requires_grad  # the caller's tensor is untouched
    expected = torch.zeros_like(actions)
    expected[:, -1, :2] = -2.0 * 2 * (actions[:, -1, :2] - target)
    diff = actions.diff(dim=1)
    expected[:, 1:] += -0.5 * 2 * diff
    expected[:, :-1] -= -0.5 * 2 * diff
    torch.testing.assert_close(gradient, expected)
    torch.testing.assert_close(reward, 2.0 * reach(actions, None) + 0.5 * smooth(actions, None))


def test_no_guidance_is_zero_and_bad_terms_are_named() -> None:
    actions = torch.randn(2, 3, 4)
    reward, gradient = guidance_gradient([], actions)
    assert not reward.any() and not gradient.any()
    wrong_shape = Guidance("wrong", lambda a, o: a.sum(dim=-1))  # (B, Ta) instead of (B,)
    with pytest.raises(ContractError, match=r"guidance 'wrong' returned shape \(2, 3\), expected \(2,\)"):
        guidance_gradient([wrong_shape], actions)
    exploding = Guidance("log", lambda a, o: torch.log(a[:, 0, 0] * 0))
    with pytest.raises(ContractError, match=r"\['log'\] produced a non-finite"):
        guidance_gradient([exploding], actions)


# --- Feature keys and the low-tier protocol match lerobot --------------------------------------------


def test_feature_keys_are_lerobots() -> None:
    from lerobot.utils import constants

    assert FeatureKey.STATE == constants.OBS_STATE
    assert FeatureKey.ENV_STATE == constants.OBS_ENV_STATE
    assert FeatureKey.IMAGES == constants.OBS_IMAGES
    assert FeatureKey.ACTION == constants.ACTION
    assert FeatureKey.IMAGES.camera("front") == "observation.images.front"
    with pytest.raises(ValueError, match="not a per-camera prefix"):
        FeatureKey.STATE.camera("front")


def test_low_tier_protocol_is_lerobots_policy_interface() -> None:
    """lerobot's PreTrainedPolicy has every method of LowLevelPolicy but drop_queued_actions,
    which the lerobot adapter adds; the shared ones take a batch dict first."""
    from lerobot.policies.pretrained import PreTrainedPolicy

    ours = {name for name in dir(LowLevelPolicy) if not name.startswith("_")}
    assert ours == {"reset", "select_action", "predict_action_chunk", "forward", "drop_queued_actions"}
    for name in ours - {"drop_queued_actions"}:
        assert hasattr(PreTrainedPolicy, name), name
        params = list(inspect.signature(getattr(PreTrainedPolicy, name)).parameters)
        if name != "reset":
            assert params[:2] == ["self", "batch"], (name, params)
