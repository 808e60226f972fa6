"""``tiers export CHECKPOINT --out model.onnx``: a few-step low-tier policy as one ONNX graph.

    tiers export outputs/train/beso/checkpoints/last --out outputs/export/beso.onnx
    tiers export CKPT --out beso.onnx --steps 3 --opset 17

The graph holds the observation encoders, the normalisation and the sampler unrolled over its steps, with
the starting noise as an input (see :mod:`tiers.policies.low.export` for the inputs, outputs and shapes).
After writing it, onnxruntime runs it on random inputs and the largest difference to torch is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a BESO / flow-matching policy checkpoint to ONNX (sampler unrolled, fixed-noise input), checked"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="policy checkpoint folder (tiers train)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write (+ a .json sidecar)")
    parser.add_argument("--steps", type=int, default=None, help="network evaluations to unroll (default: the policy's)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs torch comparison")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tiers.core.errors import ConfigError
    from tiers.policies.low.export import export_onnx

    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    console = Console()
    report = export_onnx(args.checkpoint, args.out, steps=args.steps, opset=args.opset, check=not args.no_check)
    console.print(
        f"wrote {report.path} ({report.size_mb:.2f} MiB, opset {report.opset}, {report.steps} network evaluations)"
    )
    for name, shape in report.inputs.items():
        console.print(f"  input  {name:<20} {shape}")
    for name, shape in report.outputs.items():
        console.print(f"  output {name:<20} {shape}")
    if not args.no_check:
        console.print(f"onnxruntime vs torch: max |difference| {report.max_abs_error:.2e} (raw action units)")
    return 0
