"""``tiers improve``: retrain a hierarchy's low tier on its demonstrations plus logged corrections, and measure it.

Example::

    tiers eval --mode corrections --hierarchy outputs/demo/x/hierarchy.yaml --limit 10 --corrections-log outputs/yay
    tiers improve --hierarchy outputs/demo/x/hierarchy.yaml --dataset outputs/demo/x/data/demos \\
        --corrections outputs/yay --curve 0 2 5 -1 --out outputs/improve

Writes ``improve.json`` (success on the corrected tasks against the number of corrections used) and
``improve_curve.png``; each retrained checkpoint lies in ``corrections_<k>/``.

With ``--motion`` the hierarchy's RT-H motion predictor (planner kind ``motion``) is retrained instead, on the motion
interventions logged in ``--corrections`` (``interventions.jsonl``, :mod:`tiers.apps.improve_motion`); ``--curve``
counts corrections, and ``improve_motion.json`` lists the retrained predictors.
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
    parser.add_argument("--seed", type=int, default=2000, help="first evaluation seed (unused by the corrections)")
    parser.add_argument(
        "--control-tasks", nargs="+", default=[], help="task ids nobody corrected, evaluated at every point"
    )
    parser.add_argument("--workers", type=int, default=1, help="evaluation processes")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default outputs/improve/<time>)")
    parser.add_argument(
        "--motion", action="store_true", help="retrain the motion planner on its logged interventions (RT-H)"
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tiers.apps.improve import ImproveConfig, improve

    console = Console(highlight=False)

    def echo(text: str) -> None:
        console.print(text, markup=False)

    out = args.out or Path("outputs") / "improve" / time.strftime("%Y%m%d-%H%M%S")
    if args.motion:
        from tiers.apps.improve_motion import MotionImproveConfig, improve_motion

        motion = MotionImproveConfig(steps=args.steps, fraction=min(max(args.fraction, 1e-3), 1.0))
        improve_motion(args.hierarchy, args.dataset, args.corrections, out, curve=args.curve, config=motion, echo=echo)
        console.print(f"[bold]tiers improve --motion[/bold]: retrained predictors in {out}")
        return 0
    config = ImproveConfig(
        hierarchy=args.hierarchy,
        dataset=args.dataset,
        corrections=args.corrections,
        corrections_fraction=args.fraction,
        interventions_only=not args.all_frames,
        steps=args.steps,
        curve=list(args.curve),
        seeds=args.seeds,
        seed=args.seed,
        control_tasks=list(args.control_tasks),
        workers=args.workers,
    )
    out.mkdir(parents=True, exist_ok=True)
    result = improve(config, out, echo=lambda text: console.print(text, markup=False))
    console.print(f"[bold]tiers improve[/bold] on {len(result['tasks'])} corrected task(s); curve in {out}")
    for point in result["points"]:
        control = f"; control tasks {100 * point['control']['success']:5.1f}%" if "control" in point else ""
        console.print(f"  {point['corrections']:4d} corrections: {100 * point['success']:5.1f}% success{control}")
    return 0
