"""Entry point of the ``tiers`` command.

Each verb is a module of this package exposing ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Verb modules import their heavy dependencies (torch, mujoco, rclpy) inside
``run``, so ``tiers --help`` stays instant. To add a verb, write ``tiers/cli/<verb>.py`` and list it
in ``VERBS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from tiers.core.errors import TiersError

VERBS: tuple[str, ...] = (
    "info",
    "demo",
    "eval",
    "bench",
    "record",
    "dataset",
    "train",
    "improve",
    "export",
    "run",
    "ros",
)


def _verb_module(verb: str) -> ModuleType:
    return importlib.import_module(f"tiers.cli.{verb}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiers",
        description="Hierarchical robot controllers: high-tier planners, mid-tier trajectories, "
        "low-tier diffusion and flow policies, from demonstrations to real arms.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        module = _verb_module(verb)
        sub = verbs.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the verb; a :class:`TiersError` prints its message, not a traceback."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except TiersError as error:
        print(f"tiers {args.verb}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tiers {args.verb}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
