"""``torchscope view``: the interactive viewer (the TUI)."""

from __future__ import annotations

import argparse
import sys

from tracer.commands.reporting import load_reporting

ORDER = 20  # place in --help


def run(ns: argparse.Namespace) -> int:
    """Opens a trace in the interactive viewer (the TUI)."""
    from tracer.demo import find_viewer

    load_reporting(ns.file)  # a bad file fails here, with the clear error, before the UI starts
    viewer = find_viewer()
    if viewer is None:
        print(
            "torchscope view: the TUI is not installed (pip install torchscope).", file=sys.stderr
        )
        return 2
    return int(viewer(ns.file) or 0)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``view``."""
    p = sub.add_parser("view", help="explore a trace in the terminal UI")
    p.add_argument("file")
    p.set_defaults(func=run)
