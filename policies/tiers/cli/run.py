"""``tiers run``: run a hierarchy in the kitchen, with live language corrections from the console or a file.

Examples::

    tiers run offline_paths --task open/drawer/0 --video outputs/run/drawer.mp4
    tiers run offline_paths --instruction "open the drawer, put the apple inside, then close it" --interactive
    tiers run learned_paths --task pick_place/apple-in-bowl/0 --corrections corrections.yaml --log outputs/yay
    tiers run --list-kinds      # the tier kinds a hierarchy YAML may name (no hierarchy needed)

``--interactive`` reads corrections from the console while the robot moves (type "stop", "move a bit
left", "no, open the cabinet first", ...) and paces the simulation at the control rate so a person can
react. ``--corrections FILE`` replays timed corrections for reproducible runs: a YAML list of
``{t: seconds, text: "..."}``. ``--log DIR`` appends the episode, with its corrections, to a corrections
dataset for ``tiers improve``. On a real robot the same runtime runs inside the ROS 2 nodes
(``tiers ros up``).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

HELP = "run a hierarchy (configs/hierarchies/<name>.yaml) in the kitchen with live or replayed corrections"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "hierarchy", nargs="?", default=None, help="hierarchy preset name or YAML path (not with --list-kinds)"
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--task", default=None, help="kitchen task id (default: open/drawer/0)")
    what.add_argument("--instruction", default=None, help="free text; the kitchen task it names is set up")
    parser.add_argument("--seed", type=int, default=0, help="layout seed")
    parser.add_argument("--interactive", action="store_true", help="type corrections while the robot moves")
    parser.add_argument("--corrections", type=Path, default=None, help="YAML list of {t: s, text: ...} to replay")
    parser.add_argument("--video", type=Path, default=None, help="write the front camera as an mp4")
    parser.add_argument("--log", type=Path, default=None, help="append the episode to this corrections dataset")
    parser.add_argument("--realtime", action="store_true", help="pace at the control rate (on with --interactive)")
    parser.add_argument("--max-steps", type=int, default=None, help="truncate the episode after this many steps")
    parser.add_argument("--device", default="cpu", help="torch device of learned tiers")
    parser.add_argument(
        "--backend", default="mujoco", help="simulator backend: mujoco, or isaacsim (Isaac Sim 6.2, RTX GPU)"
    )
    parser.add_argument("--list-kinds", action="store_true", help="list the tier kinds a hierarchy may name and exit")
    parser.add_argument("overrides", nargs="*", help="hierarchy overrides key=value (low.settings.sampler_steps=1)")


def load_replay(path: Path) -> list[tuple[float, str]]:
    """Timed corrections from a YAML list of ``{t: seconds, text: ...}``, sorted by time.

    Raises:
        ConfigError: the file is not such a list; the message names the file and the entry.
    """
    import yaml

    from tiers.core.errors import ConfigError

    try:
        entries = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read corrections: {error}") from error
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a list of {{t: seconds, text: ...}}, got {type(entries).__name__}")
    timed = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"t", "text"}:
            raise ConfigError(f"{path}: entry {index} must have exactly the keys t and text, got {entry!r}")
        try:
            seconds = float(entry["t"])
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: entry {index}: t must be seconds, got {entry['t']!r}") from None
        if seconds < 0 or not str(entry["text"]).strip():
            raise ConfigError(f"{path}: entry {index}: t must be >= 0 and text non-empty, got {entry!r}")
        timed.append((seconds, str(entry["text"])))
    return sorted(timed)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    import tiers.apps.evaluation.kinds  # noqa: F401  (the privileged kinds a hierarchy may name can be built)
    from tiers.apps.evaluation.hierarchy_episode import run_hierarchy_episode
    from tiers.core.errors import ConfigError, ContractError
    from tiers.core.features import CommandSource
    from tiers.policies.hierarchy.build import describe_kinds, hierarchy_embodiment, load_hierarchy
    from tiers.sim.backends import check_backend_available, make_backend
    from tiers.sim.kitchen.env import KitchenEnv
    from tiers.sim.kitchen.tasks import get_task, task_for_instruction

    console = Console(highlight=False)
    if args.list_kinds:
        console.print(describe_kinds(), markup=False, soft_wrap=True)
        return 0
    if args.hierarchy is None:
        raise ConfigError("name a hierarchy to run (a preset of configs/hierarchies/ or a YAML path): tiers run NAME")
    check_backend_available(args.backend)
    replay = load_replay(args.corrections) if args.corrections else []
    task = task_for_instruction(args.instruction) if args.instruction else get_task(args.task or "open/drawer/0")
    spec = hierarchy_embodiment(args.hierarchy)
    env = KitchenEnv(None, backend=make_backend(args.backend, spec), render=False, max_steps=args.max_steps)
    hierarchy = load_hierarchy(args.hierarchy, env=env, task=task, device=args.device, overrides=args.overrides)
    runtime = hierarchy.runtime_for(task)
    if hierarchy.privileged:
        console.print(f"note: {', '.join(hierarchy.privileged)} read the simulator's ground truth (evaluation only)")
    console.print(f"[bold]tiers run[/bold] {hierarchy.config.name}: {task.instruction!r} ({task.id}, seed {args.seed})")

    log = None
    if args.log is not None:
        from tiers.apps.evaluation.corrections_log import EpisodeCorrectionsLog

        log = EpisodeCorrectionsLog(args.log, runtime, source=hierarchy.config.name)
    realtime = args.realtime or args.interactive
    period = 1.0 / spec.control_rate_hz
    shown = 0
    pending = list(replay)
    last_tick = time.perf_counter()

    def on_tick(observation: Any, step: Any, said: str | None) -> None:
        nonlocal shown, last_tick
        while pending and pending[0][0] <= observation.timestamp:
            seconds, text = pending.pop(0)
            try:
                runtime.correct(text, source=CommandSource.REPLAY, timestamp=observation.timestamp)
            except ContractError as error:
                console.print(f"  [red]t={seconds:.2f} s: {error}[/red]")
        for event in runtime.events[shown:]:
            text = event.command.text if event.command is not None else ""
            console.print(f"  t={event.timestamp:6.2f} s  {event.kind:10s} {text}  [dim]{event.detail}[/dim]")
        shown = len(runtime.events)
        if log is not None:
            log(observation, step, said)
        if realtime:
            time.sleep(max(0.0, period - (time.perf_counter() - last_tick)))
            last_tick = time.perf_counter()

    if args.interactive:
        console.print("type a correction and press Enter (stop, resume, move a bit left, no, open the drawer first)")

        def read_console() -> None:
            for line in sys.stdin:
                if line.strip():
                    try:
                        runtime.correct(line.strip(), source=CommandSource.HUMAN_LIVE)
                    except ContractError as error:
                        console.print(f"  [red]{error}[/red]")

        threading.Thread(target=read_console, daemon=True).start()
    if log is not None:
        log.start_episode()
    try:
        episode = run_hierarchy_episode(
            env, runtime, task, seed=args.seed, video_path=args.video, on_tick=on_tick, max_steps=args.max_steps
        )
    finally:
        env.close()
    result = episode.result
    if log is not None:
        index = log.end_episode(result)
        log.close()
        console.print(f"logged as episode {index} of {args.log}")
    verdict = "[green]success[/green]" if result.success else f"[red]failure[/red]: {result.reason}"
    console.print(f"{verdict} after {result.steps} steps ({result.sim_time:.1f} s simulated, {result.wall_time:.1f} s)")
    for tier, summary in episode.timings.items():
        if summary["calls"]:
            console.print(
                f"  {tier:8s} {summary['calls']:5d} calls  "
                f"p50 {summary['p50_ms']:.2f} ms  p99 {summary['p99_ms']:.2f} ms"
            )
    if "video" in result.extra:
        console.print(f"video: {result.extra['video']}")
    return 0 if result.success else 1
