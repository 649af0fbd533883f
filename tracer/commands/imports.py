"""``torchscope imports``: what ``import MODULE`` does, in a fresh interpreter."""

from __future__ import annotations

import argparse
import os

from tracer import progress

ORDER = 40  # place in --help


def run(ns: argparse.Namespace) -> int:
    """Records what importing a module does, in a fresh interpreter."""
    from tracer.recording.imports import render_imports, run_imports

    output = ns.output or f"imports_{ns.module.replace('.', '_')}.tsdb"
    what = f"recording import {ns.module}" + (" with every Python call (--deep)" if ns.deep else "")
    with progress.shown(), progress.task(what):
        code = run_imports(ns.module, output, deep=ns.deep, depth=ns.depth)
    if not os.path.exists(output):
        return code
    with progress.shown(), progress.task("summarising the imports"):
        report = render_imports(output, top=ns.top)
    print(report)
    return code


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``imports``."""
    p = sub.add_parser("imports", help="record what `import MODULE` does (default torch)")
    p.add_argument("module", nargs="?", default="torch")
    p.add_argument("-o", "--output", help="trace file (default: imports_MODULE.tsdb)")
    p.add_argument(
        "--deep",
        action="store_true",
        help="also record every Python call during the import (viztracer)",
    )
    p.add_argument("--depth", type=int, default=40, help="--deep: deepest call stack kept")
    p.add_argument("--top", type=int, default=15, help="rows in the top lists")
    p.set_defaults(func=run)
