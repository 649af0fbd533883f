"""``torchscope export``: Chrome/Perfetto JSON or JSON lines."""

from __future__ import annotations

import argparse
import os

from tracer import progress
from tracer.commands.reporting import load_reporting

ORDER = 70  # place in --help


def run(ns: argparse.Namespace) -> int:
    """Writes the trace in another format (Chrome/Perfetto JSON, JSON lines)."""
    from tracer.export import chrome as export_chrome
    from tracer.export import jsonl as export_jsonl

    module, ext = (export_jsonl, ".jsonl") if ns.format == "jsonl" else (export_chrome, ".json")
    output = ns.output or os.path.splitext(ns.file)[0] + ext
    trace = load_reporting(ns.file)
    with progress.shown():
        count = module.export(trace, output)
    if ns.format == "jsonl":
        print(f"wrote {count:,} spans to {output} (one JSON object per line)")
    else:
        print(f"wrote {count:,} events to {output} (open it in https://ui.perfetto.dev)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``export``."""
    p = sub.add_parser("export", help="write Chrome/Perfetto JSON or JSON lines")
    p.add_argument("file")
    p.add_argument(
        "--format",
        choices=["chrome", "jsonl"],
        default="chrome",
        help="chrome: Perfetto/chrome://tracing JSON with flow arrows; jsonl: one span per line",
    )
    p.add_argument("-o", "--output", help="output file (default: FILE.json / FILE.jsonl)")
    p.set_defaults(func=run)
