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
    if ns.diff is not None:
        load_reporting(ns.diff)
    viewer = find_viewer()
    if viewer is None:
        print(
            "torchscope view: the TUI is not installed (pip install torchscope).", file=sys.stderr
        )
        return 2
    if ns.diff is None:
        return int(viewer(ns.file) or 0)
    kinds = None if ns.kinds is None else [k.strip() for k in ns.kinds.split(",") if k.strip()]
    return int(viewer(ns.file, diff=ns.diff, kinds=kinds) or 0)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``view``."""
    p = sub.add_parser("view", help="explore a trace in the terminal UI")
    p.add_argument("file")
    p.add_argument("--diff", metavar="B", help="compare FILE (A) with trace B in the Diff view")
    p.add_argument(
        "--kinds", metavar="PATTERNS", help="--diff: compare only these kinds (see torchscope diff)"
    )
    p.set_defaults(func=run)
