"""``tiers dataset``: look after LeRobotDataset folders.

tiers dataset check PATH            schema, shapes, NaN/Inf, timestamps, episode indices, videos, stats;
                                    exit status 1 when an error is found
tiers dataset check PATH --json     the same findings as one JSON object
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

HELP = "inspect LeRobotDataset folders: `tiers dataset check PATH` validates one and names every problem"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="dataset_command", metavar="COMMAND", required=True)
    check = commands.add_parser("check", help="validate a dataset folder; exit status 1 on errors")
    check.add_argument("path", type=Path, help="dataset folder (holding meta/info.json)")
    check.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    check.add_argument("--no-video-frames", action="store_true", help="skip counting frames inside the mp4 files")


def run(args: argparse.Namespace) -> int:
    if args.dataset_command == "check":
        return _check(args)
    raise AssertionError(f"unhandled dataset command {args.dataset_command!r}")  # argparse restricts the choices


def _check(args: argparse.Namespace) -> int:
    from tiers.core.errors import ConfigError
    from tiers.datasets.check import check_dataset

    if not args.path.is_dir():
        raise ConfigError(f"{args.path} is not a folder")
    report = check_dataset(args.path, video_frames=not args.no_video_frames)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
        return 0 if report.ok else 1

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if report.findings:
        table = Table(title=f"findings in {args.path}")
        for column in ("severity", "check", "where", "problem"):
            table.add_column(column)
        for finding in report.findings:
            colour = "red" if finding.severity == "error" else "yellow"
            table.add_row(
                f"[{colour}]{finding.severity}[/{colour}]",
                finding.check,
                escape(finding.where),
                escape(finding.message),
            )
        console.print(table)
    verdict = "[green]OK[/green]" if report.ok else f"[red]{len(report.errors)} error(s)[/red]"
    warnings = len(report.findings) - len(report.errors)
    console.print(
        f"{escape(str(args.path))}: {report.episodes} episodes, {report.frames} frames; "
        f"checked {', '.join(report.checks_run)}: {verdict}" + (f", {warnings} warning(s)" if warnings else "")
    )
    return 0 if report.ok else 1
