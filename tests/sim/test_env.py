"""The kitchen as a Gymnasium environment: seeding, task requirements, action rules, both action spaces."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import tiers.sim
from tiers.core import ContractError, Observation
from tiers.sim.kitchen.env import KitchenEnv, layout_for_task
from tiers.sim.kitchen.layout import KitchenLayout
from tiers.sim.kitchen.tasks import UnknownTaskError, all_tasks, get_task

# a task whose instruction names a colour, and one that needs the drawer open at the start
COLOURED = next(task for task in all_tasks() if task.requirements.colors)
CLOSE_DRAWER = next(task for task in all_tasks() if task.requirements.articulations.get("drawer") == 1.0)


@pytest.fixture(scope="module")
def env() -> KitchenEnv:
    environment = tiers.sim.make(COLOURED.id, render=False)
    yield environment
    environment.close()


def _hold(env: KitchenEnv, observation: Observation) -> np.ndarray:
    return np.append(observation.joint_positions, observation.gripper_opening).astype(np.float32)


def test_same_seed_same_trajectory_with_images() -> None:
    runs = []
    for _ in range(2):
        environment = tiers.sim.make(CLOSE_DRAWER.id, render=True)
        observation, _ = environment.reset(seed=11)
        action = _hold(environment, observation)
        action[0] += 0.3  # swing joint 1: something moves
        frames = [observation.images["front"]]
        for _ in range(5):
            observation, *_ = environment.step(action)
            frames.append(observation.images["front"])
        runs.append((observation.joint_positions, np.stack(frames)))
        environment.close()
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][1][0], runs[0][1][-1])  # the arm moved in view


def test_layout_meets_the_task_requirements() -> None:
    layout = layout_for_task(COLOURED, seed=5)
    for name, colour in COLOURED.requirements.colors.items():
        assert layout.objects[name].color == colour
    assert set(COLOURED.requirements.objects) <= set(layout.objects)
    drawer = layout_for_task(CLOSE_DRAWER, seed=5)
    assert drawer.articulations["drawer"] == pytest.approx(0.22)  # fully open: the plan closes it
    assert _summary(layout_for_task(COLOURED, seed=5)) == _summary(layout)  # deterministic
    assert _summary(layout_for_task(COLOURED, seed=5, attempt=1)) != _summary(layout)


def _summary(layout: KitchenLayout) -> dict[str, tuple[object, ...]]:
    return {name: (*p.position.tolist(), p.yaw, p.color) for name, p in layout.objects.items()}


def test_reset_reports_the_task_and_does_not_start_solved(env: KitchenEnv) -> None:
    observation, info = env.reset(seed=2)
    assert observation.instruction == COLOURED.instruction
    assert info["task_id"] == COLOURED.id and not info["success"]
    assert not COLOURED.check(env.initial_state, env.scene_state()).success
    state = env.scene_state()
    for name, colour in COLOURED.requirements.colors.items():
        assert state.objects[name].color == colour


def test_a_layout_with_no_counter_room_for_a_spatial_placement_is_resampled(env: KitchenEnv) -> None:
    """Seed 0's first unsolved layout of this task leaves no free spot left of the apple big enough for the
    plate (attempts 0 and 1 start solved, attempt 2 has no room): reset goes on to attempt 3."""
    from tiers.sim.kitchen.placement import spatial_room

    task = get_task("spatial/plate-left_of-apple/0")
    states = []
    for attempt in range(3):
        env.backend.reset(layout_for_task(task, 0, attempt=attempt), render=False)
        states.append(env.backend.scene_state())
    assert [bool(task.check(state, state)) for state in states] == [True, True, False]
    assert spatial_room(task.plan, states[2]) == "no free counter spot to the left of the apple for the plate"
    env.reset(seed=0, options={"task": task})
    assert spatial_room(task.plan, env.initial_state) is None and not task.check(env.initial_state, env.initial_state)
    first = env.initial_state.objects["plate"].position
    assert not np.allclose(first[:2], states[2].objects["plate"].position[:2])
    env.reset(seed=0, options={"task": task})  # the resampling is deterministic
    np.testing.assert_array_equal(env.initial_state.objects["plate"].position, first)


def test_reset_starts_from_a_given_layout_and_refuses_one_that_does_not_pose_the_task(env: KitchenEnv) -> None:
    layout = layout_for_task(COLOURED, seed=7, attempt=3)
    env.reset(seed=0, options={"task": COLOURED, "layout": layout})
    for name, placement in layout.objects.items():  # the given scene, not the one seed 0 samples
        np.testing.assert_allclose(env.initial_state.objects[name].position[:2], placement.position[:2], atol=0.01)
    task = get_task("spatial/plate-left_of-apple/0")
    solved = layout_for_task(task, 0, attempt=0)  # starts solved (see the resampling test below)
    with pytest.raises(ContractError, match=r"the given layout does not pose it \(already satisfied\)"):
        env.reset(seed=0, options={"task": task, "layout": solved})


def test_nan_actions_are_rejected_and_out_of_range_clipped(env: KitchenEnv) -> None:
    observation, _ = env.reset(seed=0)
    hold = _hold(env, observation)
    poisoned = hold.copy()
    poisoned[3] = np.nan
    observation, _, _, _, info = env.step(poisoned)
    assert info["rejected_actions"] == 1
    assert np.isfinite(observation.joint_positions).all()
    np.testing.assert_allclose(observation.joint_positions, hold[:7], atol=0.02)  # held still
    too_far = hold.copy()
    too_far[0] = 10.0  # beyond panda_joint1's 2.8973 rad
    too_far[7] = 0.5  # beyond the 0.08 m gripper
    _, _, _, _, info = env.step(too_far)
    assert info["clipped_components"] == 2
    with pytest.raises(ContractError, match=r"action must have shape \(8,\)"):
        env.step(np.zeros(7, dtype=np.float32))


def test_truncation_after_max_steps() -> None:
    environment = tiers.sim.make(COLOURED.id, render=False, max_steps=3)
    observation, _ = environment.reset(seed=0)
    truncated = [environment.step(_hold(environment, observation))[3] for _ in range(3)]
    assert truncated == [False, False, True]
    environment.close()


def test_ee_delta_actions_move_the_commanded_pose() -> None:
    environment = tiers.sim.make(COLOURED.id, render=False, action_space="ee_delta")
    assert environment.action_space.shape == (7,)
    observation, _ = environment.reset(seed=0)
    start = observation.ee_pose.copy()
    for _ in range(8):
        observation, *_ = environment.step(np.array([0.0, 0.01, -0.01, 0, 0, 0, 0.08], dtype=np.float32))
    for _ in range(10):  # let the servos settle
        observation, *_ = environment.step(np.array([0, 0, 0, 0, 0, 0, 0.08], dtype=np.float32))
    np.testing.assert_allclose(observation.ee_pose[:3] - start[:3], [0.0, 0.08, -0.08], atol=0.006)
    assert abs(np.dot(observation.ee_pose[3:], start[3:])) > 0.999  # orientation kept
    environment.close()


def test_gymnasium_registration_and_unknown_tasks() -> None:
    environment = gymnasium.make("tiers/Kitchen-v0", task=COLOURED.id, render=False)
    observation, _ = environment.reset(seed=1)
    assert isinstance(observation, Observation)
    environment.close()
    with pytest.raises(UnknownTaskError, match="pick_place"):
        get_task("pick_place/apple-in-the-oven/0")


def test_a_diverging_simulation_truncates_the_episode_with_a_reason() -> None:
    environment = tiers.sim.make(COLOURED.id, render=False)
    observation, _ = environment.reset(seed=0)
    environment.backend.data.qvel[-1] = np.nan  # type: ignore[attr-defined]  # poison an object's velocity
    observation, reward, terminated, truncated, info = environment.step(_hold(environment, observation))
    assert truncated and not terminated and reward == 0.0
    assert "simulation diverged" in info["reason"] and "body 'basket'" in info["reason"]
    assert np.isfinite(observation.joint_positions).all()
    environment.close()
