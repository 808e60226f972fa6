"""``tiers improve``: retrain a hierarchy's low tier on its demonstrations plus logged corrections, and measure it.

Example::

    tiers eval --mode corrections --hierarchy outputs/demo/x/hierarchy.yaml --limit 10 --corrections-log outputs/yay
    tiers improve --hierarchy outputs/demo/x/hierarchy.yaml --dataset outputs/demo/x/data/demos \\
        --corrections outputs/yay --curve 0 2 5 -1 --out outputs/improve

Writes ``improve.json`` (success on the corrected tasks against the number of corrections used) and
``improve_curve.png``; each retrained checkpoint lies in ``corrections_<k>/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "retrain on demonstrations + logged corrections; success against the number of corrections"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hierarchy", required=True, help="hierarchy YAML whose learned low tier is retrained")
    parser.add_argument("--dataset", required=True, help="the original demonstrations (LeRobotDataset folder)")
    parser.add_argument("--corrections", required=True, help="the corrections dataset (tiers run --log, eval)")
    parser.add_argument("--fraction", type=float, default=0.5, help="share of samples from correction frames")
    parser.add_argument("--all-frames", action="store_true", help="draw from every corrections frame, not spans")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps per point")
    parser.add_argument("--curve", type=int, nargs="+", default=[0, -1], help="corrections episodes per point (-1 all)")
    parser.add_argument("--seeds", type=int, default=1, help="evaluation episodes per task")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/improve/<time>)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tiers.apps.improve import ImproveConfig, improve

    console = Console(highlight=False)
    config = ImproveConfig(
        hierarchy=args.hierarchy,
        dataset=args.dataset,
        corrections=args.corrections,
        corrections_fraction=args.fraction,
        interventions_only=not args.all_frames,
        steps=args.steps,
        curve=list(args.curve),
        seeds=args.seeds,
    )
    out = args.out or Path("outputs") / "improve" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    result = improve(config, out, echo=lambda text: console.print(text, markup=False))
    console.print(f"[bold]tiers improve[/bold] on {len(result['tasks'])} corrected task(s); curve in {out}")
    for point in result["points"]:
        console.print(f"  {point['corrections']:4d} corrections: {100 * point['success']:5.1f}% success")
    return 0
