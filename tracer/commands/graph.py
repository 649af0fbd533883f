"""``torchscope graph``: one kind of Graphviz graph of a trace."""

from __future__ import annotations

import argparse
import os
import sys

from tracer import progress
from tracer.commands.reporting import load_reporting

ORDER = 80  # place in --help


def run(ns: argparse.Namespace) -> int:
    """Draws one kind of graph of the trace with Graphviz."""
    from tracer import graphs
    from tracer.graphs.select import parse_duration

    try:
        min_ns = parse_duration(ns.min_time) if ns.min_time else 0
    except ValueError as exc:
        print(f"torchscope graph: --min-time: {exc}", file=sys.stderr)
        return 2
    if ns.cluster and ns.kind != "calls":
        print("torchscope graph: --cluster applies to --kind calls only", file=sys.stderr)
        return 2
    output = ns.output or f"{os.path.splitext(ns.file)[0]}-{ns.kind}.svg"
    trace = load_reporting(ns.file)
    with progress.shown(), progress.task(f"building the {ns.kind} graph"):
        graph = graphs.build(
            trace,
            ns.kind,
            step=ns.step,
            thread=ns.thread,
            process=ns.process,
            top=ns.top,
            min_time_ns=min_ns,
            cluster=ns.cluster,
            include_imports=ns.include_imports,
        )
    with progress.shown(), progress.task(f"drawing {os.path.basename(output)} with dot"):
        result = graphs.draw(graph, output)
    for warning in result.warnings:
        print(f"dot: {warning}", file=sys.stderr)
    note = graph.graph.get("note", "")
    print(f"wrote {output}: {graph.number_of_nodes()} nodes" + (f" ({note})" if note else ""))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``graph``."""
    from tracer.graphs import KINDS

    p = sub.add_parser("graph", help="draw a Graphviz graph: " + ", ".join(KINDS))
    p.add_argument("file")
    p.add_argument("--kind", choices=KINDS, default="calls", help="which graph (default calls)")
    p.add_argument("-o", "--output", help="svg, png, pdf or dot (default: FILE-KIND.svg)")
    p.add_argument("--step", type=int, help="only training step N (every rank's step N)")
    p.add_argument("--thread", help="only this thread (name, label, tid or device)")
    p.add_argument("--process", help="only this process (pid, role such as 'rank 1', or main)")
    p.add_argument("--top", type=int, help="keep the N heaviest nodes (-1: all)")
    p.add_argument("--min-time", help="drop nodes under this time (2ms, 150us; bare: ms)")
    p.add_argument(
        "--include-imports",
        action="store_true",
        help="calls graph: draw imports and numba compilations too (they stand aside)",
    )
    p.add_argument(
        "--cluster",
        choices=["thread", "device", "process", "none"],
        help="calls graph: group nodes by thread (default), device, process or not at all",
    )
    p.set_defaults(func=run)
