"""``tiers dataset``: look after LeRobotDataset folders.

tiers dataset check PATH            schema, shapes, NaN/Inf, timestamps, episode indices, videos, stats,
                                    camera models (fx > 0, orthonormal rotations, ...);
                                    exit status 1 when an error is found
tiers dataset check PATH --json     the same findings as one JSON object
tiers dataset show PATH             episodes, frames, fps, features with shapes, tasks, per-episode length and
                                    success, language columns (subtasks, motions, corrections), camera models
                                    (intrinsics, position, how far each camera moves, depth or not); --json
tiers dataset show PATH --episode K [--video OUT.mp4] [--sheet OUT.png] [--plot OUT.png] [--camera KEY]
                                    one episode's language segments; a captioned video (task, subtask,
                                    language motion, correction), a contact sheet, a state/action plot
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

HELP = (
    "inspect LeRobotDataset folders: `tiers dataset check PATH` validates one and names every problem, "
    "`tiers dataset show PATH` summarises one"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="dataset_command", metavar="COMMAND", required=True)
    check = commands.add_parser("check", help="validate a dataset folder; exit status 1 on errors")
    check.add_argument("path", type=Path, help="dataset folder (holding meta/info.json)")
    check.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    check.add_argument("--no-video-frames", action="store_true", help="skip counting frames inside the mp4 files")
    show = commands.add_parser("show", help="summarise a dataset, or look at one episode (video, sheet, plot)")
    show.add_argument("path", type=Path, help="dataset folder (holding meta/info.json)")
    show.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    show.add_argument("--episode", type=int, default=None, help="show this episode's language segments")
    show.add_argument("--video", type=Path, default=None, help="with --episode: write a captioned mp4 here")
    show.add_argument("--sheet", type=Path, default=None, help="with --episode: write a contact sheet PNG here")
    show.add_argument("--plot", type=Path, default=None, help="with --episode: write a state/action plot PNG here")
    show.add_argument("--camera", default=None, help="camera key for --video/--sheet (default: the front camera)")


def run(args: argparse.Namespace) -> int:
    if args.dataset_command == "check":
        return _check(args)
    if args.dataset_command == "show":
        return _show(args)
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


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tiers.core.errors import ConfigError
    from tiers.datasets.show import summarize

    if not args.path.is_dir():
        raise ConfigError(f"{args.path} is not a folder")
    wants_files = [name for name in ("video", "sheet", "plot") if getattr(args, name) is not None]
    if wants_files and args.episode is None:
        raise ConfigError(f"--{wants_files[0]} needs --episode K")
    summary = summarize(args.path)
    if args.json:
        print(json.dumps({**asdict(summary), "duration": summary.duration, "success_rate": summary.success_rate}))
        return 0
    console = Console()
    _print_summary(console, summary)
    if args.episode is not None:
        _show_episode(console, args)
    return 0


def _print_summary(console: Any, summary: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    rate = summary.success_rate
    console.print(
        f"{escape(summary.root)}: {summary.episodes} episodes, {summary.frames} frames, {summary.fps} fps "
        f"({summary.duration:.1f} s), robot {summary.robot_type or '?'}, LeRobotDataset {summary.codebase_version}, "
        f"{summary.size_bytes / 1e6:.2f} MB" + (f", success {rate:.1%}" if rate is not None else "")
    )
    features = Table(title="features")
    for column in ("feature", "dtype", "shape"):
        features.add_column(column)
    for feature in summary.features:
        features.add_row(escape(feature.key), feature.dtype, str(feature.shape))
    console.print(features)
    tasks = Table(title=f"tasks ({len(summary.tasks)})")
    tasks.add_column("task")
    tasks.add_column("episodes", justify="right")
    for text, count in summary.tasks:
        tasks.add_row(escape(text), str(count))
    console.print(tasks)
    episodes = Table(title="episodes")
    for column in ("episode", "frames", "s", "success", "task", "subtasks", "motion segments", "interjections"):
        episodes.add_column(column, justify="left" if column == "task" else "right")
    for episode in summary.episode_list:
        success = {None: "?", True: "[green]yes[/green]", False: "[red]no[/red]"}[episode.success]
        episodes.add_row(
            str(episode.index),
            str(episode.frames),
            f"{episode.duration:.1f}",
            success,
            escape(episode.task_id or episode.task),
            str(episode.subtasks),
            str(episode.motions),
            str(episode.interjections),
        )
    console.print(episodes)
    if summary.language:
        language = Table(title="language columns")
        for column in ("column", "distinct", "frames", "most frequent (frames)"):
            language.add_column(column)
        for entry in summary.language:
            top = ", ".join(f"{escape(text)} ({count})" for text, count in entry.top)
            language.add_row(entry.column, str(entry.distinct), str(entry.frames), top)
        console.print(language)
    if summary.cameras:
        cameras = Table(title="camera models (camera.<name>.intrinsics / .base_from_camera, every frame)")
        for column in ("camera", "size", "fx, fy px", "cx, cy px", "at frame 0 (m)", "moves", "depth"):
            cameras.add_column(column)
        for camera in summary.cameras:
            moves = f"{camera.travel:.2f} m" if camera.travel > 1e-4 else "static"
            cameras.add_row(
                escape(camera.name),
                f"{camera.width}x{camera.height}",
                f"{camera.fx:.1f}, {camera.fy:.1f}" + (" (varies)" if camera.intrinsics_vary else ""),
                f"{camera.cx:.1f}, {camera.cy:.1f}",
                " ".join(f"{value:.2f}" for value in camera.position),
                moves,
                "yes" if camera.depth else "no",
            )
        console.print(cameras)
    if summary.correction_events or summary.intervention_spans:
        console.print(
            f"corrections: {summary.correction_events} interjection events, "
            f"{summary.intervention_spans} intervention spans (meta/tiers_corrections.jsonl)"
        )


def _show_episode(console: Any, args: argparse.Namespace) -> None:
    from rich.markup import escape
    from rich.table import Table

    from tiers.core.features import FeatureKey
    from tiers.datasets.show import (
        default_camera,
        episode_frames,
        write_contact_sheet,
        write_episode_plot,
        write_episode_video,
    )

    decode = args.video is not None or args.sheet is not None
    camera = (args.camera or default_camera(args.path)) if decode else None
    frames = episode_frames(args.path, args.episode, camera=camera)
    table = Table(title=f"episode {frames.index}: {escape(frames.task)} ({frames.length} frames)")
    for column in ("column", "from (s)", "to (s)", "text"):
        table.add_column(column)
    for column in (FeatureKey.SUBTASK.value, FeatureKey.LANGUAGE_MOTION.value, "active_correction"):
        for text, start, stop in frames.segments(column):
            if text:
                table.add_row(column, f"{start / frames.fps:.2f}", f"{stop / frames.fps:.2f}", escape(text))
    console.print(table)
    if args.video is not None:
        console.print(f"video ({camera}): {write_episode_video(frames, args.video)}")
    if args.sheet is not None:
        console.print(f"contact sheet ({camera}): {write_contact_sheet(frames, args.sheet)}")
    if args.plot is not None:
        console.print(f"state/action plot: {write_episode_plot(frames, args.plot)}")
