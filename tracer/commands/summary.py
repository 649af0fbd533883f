"""``torchscope summary``: totals per kind, top spans, processes, threads."""

from __future__ import annotations

import argparse

from tracer.commands.reporting import load_reporting

ORDER = 60  # place in --help


def run(ns: argparse.Namespace) -> int:
    """Prints totals per kind, top spans, processes and threads."""
    from tracer.analyze.summary import render_json, render_text, summarize

    data = summarize(load_reporting(ns.file), top=ns.top, include_imports=ns.include_imports)
    print(render_json(data) if ns.json else render_text(data))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``summary``."""
    p = sub.add_parser("summary", help="totals per kind, top spans, processes, threads")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--top", type=int, default=15, help="rows in the top lists")
    p.add_argument(
        "--include-imports",
        action="store_true",
        help="count imports and numba compilations in the lists (they stand aside by default)",
    )
    p.set_defaults(func=run)
