"""ONNX export: a 3-step BESO policy (encoders, unrolled sampler, CFG) runs in onnxruntime as it runs in torch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tiers.core.errors import ContractError
from tiers.policies.low.checkpoint import PolicyFeatures
from tiers.policies.low.policy import GenerativeLowPolicy, GenerativeLowPolicyConfig

NAMES = [f"panda_joint{i}" for i in range(1, 8)] + ["gripper_opening"]


def _policy(generator: str = "beso", **options: Any) -> GenerativeLowPolicy:
    """A tiny untrained policy: state + one 32 px camera + subtask language, random statistics."""
    torch.manual_seed(0)
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
                "cameras": ["front"],
                "image_size": [32, 32],
                "image_encoder": {"channels": [8, 16], "blocks_per_stage": 1, "groups": 4, "keypoints": 8},
                "language_key": "subtask",
            },
        }
    )
    features = PolicyFeatures(
        robot="panda",
        action_space="joint_position",
        fps=20.0,
        state_names=NAMES,
        action_names=NAMES,
        cameras={"observation.images.front": [3, 32, 32]},
        language_key="subtask",
    )

    def stats(shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        return {
            "mean": torch.randn(shape),
            "std": torch.rand(shape) + 0.5,
            "min": -torch.rand(shape) - 1,
            "max": torch.rand(shape) + 1,
        }

    all_stats = {"observation.state": stats((8,)), "action": stats((8,)), "observation.images.front": stats((3, 1, 1))}
    return GenerativeLowPolicy(config, features, all_stats).eval()


def test_tiers_export_writes_a_graph_onnxruntime_runs_like_the_torch_policy(
    tmp_path: Path, parse_cli: Callable[..., Any]
) -> None:
    import onnxruntime

    from tiers.services.text_encoder import TextEncoder

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
    from tiers.policies.low.export import export_onnx

    with pytest.raises(ContractError, match="euler_ancestral"):
        export_onnx(_policy(sampler="euler_ancestral"), tmp_path / "a.onnx")
    with pytest.raises(ContractError, match="DDPM"):
        export_onnx(_policy("ddpm"), tmp_path / "b.onnx")
