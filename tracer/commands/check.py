"""``torchscope check``: the detectors, for people and for CI."""

from __future__ import annotations

import argparse
import sys

from tracer import progress
from tracer.commands.reporting import load_reporting
from tracer.file.errors import one_line

ORDER = 50  # place in --help


def run(ns: argparse.Namespace) -> int:
    """Runs the detectors, stores their findings in the trace, prints them;
    exit status 1 when one reaches --fail-on (for CI)."""
    from tracer.analyze.check.report import check, failing, render_json, render_text

    trace = load_reporting(ns.file)
    try:
        with progress.shown():
            findings, not_stored = check(trace, ns.rule)
    except ValueError as exc:  # an unknown rule id
        print(f"torchscope check: {exc}", file=sys.stderr)
        return 2
    if not_stored:
        print(one_line(f"torchscope: warning: findings not stored: {not_stored}"), file=sys.stderr)
    print(render_json(trace, findings) if ns.json else render_text(trace, findings))
    return 1 if failing(findings, ns.fail_on) else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``check``."""
    p = sub.add_parser("check", help="find hook, thread, device and training-loop bugs")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object (stable schema)")
    p.add_argument("--rule", action="append", help="run only this rule (repeatable)")
    p.add_argument(
        "--fail-on",
        choices=["info", "warning", "error", "never"],
        default="error",
        help="exit 1 when a finding of this severity or worse exists (default error)",
    )
    p.set_defaults(func=run)
