"""``torchscope diff``: two traces aligned step by step, for people and for CI."""

from __future__ import annotations

import argparse
import sys

from tracer import progress
from tracer.commands.reporting import load_reporting
from tracer.file.errors import one_line

ORDER = 55  # place in --help


def run(ns: argparse.Namespace) -> int:
    """Aligns B against A and prints what differs; exit status 1 when the
    structure differs (spans missing, extra or reordered), 0 when only times do."""
    from tracer.analyze.diff import diff
    from tracer.analyze.diff_report import render_json, render_text, report

    a = load_reporting(ns.a)
    b = load_reporting(ns.b)
    kinds = None if ns.kinds is None else [k.strip() for k in ns.kinds.split(",") if k.strip()]
    try:
        with progress.shown(), progress.task("aligning the traces"):
            data = report(diff(a, b, kinds), limit=ns.limit)
    except ValueError as exc:  # --kinds that match nothing
        print(one_line(f"torchscope diff: --kinds: {exc}"), file=sys.stderr)
        return 2
    print(render_json(data) if ns.json else render_text(data))
    return 1 if data["structural"] else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``diff``."""
    p = sub.add_parser(
        "diff",
        help="compare two traces step by step: spans missing, extra, reordered; time ratios",
        description="Aligns trace B against trace A by step, lane, module path, kind and name "
        "(never by ids or times). Exit status: 0 same structure, 1 structure differs, "
        "2 bad input.",
    )
    p.add_argument("a", metavar="A", help="the reference trace")
    p.add_argument("b", metavar="B", help="the trace compared with it")
    p.add_argument("--json", action="store_true", help="one JSON object (stable schema)")
    p.add_argument(
        "--kinds",
        metavar="PATTERNS",
        help="compare only these kinds (comma-separated, * allowed; 'public': the kinds "
        "both the reimpl and the torch target record); the others are transparent",
    )
    p.add_argument("--limit", type=int, default=1000, help="changes listed at most (default 1000)")
    p.set_defaults(func=run)
