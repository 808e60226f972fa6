"""GenerativeLowPolicy on a real recorded dataset: training loss, NaN checks, action queue, guidance, conditions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from tiers.core.errors import ContractError
from tiers.core.features import FeatureKey
from tiers.core.guidance import Guidance
from tiers.core.protocols import LowLevelPolicy
from tiers.policies.low.conditioning import EE_PATH_KEY, GOAL_STATE_KEY, HindsightConditions
from tiers.policies.low.policy import GenerativeLowPolicy

STATE, ACTION = FeatureKey.STATE.value, FeatureKey.ACTION.value
MakePolicy = Callable[..., GenerativeLowPolicy]
Batch = Callable[[int], dict[str, Any]]


def noise_like(policy: GenerativeLowPolicy, *batch: int, seed: int) -> torch.Tensor:
    """Standard-normal starting noise (*batch, Ta, A) for ``policy``'s chunks."""
    shape = (*batch, policy.config.horizon, policy.features.action_dim)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_a_few_steps_lower_the_loss(make_tiny_policy: MakePolicy, window_batch: Batch) -> None:
    policy = make_tiny_policy()
    assert isinstance(policy, LowLevelPolicy)  # lerobot's interface, the tier protocol
    batch = window_batch(8)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    torch.manual_seed(1)
    losses = []
    for _ in range(20):
        loss, info = policy(batch)
        assert info["loss"] == loss.detach()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    chunk = policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (8, policy.config.horizon, policy.features.action_dim) and torch.isfinite(chunk).all()


def test_nan_in_a_training_batch_raises_naming_the_key(make_tiny_policy: MakePolicy, window_batch: Batch) -> None:
    policy = make_tiny_policy()
    batch = window_batch(4)
    batch[STATE][2, 1, 3] = float("nan")
    with pytest.raises(ContractError, match=r"'observation.state'.*\(2, 1, 3\)"):
        policy(batch)
    batch = window_batch(4)
    batch[ACTION][0, 5, 0] = float("inf")
    with pytest.raises(ContractError, match="'action'"):
        policy(batch)


def test_select_action_pops_the_chunk_and_drop_queued_actions_predicts_afresh(
    make_tiny_policy: MakePolicy, window_batch: Batch
) -> None:
    policy = make_tiny_policy(n_action_steps=3).eval()
    step = {STATE: window_batch(1)[STATE][:, -1]}  # one observation step, (1, S)
    noise_a, noise_b = noise_like(policy, 2, 1, seed=3)
    chunk_a = policy.predict_action_chunk(step, noise=noise_a)
    chunk_b = policy.predict_action_chunk(step, noise=noise_b)
    assert not torch.allclose(chunk_a, chunk_b)

    policy.reset()
    assert torch.allclose(policy.select_action(step, noise=noise_a), chunk_a[:, 0], atol=1e-5)
    assert torch.allclose(policy.select_action(step, noise=noise_b), chunk_a[:, 1], atol=1e-5)  # from the queue
    policy.drop_queued_actions()
    assert torch.allclose(policy.select_action(step, noise=noise_b), chunk_b[:, 0], atol=1e-5)  # a fresh chunk
    assert torch.allclose(policy.select_action(step, noise=noise_a), chunk_b[:, 1], atol=1e-5)
    assert torch.allclose(policy.select_action(step, noise=noise_a), chunk_b[:, 2], atol=1e-5)
    # n_action_steps=3 executed: the fourth call predicts again
    assert torch.allclose(policy.select_action(step, noise=noise_a), chunk_a[:, 0], atol=1e-5)


def test_temporal_ensembling_averages_every_step_chunk(make_tiny_policy: MakePolicy, window_batch: Batch) -> None:
    policy = make_tiny_policy(n_action_steps=1, temporal_ensemble_coeff=0.0).eval()  # uniform weights: a mean
    step = {STATE: window_batch(1)[STATE][:, -1]}
    noises = noise_like(policy, 3, 1, seed=5)
    chunks = [policy.predict_action_chunk(step, noise=noise) for noise in noises]
    policy.reset()
    actions = [policy.select_action(step, noise=noise) for noise in noises]
    assert torch.allclose(actions[0], chunks[0][:, 0], atol=1e-5)
    # the third step is covered by three chunks: predicted at t (index 2), t+1 (index 1), t+2 (index 0)
    expected = (chunks[0][:, 2] + chunks[1][:, 1] + chunks[2][:, 0]) / 3
    assert torch.allclose(actions[2], expected, atol=1e-5)


@pytest.mark.parametrize("generator", ["beso", "flow"])
def test_guidance_on_raw_actions_pulls_the_chunk_toward_the_reward(
    make_tiny_policy: MakePolicy, window_batch: Batch, generator: str
) -> None:
    policy = make_tiny_policy(generator).eval()
    batch = window_batch(4)
    noise = noise_like(policy, 4, seed=7)
    # a raw joint-space target away from what the untrained model produces: the data's maximum of every joint
    target = policy.stats[ACTION]["max"]

    def distance(actions: torch.Tensor) -> torch.Tensor:
        return ((actions - target) ** 2).sum(dim=(1, 2))

    plain = policy.predict_action_chunk(batch, noise=noise)
    policy.set_guidance([Guidance("reach", lambda actions, _obs: -distance(actions), weight=5.0)])
    guided = policy.predict_action_chunk(batch, noise=noise)
    policy.set_guidance([])
    again = policy.predict_action_chunk(batch, noise=noise)
    assert torch.equal(again, plain)  # guidance is off again
    assert (distance(guided) < 0.5 * distance(plain)).all()


def test_single_step_and_history_batches_agree_and_shapes_are_checked(
    make_tiny_policy: MakePolicy, window_batch: Batch
) -> None:
    policy = make_tiny_policy().eval()
    state = window_batch(2)[STATE][:, -1]  # (2, S)
    noise = noise_like(policy, 2, seed=0)
    single = policy.predict_action_chunk({STATE: state}, noise=noise)
    history = policy.predict_action_chunk({STATE: torch.stack([state, state], dim=1)}, noise=noise)
    assert torch.allclose(single, history, atol=1e-6)
    with pytest.raises(ContractError, match=r"observation\.state"):
        policy.predict_action_chunk({STATE: torch.stack([state] * 3, dim=1)}, noise=noise)
    with pytest.raises(ContractError, match=r"no 'observation\.state'"):
        policy.predict_action_chunk({}, noise=noise)


def test_goal_path_and_language_conditions_train_from_hindsight_with_cfg(
    make_tiny_policy: MakePolicy, state_windows: tuple[Any, Any]
) -> None:
    windows, _ = state_windows
    data = HindsightConditions(windows, goal=True, path_waypoints=4)
    item = data[3]
    last = windows.dataset.meta.episodes[0]["dataset_to_index"] - 1
    assert torch.allclose(item[GOAL_STATE_KEY], torch.as_tensor(windows.dataset.hf_dataset[last][STATE]))
    assert item[EE_PATH_KEY].shape == (4, 8) and (item[EE_PATH_KEY][:, 3] >= 0).all()
    # the path's gripper values are the commanded openings (the action's last component), as a planned path's
    # are, not the measured ones (the state's last component): checked where the fingers are closing on the handle
    table = windows.dataset.hf_dataset.with_format("numpy")[: int(last) + 1]
    commanded, measured = np.stack(table[ACTION])[:, -1], np.stack(table[STATE])[:, -1]
    start = int(np.flatnonzero(np.abs(commanded - measured) > 0.005)[0])
    frames = start + np.round(np.linspace(0, int(windows.config.horizon) - 1, 4)).astype(int)
    path = data[start][EE_PATH_KEY]
    assert torch.allclose(path[:, 7], torch.as_tensor(commanded[frames], dtype=torch.float32))
    assert not torch.allclose(path[:, 7], torch.as_tensor(measured[frames], dtype=torch.float32))
    policy = make_tiny_policy(
        conditioning={"goal": True, "path_waypoints": 4, "language_key": "subtask"},
        cfg_scale=2.0,
        generator_options={
            "network": {"noise_embed_dim": 16, "transformer": {"width": 32, "depth": 1, "heads": 2}},
            "cond_dropout": 0.5,
        },
    )
    assert policy.encoder.n_tokens == 2 + 1 + 1 + 4  # state history, language, goal, path
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    loss, _ = policy(batch)
    loss.backward()
    assert policy.encoder.null is not None and policy.encoder.null.grad is not None  # null tokens were trained
    chunk = policy.eval().predict_action_chunk(batch)
    assert chunk.shape[:2] == (4, policy.config.horizon) and torch.isfinite(chunk).all()
    del batch[GOAL_STATE_KEY]
    with pytest.raises(ContractError, match=r"goal\.state"):
        policy.predict_action_chunk(batch)
