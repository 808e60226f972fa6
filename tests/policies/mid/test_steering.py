"""VLS steering: Feynman–Kac resampling and gradient guidance on a toy flow sampler with a known answer,
the latency budget, staged rewards with hysteresis, and steering the low tier's real flow-matching policy."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tiers.core.ee_path import EEPath
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.guidance import Guidance
from tiers.core.observation import Observation
from tiers.core.sampling import SamplerStep, StateHook, SteerablePolicy
from tiers.datasets.loading import DatasetLoadingConfig, load_training_dataset
from tiers.policies.hierarchy import kinds  # noqa: F401  (registers the built-in kinds)
from tiers.policies.hierarchy.registry import HierarchyContext, kind_of
from tiers.policies.low.checkpoint import PolicyFeatures
from tiers.policies.low.generator import guidance_step_scale
from tiers.policies.low.policy import GenerativeLowPolicy, GenerativeLowPolicyConfig
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.rewards import follow_path
from tiers.policies.mid.steering import (
    FeynmanKacLowPolicy,
    FeynmanKacSteering,
    Stage,
    StagedGuidance,
    SteeringConfig,
    beso_policy_steps,
    distance_to,
    flow_policy_steps,
    policy_to_state,
)
from tiers.sim.mujoco import SCENE_XML

SHAPE = (4, 3)  # (Ta, A) of the toy chunks
MODES = torch.stack([torch.ones(SHAPE), -torch.ones(SHAPE)])  # two equally likely clean chunks


def toy_flow(steps: int) -> SamplerStep:
    """Euler steps of the exact rectified flow from N(0, I) to the two-point mixture MODES (x_t = (1-t) e + t x1)."""
    dt = 1.0 / steps

    def step(x: torch.Tensor, index: int, hook: StateHook | None) -> tuple[torch.Tensor, torch.Tensor]:
        t = index * dt
        distances = ((x[:, None] - t * MODES[None]) ** 2).sum(dim=(2, 3))  # (P, 2)
        posterior = torch.softmax(-distances / (2 * (1 - t) ** 2), dim=1)
        estimate = torch.einsum("pk,kta->pta", posterior, MODES)
        velocity = (estimate - x) / (1 - t)
        if hook is not None:  # as the low tier's flow core: move the clean estimate, re-derive the velocity
            velocity = velocity + guidance_step_scale(t, 1 - t, 1.0) * hook(estimate) / (1 - t)
            estimate = x + (1 - t) * velocity
        return x + dt * velocity, estimate

    return step


def prefer_first_mode(weight: float = 1.0) -> Guidance:
    return Guidance("mode0", lambda actions, _: -((actions - MODES[0]) ** 2).mean(dim=(1, 2)), weight)


def fraction_in_first_mode(particles: torch.Tensor) -> float:
    return float(((particles - MODES[0]).abs().mean(dim=(1, 2)) < 0.5).float().mean())


def run(config: SteeringConfig, terms: list[Guidance], seed: int = 0, steps: int = 10) -> tuple[float, object]:
    torch.manual_seed(seed)
    steering = FeynmanKacSteering(terms, config)
    result = steering.run(
        noise=lambda count: torch.randn(count, *SHAPE), make_step=toy_flow, steps=steps,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    return fraction_in_first_mode(result.particles), result


def test_feynman_kac_resampling_moves_the_particles_to_the_rewarded_mode() -> None:
    plain = [run(SteeringConfig(particles=64, guidance=False), [], seed)[0] for seed in range(3)]
    assert 0.3 < np.mean(plain) < 0.7  # unsteered: the two modes about equally
    resampled = [
        run(SteeringConfig(particles=64, guidance=False, temperature=20.0), [prefer_first_mode()], seed)
        for seed in range(3)
    ]
    assert np.mean([fraction for fraction, _ in resampled]) > 0.9
    assert all(result.report.resamples > 0 for _, result in resampled)  # type: ignore[attr-defined]
    guided = [
        run(SteeringConfig(particles=64, temperature=0.0), [prefer_first_mode(5.0)], seed)[0] for seed in range(3)
    ]
    assert np.mean(guided) > np.mean(plain) + 0.2  # gradient guidance alone also steers, less sharply
    _, best = run(SteeringConfig(particles=8), [prefer_first_mode()])
    assert torch.allclose(best.actions[0], MODES[0], atol=0.05)  # type: ignore[attr-defined]


def test_gradient_terms_choose_which_rewards_guide_and_which_only_weigh() -> None:
    config, terms = SteeringConfig(particles=16, temperature=20.0), [prefer_first_mode(5.0)]
    # 3 steps: the particles have not all reached a mode exactly, so a gradient shows in them
    _, weighed_only = run(replace(config, gradient_terms=("track",)), terms, steps=3)
    _, no_gradient = run(replace(config, guidance=False), terms, steps=3)
    # "mode0" matches no prefix: the particles are resampled by it but not guided
    torch.testing.assert_close(weighed_only.particles, no_gradient.particles)  # type: ignore[attr-defined]
    _, guided = run(replace(config, gradient_terms=("mode",)), terms, steps=3)
    assert not torch.equal(guided.particles, no_gradient.particles)  # type: ignore[attr-defined]


def test_the_latency_budget_cuts_particles_then_steps_and_says_so() -> None:
    def slow(steps: int) -> SamplerStep:
        inner = toy_flow(steps)

        def step(x: torch.Tensor, index: int, hook: StateHook | None) -> tuple[torch.Tensor, torch.Tensor]:
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            import time

            time.sleep(0.002 * x.shape[0])  # cost proportional to the particle count
            return inner(x, index, hook)

        return step

    steering = FeynmanKacSteering([prefer_first_mode()], SteeringConfig(particles=16, latency_budget=0.15))
    result = steering.run(noise=lambda count: torch.randn(count, *SHAPE), make_step=slow, steps=10)
    report = result.report
    assert report.degraded and "budget" in report.degraded
    assert report.particles_used < 16 or report.steps_used < 10
    assert report.elapsed < 0.6
    relaxed = FeynmanKacSteering([prefer_first_mode()], SteeringConfig(particles=4)).run(
        noise=lambda count: torch.randn(count, *SHAPE), make_step=toy_flow, steps=10
    )
    assert relaxed.report.degraded == "" and relaxed.report.particles_used == 4


def observation_at(x: float, t: float) -> Observation:
    return Observation(
        joint_positions=np.zeros(7), joint_velocities=np.zeros(7), ee_pose=np.array([x, 0.0, 0.3, 1.0, 0, 0, 0]),
        gripper_opening=0.08, timestamp=t,
    )  # fmt: skip


def test_staged_rewards_switch_with_hysteresis() -> None:
    reach_a = Guidance("a", lambda actions, _: -actions.sum(dim=(1, 2)))
    reach_b = Guidance("b", lambda actions, _: actions.sum(dim=(1, 2)))
    staged = StagedGuidance(
        [Stage("carry", (reach_a,), distance_to([0.5, 0.0, 0.3]), enter=0.02, exit=0.06),
         Stage("lower", (reach_b,), distance_to([0.5, 0.0, 0.1]), enter=0.02)]
    )  # fmt: skip
    term = staged.guidance()
    actions = torch.ones(2, 3, 8)
    names = []
    for t, x in enumerate([0.3, 0.45, 0.49, 0.53, 0.47, 0.54, 0.58, 0.45]):
        value = term(actions, observation_at(x, float(t)))
        names.append(staged.current.name)
        assert float(value[0]) == (-24.0 if staged.current.name == "carry" else 24.0)
    # enters "lower" within 2 cm (x = 0.49), stays there while wobbling under 6 cm away (0.53, 0.47, 0.54),
    # falls back to "carry" beyond 6 cm (0.58), and switches again only when within 2 cm again
    assert names == ["carry", "carry", "lower", "lower", "lower", "lower", "carry", "carry"]
    assert [name for _, name in staged.history] == ["carry", "lower", "carry"]
    with pytest.raises(ValueError, match="exit"):
        Stage("bad", (), distance_to([0, 0, 0]), enter=0.1, exit=0.05)


def _tiny_policy(
    state_dataset: Path, generator: str, options: dict[str, object]
) -> tuple[GenerativeLowPolicy, dict[str, torch.Tensor], Guidance]:
    """An untrained state-only low-tier policy on the dataset, one observation batch (B = 1), and a reward
    toward actions 2 std from the mean (far from what the policy samples)."""

    _, stats = load_training_dataset(DatasetLoadingConfig(root=state_dataset, n_obs_steps=2, horizon=8))
    network = {"noise_embed_dim": 16, "transformer": {"width": 32, "depth": 1, "heads": 2}}
    config = GenerativeLowPolicyConfig.from_dict(
        {
            "generator": generator,
            "generator_options": {"network": network, **options},
            "horizon": 8,
            "n_action_steps": 4,
            "conditioning": {"token_dim": 32, "cameras": [], "language_key": None},
        }
    )  # fmt: skip
    torch.manual_seed(0)
    features = PolicyFeatures.from_dataset(state_dataset, cameras=[], image_size=None, language_key=None)
    policy = GenerativeLowPolicy(config, features, stats).eval()
    batch = {"observation.state": stats["observation.state"]["mean"][None].float()}
    target = stats["action"]["mean"].float() + 2.0 * stats["action"]["std"].float()
    reward = Guidance("toward", lambda actions, _: -((actions - target) ** 2).sum(dim=(1, 2)), 1.0)
    return policy, batch, reward


def test_steering_the_low_tiers_flow_policy(state_dataset: Path) -> None:
    policy, batch, reward = _tiny_policy(state_dataset, "flow", {})
    config = policy.config
    torch.manual_seed(1)
    plain = policy.predict_action_chunk(batch)
    make_step, noise = flow_policy_steps(policy, batch)
    steering = FeynmanKacSteering([reward], SteeringConfig(particles=8), to_state=policy_to_state(policy))
    result = steering.run(noise=noise, make_step=make_step, steps=config.sampler_steps or 10)
    assert result.actions.shape == plain.shape
    assert float(reward(result.actions)) > float(reward(plain)) + 1e-3
    # the same reward through the policy's own guidance hook agrees in direction
    policy.set_guidance([reward])
    torch.manual_seed(1)
    hooked = policy.predict_action_chunk(batch)
    assert float(reward(hooked)) > float(reward(plain))
    # path tracking through the torch FK steers the real policy toward an end-effector path
    import mujoco

    spec = EmbodimentSpec.load("panda")
    fk = ArmFK.from_model(mujoco.MjModel.from_xml_path(str(SCENE_XML)), joint_names=spec.joint_names,
                          site_name=spec.ee_frame)  # fmt: skip
    waypoints = np.array([[0.45, 0.1, 0.3, 0.0, 1.0, 0.0, 0.0], [0.45, 0.1, 0.3, 0.0, 1.0, 0.0, 0.0]])
    path = EEPath(waypoints, np.array([0.0, 1.0]), np.array([0.04, 0.04]))
    tracking = follow_path(fk, path, start_time=0.0, dt=0.05, weight=100.0)
    policy.set_guidance([tracking])
    torch.manual_seed(1)
    tracked = policy.predict_action_chunk(batch)
    policy.set_guidance([])
    assert float(tracking(tracked)) > float(tracking(plain))


def test_feynman_kac_steering_of_the_low_tiers_beso_policy(state_dataset: Path) -> None:
    policy, batch, reward = _tiny_policy(state_dataset, "beso", {"sampler": "euler_ancestral"})
    assert isinstance(policy, SteerablePolicy)  # the mid tier reaches it only through tiers.core.sampling
    with pytest.raises(TypeError, match="flow-matching"):
        flow_policy_steps(policy, batch)
    make_step, noise = beso_policy_steps(policy, batch)
    steps = policy.generator.config.steps
    # no reward, one particle: the step function is the policy's own ancestral sampler (same noise draws)
    torch.manual_seed(3)
    plain = policy.predict_action_chunk(batch)
    torch.manual_seed(3)
    single = SteeringConfig(particles=1, min_particles=1, guidance=False)
    alone = FeynmanKacSteering([], single, to_state=policy_to_state(policy))
    unsteered = alone.run(noise=noise, make_step=make_step, steps=steps).actions
    torch.testing.assert_close(unsteered, plain, atol=1e-4, rtol=1e-4)
    steering = FeynmanKacSteering([reward], SteeringConfig(particles=8), to_state=policy_to_state(policy))
    steered = steering.run(noise=noise, make_step=make_step, steps=steps)
    assert steered.actions.shape == plain.shape
    assert float(reward(steered.actions)) > float(reward(plain)) + 1e-3


def test_feynman_kac_steering_selected_in_the_low_tiers_settings(state_dataset: Path, tmp_path: Path) -> None:
    """``low: {kind: policy, settings: {steering: {...}}}`` samples every chunk from particles and resamples them."""

    policy, batch, reward = _tiny_policy(state_dataset, "beso", {})
    policy.save(tmp_path / "tiny")
    context = HierarchyContext(embodiment=EmbodimentSpec.load("panda"))
    # a high temperature: the reward toward 2 std separates the particles at once, so resampling is certain
    steering = {"particles": 8, "temperature": 100.0, "guidance": False}
    driver = kind_of("low", "policy").build({"checkpoint": str(tmp_path / "tiny"), "steering": steering}, context)
    steered = driver.policy
    assert isinstance(steered, FeynmanKacLowPolicy)
    assert steered.config is steered.policy.config  # the driver reads the policy's own config through it
    driver.seed(7)
    driver.reset()
    steered.set_guidance([reward])
    first = steered.select_action(batch)  # samples a chunk: the policy's queue calls the steered sampler
    assert first.shape == (1, policy.features.action_dim)
    assert steered.chunks == 1 and steered.resamples > 0
    assert steered.last_report is not None and steered.last_report.particles_used == 8
    for _ in range(policy.config.n_action_steps - 1):  # the rest of the chunk pops from the queue
        steered.select_action(batch)
    assert steered.chunks == 1
    # the chunk's seed comes from the episode seed: the same seed samples the same first action
    driver.seed(7)
    driver.reset()
    torch.testing.assert_close(steered.select_action(batch), first)
    # without reward terms a chunk is one plain particle
    steered.set_guidance([])
    steered.drop_queued_actions()
    steered.select_action(batch)
    assert steered.last_report.particles_used == 1 and steered.last_report.resamples == 0
