"""``torchscope merge OUT PARTS...``: a distributed run's part files become one trace."""

from __future__ import annotations

import argparse

ORDER = 35  # place in --help: after record


def run(ns: argparse.Namespace) -> int:
    """Merges the part files, prints the report (missing ranks, last collectives)."""
    from tracer.distributed.merge import merge_and_report

    return merge_and_report(ns.output, ns.parts)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``merge``."""
    p = sub.add_parser(
        "merge",
        help="merge the per-host part files of a distributed run into one trace",
        description="Keeps each rank's lanes, shifts every host onto rank 0's clock, "
        "matches collectives across ranks by (group, sequence number) and names the "
        "ranks that are missing or stopped early.",
    )
    p.add_argument("output", help="the merged trace to write")
    p.add_argument("parts", nargs="+", help="part files (one per host)")
    p.set_defaults(func=run)
