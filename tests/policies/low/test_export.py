"""ONNX export: a 3-step BESO / 4-step flow policy (encoders, unrolled sampler, CFG) runs in onnxruntime as in torch;
the ``onnx`` low tier (OnnxLowPolicy under the hierarchy's PolicyDriver) acts as the torch policy, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tiers.core.ee_path import EEPath
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError, ContractError
from tiers.core.guidance import Guidance
from tiers.core.observation import CameraModel, Observation
from tiers.policies.hierarchy.registry import HierarchyContext, kind_of
from tiers.policies.low import export
from tiers.policies.low.checkpoint import PolicyFeatures
from tiers.policies.low.export import export_onnx
from tiers.policies.low.onnx_policy import OnnxLowPolicy
from tiers.policies.low.policy import GenerativeLowPolicy, GenerativeLowPolicyConfig
from tiers.services.text_encoder import TextEncoder

NAMES = [f"panda_joint{i}" for i in range(1, 8)] + ["gripper_opening"]


def _policy(
    generator: str = "beso",
    *,
    path_waypoints: int = 0,
    stem_patch: int | None = None,
    cameras: tuple[str, ...] = ("front",),
    shared_image_encoder: bool = False,
    **options: Any,
) -> GenerativeLowPolicy:
    """A tiny untrained policy: state + 32 px cameras + subtask language (+ K path tokens), random statistics;
    ``stem_patch`` gives its image encoder a patchify stem, ``shared_image_encoder`` one CNN for all cameras."""
    torch.manual_seed(0)
    image_encoder = {"channels": [8, 16], "blocks_per_stage": 1, "groups": 4, "keypoints": 8, "stem_patch": stem_patch}
    network = {"noise_embed_dim": 16, "transformer": {"width": 32, "depth": 1, "heads": 2}}
    config = GenerativeLowPolicyConfig.from_dict(
        {
            "generator": generator,
            "generator_options": {"network": network, **options},
            "n_obs_steps": 2,
            "horizon": 8,
            "n_action_steps": 4,
            "cfg_scale": 2.0,  # both CFG branches in the graph
            "conditioning": {
                "token_dim": 32,
                "cameras": list(cameras),
                "image_size": [32, 32],
                "image_encoder": image_encoder,
                "shared_image_encoder": shared_image_encoder,
                "language_key": "subtask",
                "path_waypoints": path_waypoints,
            },
        }
    )
    features = PolicyFeatures(
        robot="panda",
        action_space="joint_position",
        fps=20.0,
        state_names=NAMES,
        action_names=NAMES,
        cameras={f"observation.images.{camera}": [3, 32, 32] for camera in cameras},
        language_key="subtask",
    )

    def stats(shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        return {
            "mean": torch.randn(shape),
            "std": torch.rand(shape) + 0.5,
            "min": -torch.rand(shape) - 1,
            "max": torch.rand(shape) + 1,
        }

    all_stats = {"observation.state": stats((8,)), "action": stats((8,))}
    all_stats.update({f"observation.images.{camera}": stats((3, 1, 1)) for camera in cameras})
    return GenerativeLowPolicy(config, features, all_stats).eval()


def test_tiers_export_writes_a_graph_onnxruntime_runs_like_the_torch_policy(
    tmp_path: Path, parse_cli: Callable[..., Any]
) -> None:
    import onnxruntime

    policy = _policy(sampler="dpmpp_2m")
    checkpoint = policy.save(tmp_path / "checkpoint")
    out = tmp_path / "beso.onnx"
    args = parse_cli("export", str(checkpoint), "--out", str(out))
    assert args.run(args) == 0
    sidecar = json.loads(out.with_name("beso.onnx.json").read_text())
    assert sidecar["network_evaluations"] == 3 and sidecar["max_abs_error_vs_torch"] < 1e-4
    assert sidecar["inputs"] == {
        "state": ["B", 2, 8],
        "image_front": ["B", 2, 3, 32, 32],
        "language_embedding": ["B", 384],
        "noise": ["B", 8, 8],
    }

    # the graph against the policy's own path (text through MiniLM, dict batch), for a batch of 3 (dynamic axis)
    generator = torch.Generator().manual_seed(3)
    state = torch.randn(3, 2, 8, generator=generator)
    images = torch.rand(3, 2, 3, 32, 32, generator=generator)
    noise = torch.randn(3, 8, 8, generator=generator)
    texts = ["open the drawer", "close the drawer", "pick up the red cup"]
    batch = {"observation.state": state, "observation.images.front": images, "subtask": texts}
    with torch.no_grad():
        expected = policy.predict_action_chunk(batch, noise=noise).numpy()
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feed = {
        "state": state.numpy(),
        "image_front": images.numpy(),
        "language_embedding": TextEncoder()(texts).float().numpy(),
        "noise": noise.numpy(),
    }
    (actions,) = session.run(["actions"], feed)
    assert actions.shape == (3, 8, 8)
    np.testing.assert_allclose(actions, expected, atol=1e-4, rtol=0)
    # the noise is the only randomness: another noise gives another chunk, the same noise the same chunk
    (again,) = session.run(["actions"], feed)
    np.testing.assert_array_equal(again, actions)
    (other,) = session.run(["actions"], {**feed, "noise": np.flip(feed["noise"], 0).copy()})
    assert np.abs(other - actions).max() > 1e-3


def test_export_refuses_samplers_with_fresh_noise(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="euler_ancestral"):
        export_onnx(_policy(sampler="euler_ancestral"), tmp_path / "a.onnx")
    with pytest.raises(ContractError, match="DDPM"):
        export_onnx(_policy("ddpm"), tmp_path / "b.onnx")


def test_export_of_the_flow_matching_policy_matches_torch(tmp_path: Path, parse_cli: Callable[..., Any]) -> None:
    policy = _policy("flow")
    out = tmp_path / "flow.onnx"
    args = parse_cli("export", str(policy.save(tmp_path / "checkpoint")), "--out", str(out))
    assert args.run(args) == 0
    sidecar = json.loads(out.with_name("flow.onnx.json").read_text())
    assert sidecar["generator"] == "flow" and sidecar["network_evaluations"] == policy.generator.config.steps
    assert sidecar["check_passed"] is True and sidecar["max_abs_error_vs_torch"] < 1e-4


def test_export_of_a_policy_with_a_patchify_stem_matches_torch(tmp_path: Path) -> None:
    policy = _policy(stem_patch=4)  # the kitchen presets' encoder kind: a 4x4 stride-4 stem on the 32 px camera
    assert policy.encoder.cameras["front"].backbone[0].stride == (4, 4)
    report = export_onnx(policy, tmp_path / "patchify.onnx", texts=["open the drawer"])
    assert report.max_abs_error < 1e-4  # checked (not NaN) and within the export tolerance


def test_export_of_two_cameras_through_one_shared_encoder_matches_torch(tmp_path: Path) -> None:
    # the kitchen presets' layout: front and wrist cameras through one CNN, stacked in one batch
    policy = _policy(stem_patch=4, cameras=("front", "wrist"), shared_image_encoder=True)
    assert policy.encoder.image_encoder is not None and not len(policy.encoder.cameras)
    report = export_onnx(policy, tmp_path / "shared.onnx", texts=["open the drawer"])
    assert report.max_abs_error < 1e-4


def test_tiers_export_exits_non_zero_naming_the_largest_error(
    tmp_path: Path, parse_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a graph that does not reproduce torch: the check reports 0.25 at (batch 1, step 3, action 2)
    monkeypatch.setattr(export, "check_onnx_detailed", lambda *args, **kwargs: (0.25, (1, 3, 2)))
    out = tmp_path / "bad.onnx"
    args = parse_cli("export", str(_policy().save(tmp_path / "checkpoint")), "--out", str(out))
    assert args.run(args) == 1
    printed = " ".join(capsys.readouterr().out.split())
    assert "2.500e-01" in printed and "(1, 3, 2)" in printed and "tolerance 1.0e-04" in printed
    assert json.loads(out.with_name("bad.onnx.json").read_text())["check_passed"] is False
    with pytest.raises(export.ExportMismatchError, match=r"2\.500e-01"):
        export.export_onnx(_policy(), tmp_path / "bad2.onnx")


# -- the onnx low tier ------------------------------------------------------------------------------------------


def _observation(step: int, rng: np.random.Generator) -> Any:
    camera = CameraModel.from_fovy(width=32, height=32, fovy_deg=60.0, base_from_camera=np.eye(4))
    return Observation(
        joint_positions=rng.normal(size=7),
        joint_velocities=np.zeros(7),
        ee_pose=np.array([0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0]),
        gripper_opening=0.04,
        timestamp=step / 20.0,
        images={"front": rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)},
        cameras={"front": camera},
    )


def _path() -> Any:
    waypoints = np.array([[0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0], [0.5, 0.1, 0.2, 0.0, 1.0, 0.0, 0.0]])
    return EEPath(waypoints=waypoints, times=np.array([0.0, 1.0]), gripper=np.array([0.04, 0.0]), frame="base")


def test_onnx_low_tier_acts_as_the_torch_policy_given_the_same_noise(tmp_path: Path) -> None:
    """Tolerance: 1e-4 raw action units (the export's own check; float32 reordering gives ~1e-6)."""

    policy = _policy(path_waypoints=4)
    report = export_onnx(policy, tmp_path / "p.onnx")
    assert report.vocabulary > 400  # every canonical kitchen subtask, embedded at export
    onnx_policy = OnnxLowPolicy(report.path, threads=1)
    assert onnx_policy.config.horizon == 8 and onnx_policy.config.conditioning.path_waypoints == 4
    rng = np.random.default_rng(0)
    noise_rng = np.random.default_rng(1)
    policy.reset()
    onnx_policy.reset()
    for step in range(10):  # three chunks (n_action_steps 4): history, queue and the path tokens agree
        observation = _observation(step, rng)
        noise = noise_rng.standard_normal((1, 8, 8)).astype(np.float32)
        command = "open the drawer" if step < 6 else "pick up the cup"
        if step == 6:
            policy.drop_queued_actions()
            onnx_policy.drop_queued_actions()
        expected = policy.select_action(
            policy.batch_from_observation(observation, command=command, path=_path()), noise=torch.from_numpy(noise)
        )
        got = onnx_policy.select_action(
            onnx_policy.batch_from_observation(observation, command=command, path=_path()), noise=noise
        )
        np.testing.assert_allclose(onnx_policy.action_for_env(got), policy.action_for_env(expected), atol=1e-4, rtol=0)
    with pytest.raises(ContractError, match="wipe the counter"):
        onnx_policy.embedding("wipe the counter")


NO_TORCH_SCRIPT = """
import importlib.abc, sys
from types import SimpleNamespace

class NoTorch(importlib.abc.MetaPathFinder):  # as on a robot computer without torch installed
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed here")

sys.meta_path.insert(0, NoTorch())
import numpy as np
from tiers.core.ee_path import EEPath
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.observation import CameraModel, Observation
from tiers.policies.hierarchy import kinds  # registers the built-in kinds
from tiers.policies.hierarchy.registry import HierarchyContext, kind_of

kind = kind_of("low", "onnx")
context = HierarchyContext(embodiment=EmbodimentSpec.load("panda"))
settings = {"model": sys.argv[1], "threads": 1}
needs, takes_guidance = kind.needs_of(settings, context)
driver = kind.build(settings, context)
path = EEPath(
    waypoints=np.array([[0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0], [0.5, 0.1, 0.2, 1.0, 0.0, 0.0, 0.0]]),
    times=np.array([0.0, 1.0]), gripper=np.array([0.04, 0.0]), frame="base",
)
rng = np.random.default_rng(0)
def observation(step):
    return Observation(
        joint_positions=rng.normal(size=7), joint_velocities=np.zeros(7),
        ee_pose=np.array([0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0]), gripper_opening=0.04, timestamp=step / 20.0,
        images={"front": rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)},  # resized to 32 px
        cameras={"front": CameraModel.from_fovy(width=48, height=48, fovy_deg=60.0, base_from_camera=np.eye(4))},
    )
driver.seed(0)
driver.reset()
driver.start(SimpleNamespace(command=SimpleNamespace(text="open the drawer"), path=path, guidance=()), observation(0))
actions = [driver.act(observation(step)) for step in range(9)]
assert all(action.shape == (8,) and np.isfinite(action).all() for action in actions)
assert "torch" not in sys.modules, sorted(name for name in sys.modules if name.startswith("torch"))
print("ok", *sorted(needs), takes_guidance, len(actions))
"""


def test_onnx_low_tier_builds_and_runs_through_the_kinds_registry_without_torch(tmp_path: Path) -> None:
    report = export_onnx(_policy(path_waypoints=4), tmp_path / "p.onnx")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NO_TORCH_SCRIPT), str(report.path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ok", "path", "subtask", "False", "9"]


def test_onnx_low_tier_refuses_guidance_and_unknown_models(tmp_path: Path) -> None:
    from tiers.policies.hierarchy import kinds  # noqa: F401  (registers the built-in kinds)

    context = HierarchyContext(embodiment=EmbodimentSpec.load("panda"), base_dir=tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        kind_of("low", "onnx").build({"model": "missing.onnx"}, context)
    onnx_policy = OnnxLowPolicy(export_onnx(_policy(), tmp_path / "p.onnx").path)
    reward = Guidance(name="r", weight=1.0, reward=lambda actions, observation: actions.sum(dim=(-2, -1)))
    with pytest.raises(ContractError, match="tracking_weight: 0"):
        onnx_policy.set_guidance([reward])
    onnx_policy.set_guidance([Guidance(name="off", weight=0.0, reward=reward.reward)])  # weight 0: nothing to do
