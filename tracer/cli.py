"""The ``torchscope`` command: one entry point, one subcommand per job
(each in its own module under ``tracer/commands/``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tracer.commands import command_modules
from tracer.file.errors import TraceError, one_line


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="torchscope",
        description="Watch what PyTorch does inside a training step, and find its bugs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torchscope`` command."""
    ns = build_parser().parse_args(argv)
    try:
        return int(ns.func(ns) or 0)
    except TraceError as exc:
        print(one_line(f"torchscope: {exc}"), file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
