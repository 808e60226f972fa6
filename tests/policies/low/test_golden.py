"""Golden regression tests: committed safetensors files pin each generator's samples for fixed weights and noise.

Each file under ``golden/`` holds a tiny network's weights (``weights.*``), the inputs (``tokens``,
``null_tokens``, ``noise``, ``mask``) and the outputs of every sampler configuration (``out.*``) and of the loss
under a fixed seed (``loss``). A change of numerics in a network, a preconditioning, a sampler or a diffusers
upgrade shows up here. After an intended change, regenerate (and review the diff of the numbers)::

    TIERS_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/policies/low/test_golden.py
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tiers.policies.low.generator import Conditioning
from tiers.policies.low.registry import make_generator

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("TIERS_REGENERATE_GOLDEN") == "1"
BATCH, HORIZON, ACTION_DIM, TOKENS, TOKEN_DIM = 2, 4, 2, 2, 3


def tiny_network(kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "action_dim": ACTION_DIM,
        "horizon": HORIZON,
        "cond_dim": TOKEN_DIM,
        "max_cond_tokens": TOKENS,
        "noise_embed_dim": 16,
        "transformer": {"width": 16, "depth": 1, "heads": 2},
        "unet": {"channels": [4, 8], "kernel_size": 3, "groups": 2, "cond_width": 4},
    }


def pull_to_zero(x0_hat: torch.Tensor, step: int) -> torch.Tensor:
    """A fixed guidance hook: the gradient of -‖x‖² (times the step number + 1, so the index matters)."""
    return -2.0 * (step + 1) * x0_hat


@dataclass(frozen=True)
class GoldenCase:
    name: str  # file stem under golden/
    generator: str  # registry name
    kind: str  # network kind
    # output name -> keyword arguments of sample() (noise and conditioning are added)
    samples: dict[str, dict[str, Any]]


EDM = {
    f"{sampler}_{schedule}": {"sampler": sampler, "schedule": schedule, "cfg_scale": 1.5}
    for sampler in ("ddim", "euler", "euler_ancestral", "dpmpp_2m")
    for schedule in ("karras", "exponential")
}
CASES = [
    GoldenCase(
        "beso_transformer",
        "beso",
        "transformer",
        {**EDM, "guided_dpmpp_2m": {"sampler": "dpmpp_2m", "guidance": pull_to_zero}},
    ),
    GoldenCase(
        "beso_unet",
        "beso",
        "unet",
        {"ddim_exponential": EDM["ddim_exponential"], "euler_ancestral_karras": EDM["euler_ancestral_karras"]},
    ),
    GoldenCase(
        "flow_transformer",
        "flow",
        "transformer",
        {"euler_4": {"cfg_scale": 1.5}, "euler_2": {"steps": 2}, "guided_euler_4": {"guidance": pull_to_zero}},
    ),
    GoldenCase(
        "ddpm_transformer",
        "ddpm",
        "transformer",
        {
            "ddim_10": {"sampler": "ddim", "steps": 10, "cfg_scale": 1.5},
            "ddpm_20": {"sampler": "ddpm", "steps": 20},
            "guided_ddim_10": {"sampler": "ddim", "steps": 10, "guidance": pull_to_zero},
        },
    ),
]


def _outputs(model: nn.Module, case: GoldenCase, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    conditioning = Conditioning(inputs["tokens"], inputs["null_tokens"])
    sample: Callable[..., torch.Tensor] = model.sample  # type: ignore[assignment]
    outputs = {}
    with torch.no_grad():
        for name, kwargs in case.samples.items():
            generator = torch.Generator().manual_seed(1)  # fresh noise of the ancestral samplers
            outputs[f"out.{name}"] = sample(conditioning, noise=inputs["noise"], generator=generator, **kwargs)
        model.train()  # the loss with condition dropout, under a fixed seed
        torch.manual_seed(2)
        loss: torch.Tensor = model.loss(inputs["actions"], conditioning, mask=inputs["mask"].bool())  # type: ignore[operator]
        model.eval()
    outputs["loss"] = loss.reshape(1)
    return outputs


def _regenerate(case: GoldenCase, path: Path) -> None:
    torch.manual_seed(0)
    model = make_generator(case.generator, {"network": tiny_network(case.kind)}).eval()
    data = torch.Generator().manual_seed(3)
    tokens = torch.randn(BATCH, TOKENS, TOKEN_DIM, generator=data)
    inputs = {
        "tokens": tokens,
        "null_tokens": torch.zeros_like(tokens),
        "noise": torch.randn(BATCH, HORIZON, ACTION_DIM, generator=data),
        "actions": 0.5 * torch.randn(BATCH, HORIZON, ACTION_DIM, generator=data),
        "mask": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.uint8),
    }
    weights = {f"weights.{key}": value.contiguous() for key, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({**weights, **inputs, **_outputs(model, case, inputs)}, str(path))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_outputs_match_the_golden_file(case: GoldenCase) -> None:
    path = GOLDEN / f"{case.name}.safetensors"
    if REGENERATE:
        _regenerate(case, path)
    assert path.is_file(), f"{path} is missing; run with TIERS_REGENERATE_GOLDEN=1 to write it"
    assert path.stat().st_size < 64 * 1024, f"{path} should stay a few KB"
    stored = load_file(str(path))
    model = make_generator(case.generator, {"network": tiny_network(case.kind)}).eval()
    weights = {key.removeprefix("weights."): value for key, value in stored.items() if key.startswith("weights.")}
    model.load_state_dict(weights, strict=True)
    inputs = {key: stored[key] for key in ("tokens", "null_tokens", "noise", "actions", "mask")}
    outputs = _outputs(model, case, inputs)
    assert set(outputs) == {key for key in stored if key.startswith("out.")} | {"loss"}
    for key, value in outputs.items():
        torch.testing.assert_close(value, stored[key], atol=1e-5, rtol=1e-4, msg=f"{case.name}: {key} changed")
