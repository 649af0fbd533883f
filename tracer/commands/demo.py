"""``torchscope demo``: records the default sample, then shows it."""

from __future__ import annotations

import argparse

ORDER = 10  # place in --help


def run(ns: argparse.Namespace) -> int:
    """Records the default sample, then shows it."""
    from tracer.demo import run_demo

    return run_demo(out_dir=ns.out, steps=ns.steps, interactive=ns.interactive)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``demo``."""
    p = sub.add_parser("demo", help="record the default sample and show it")
    p.add_argument("--out", default="torchscope-demo", help="folder for the trace and graphs")
    p.add_argument("--steps", type=int, default=None, help="training steps to record")
    p.add_argument(
        "--no-tui",
        dest="interactive",
        action="store_false",
        help="print the summary even in a terminal",
    )
    p.set_defaults(func=run)
