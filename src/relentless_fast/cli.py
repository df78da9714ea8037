"""The ``relentless-fast`` command line.

Each area registers its own subcommands: a module listed in ``COMMAND_MODULES`` exposes
``register(subparsers)`` which adds parsers whose ``func`` attribute takes the parsed
``argparse.Namespace`` and returns the process exit code. Modules are imported only when the
command line is built, so ``relentless-fast --help`` never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES: tuple[str, ...] = (
    "relentless_fast.demo",
    "relentless_fast.context.cli",
    "relentless_fast.training.cli",
    "relentless_fast.serving.cli",
    "relentless_fast.feeds.cli",
    "relentless_fast.outputs.cli",
    "relentless_fast.engine.cli",
    "relentless_fast.monitor.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every area's subcommands."""
    parser = argparse.ArgumentParser(
        prog="relentless-fast",
        description="Low-latency engine: market ticks plus daily context in, 64-byte signals out.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def _version() -> str:
    from relentless_fast import __version__

    return f"relentless-fast {__version__}"


if __name__ == "__main__":
    sys.exit(main())
