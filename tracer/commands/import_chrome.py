"""``torchscope import-chrome``: a Chrome trace JSON turned into a trace file."""

from __future__ import annotations

import argparse
import os
import sys

ORDER = 90  # place in --help


def run(ns: argparse.Namespace) -> int:
    """Converts a Chrome trace (viztracer, torch.profiler) into a trace file for the TUI."""
    from tracer.export.import_chrome import import_chrome

    output = ns.output or os.path.splitext(ns.file)[0] + ".tsdb"
    result = import_chrome(ns.file, output)
    print(
        f"wrote {result.spans:,} spans ({result.processes} processes, {result.threads} threads) "
        f"to {output}; view it with `torchscope view {output}`"
    )
    if result.skipped:
        skipped = ", ".join(f"{n:,} {what}" for what, n in sorted(result.skipped.items()))
        print(f"skipped events: {skipped}", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``import-chrome``."""
    p = sub.add_parser("import-chrome", help="turn a Chrome trace JSON into a trace file")
    p.add_argument("file", help="Chrome trace JSON (viztracer, torch.profiler, export)")
    p.add_argument("-o", "--output", help="trace file to write (default: FILE.tsdb)")
    p.set_defaults(func=run)
