"""``tiers export CHECKPOINT --out model.onnx``: a few-step low-tier policy as one ONNX graph.

    tiers export outputs/train/beso/checkpoints/last --out outputs/export/beso.onnx
    tiers export CKPT --out beso.onnx --steps 3 --opset 17

    tiers export CKPT --out beso.onnx --text "wipe the counter"     # embed a command beyond the kitchen's

The graph holds the observation encoders, the normalisation and the sampler unrolled over its steps, with
the starting noise as an input (see :mod:`tiers.policies.low.export` for the inputs, outputs and shapes);
a language-conditioned policy also gets ``<out>.language.npz``, the MiniLM embeddings of its command
vocabulary, so the ``onnx`` low tier runs without torch. After writing it, onnxruntime runs it on random
inputs: the largest difference to torch is printed, and one above ``--tolerance`` exits with status 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "export a BESO / flow-matching policy checkpoint to ONNX (sampler unrolled, fixed-noise input), checked"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint", help="policy checkpoint folder (tiers train), or pretrained:<name> for one shipped with tiers"
    )
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write (+ a .json sidecar)")
    parser.add_argument("--steps", type=int, default=None, help="network evaluations to unroll (default: the policy's)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    parser.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs torch comparison")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest |onnxruntime - torch| accepted, raw action units (default 1e-4); above it: exit 1",
    )
    parser.add_argument(
        "--text",
        action="append",
        default=[],
        help="a command text to embed beyond the kitchen vocabulary (repeatable; needed for task-conditioned policies)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tiers.core.errors import ConfigError
    from tiers.policies.hierarchy import registry
    from tiers.policies.low.export import ExportMismatchError, export_onnx

    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    if not args.tolerance > 0:
        raise ConfigError(f"--tolerance must be > 0, got {args.tolerance}")
    console = Console()
    try:
        report = export_onnx(
            _checkpoint(args.checkpoint, registry),
            args.out,
            steps=args.steps,
            opset=args.opset,
            check=not args.no_check,
            tolerance=args.tolerance,
            texts=args.text,
        )
    except ExportMismatchError as error:
        console.print(f"[red]export check failed:[/red] {error}", soft_wrap=True)
        return 1
    console.print(
        f"wrote {report.path} ({report.size_mb:.2f} MiB, opset {report.opset}, {report.steps} network evaluations)"
    )
    for name, shape in report.inputs.items():
        console.print(f"  input  {name:<20} {shape}")
    for name, shape in report.outputs.items():
        console.print(f"  output {name:<20} {shape}")
    if report.vocabulary:
        console.print(f"  language: {report.vocabulary} command embeddings in {report.path.name}.language.npz")
    if not args.no_check:
        console.print(
            f"onnxruntime vs torch: max |difference| {report.max_abs_error:.2e} (raw action units; "
            f"tolerance {args.tolerance:.0e}): ok"
        )
    return 0


def _checkpoint(name: str, registry: Any) -> Path:
    """``pretrained:<name>`` -> the folder shipped in tiers/policies/pretrained/ (as hierarchy YAMLs resolve it)."""
    return Path(registry.shipped_checkpoint(name))
