"""``torchscope record``: runs a program under the recorder."""

from __future__ import annotations

import argparse
import os
import sys

ORDER = 30  # place in --help


def default_output(target: str, module: bool) -> str:
    """train.py -> train.tsdb; -m pkg.train -> pkg_train.tsdb."""
    stem = target if module else os.path.splitext(os.path.basename(target))[0]
    return f"{(stem or 'trace').replace('.', '_')}.tsdb"


def run(ns: argparse.Namespace) -> int:
    """Runs a program under the recorder."""
    from tracer.recording.runner import run_under_recorder

    if ns.module:
        target, args = ns.module[0], ns.module[1:] + ns.args
    elif ns.args:
        target, args = ns.args[0], ns.args[1:]
    else:
        print("torchscope record: give a script (record train.py) or -m module", file=sys.stderr)
        return 2
    output = ns.output or default_output(target, bool(ns.module))
    return run_under_recorder(
        target,
        args,
        module=bool(ns.module),
        output=output,
        flush_interval=ns.flush_interval,
        deep=ns.deep,
        depth=ns.depth,
        backward_spans=not ns.no_backward_spans,
        append=ns.append,
        check=ns.check,
        imports=not ns.no_imports,
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Declares ``record``."""
    p = sub.add_parser("record", help="run a script (or -m module) under the recorder")
    p.add_argument("-o", "--output", help="trace file to write (default: SCRIPT.tsdb)")
    p.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        help="run a module as __main__, like python -m (what follows goes to it)",
    )
    p.add_argument(
        "--flush-interval",
        type=float,
        default=1.0,
        help="seconds between flushes to disk (default 1)",
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="also record every Python call (viztracer) beneath the spans",
    )
    p.add_argument("--depth", type=int, default=40, help="--deep: deepest call stack kept")
    p.add_argument(
        "--no-imports",
        action="store_true",
        help="do not record the program's imports (they stand aside in the views anyway)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="run `torchscope check` on the trace when the program ends",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="add this run to an existing trace instead of replacing it",
    )
    p.add_argument(
        "--no-backward-spans",
        action="store_true",
        help="skip the per-module backward spans (one autograd hook per module boundary, "
        "most of the recording cost of models with many small layers)",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, help="script and its arguments")
    p.set_defaults(func=run)
