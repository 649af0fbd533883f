"""The ``torchscope`` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from tracer.file.errors import TraceError, one_line


def _default_output(target: str, module: bool) -> str:
    """train.py -> train.tsdb; -m pkg.train -> pkg_train.tsdb."""
    stem = target if module else os.path.splitext(os.path.basename(target))[0]
    return f"{(stem or 'trace').replace('.', '_')}.tsdb"


def load_reporting(path: str):  # -> Trace; tracer.file.trace imports numba: keep it lazy
    """Loads a trace and prints its warnings (blocks left out, a recovered flush),
    so every command says when what it shows is not the whole recording."""
    from tracer.file.trace import load

    trace = load(path)
    for warning in trace.warnings:
        print(one_line(f"torchscope: warning: {path}: {warning}"), file=sys.stderr)
    return trace


def cmd_record(ns: argparse.Namespace) -> int:
    """Runs a program under the recorder."""
    from tracer.recording.runner import run_under_recorder

    if ns.module:
        target, args = ns.module[0], ns.module[1:] + ns.args
    elif ns.args:
        target, args = ns.args[0], ns.args[1:]
    else:
        print("torchscope record: give a script (record train.py) or -m module", file=sys.stderr)
        return 2
    output = ns.output or _default_output(target, bool(ns.module))
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


def cmd_summary(ns: argparse.Namespace) -> int:
    """Prints totals per kind, top spans, processes and threads."""
    from tracer.analyze.summary import render_json, render_text, summarize

    data = summarize(load_reporting(ns.file), top=ns.top, include_imports=ns.include_imports)
    print(render_json(data) if ns.json else render_text(data))
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    """Writes the trace in another format (Chrome/Perfetto JSON, JSON lines)."""
    from tracer.export import chrome as export_chrome
    from tracer.export import jsonl as export_jsonl

    module, ext = (export_jsonl, ".jsonl") if ns.format == "jsonl" else (export_chrome, ".json")
    output = ns.output or os.path.splitext(ns.file)[0] + ext
    count = module.export(load_reporting(ns.file), output)
    if ns.format == "jsonl":
        print(f"wrote {count:,} spans to {output} (one JSON object per line)")
    else:
        print(f"wrote {count:,} events to {output} (open it in https://ui.perfetto.dev)")
    return 0


def cmd_import_chrome(ns: argparse.Namespace) -> int:
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


def cmd_graph(ns: argparse.Namespace) -> int:
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
    graph = graphs.build(
        load_reporting(ns.file),
        ns.kind,
        step=ns.step,
        thread=ns.thread,
        process=ns.process,
        top=ns.top,
        min_time_ns=min_ns,
        cluster=ns.cluster,
        include_imports=ns.include_imports,
    )
    result = graphs.draw(graph, output)
    for warning in result.warnings:
        print(f"dot: {warning}", file=sys.stderr)
    note = graph.graph.get("note", "")
    print(f"wrote {output}: {graph.number_of_nodes()} nodes" + (f" ({note})" if note else ""))
    return 0


def cmd_imports(ns: argparse.Namespace) -> int:
    """Records what importing a module does, in a fresh interpreter."""
    from tracer.recording.imports import render_imports, run_imports

    output = ns.output or f"imports_{ns.module.replace('.', '_')}.tsdb"
    code = run_imports(ns.module, output, deep=ns.deep, depth=ns.depth)
    if os.path.exists(output):
        print(render_imports(output, top=ns.top))
    return code


def cmd_check(ns: argparse.Namespace) -> int:
    """Runs the detectors, stores their findings in the trace, prints them;
    exit status 1 when one reaches --fail-on (for CI)."""
    from tracer.analyze.check.report import check, failing, render_json, render_text

    trace = load_reporting(ns.file)
    try:
        findings, not_stored = check(trace, ns.rule)
    except ValueError as exc:  # an unknown rule id
        print(f"torchscope check: {exc}", file=sys.stderr)
        return 2
    if not_stored:
        print(one_line(f"torchscope: warning: findings not stored: {not_stored}"), file=sys.stderr)
    print(render_json(trace, findings) if ns.json else render_text(trace, findings))
    return 1 if failing(findings, ns.fail_on) else 0


def cmd_view(ns: argparse.Namespace) -> int:
    """Opens a trace in the interactive viewer (the TUI)."""
    from tracer.demo import find_viewer

    load_reporting(ns.file)  # a bad file fails here, with the clear error, before the UI starts
    viewer = find_viewer()
    if viewer is None:
        print(
            "torchscope view: the TUI is not installed (pip install torchscope).", file=sys.stderr
        )
        return 2
    return int(viewer(ns.file) or 0)


def cmd_demo(ns: argparse.Namespace) -> int:
    """Records the default sample, then shows it."""
    from tracer.demo import run_demo

    return run_demo(out_dir=ns.out, steps=ns.steps, interactive=ns.interactive)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="torchscope",
        description="Watch what PyTorch does inside a training step, and find its bugs.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="record the default sample and show it")
    p.add_argument("--out", default="torchscope-demo", help="folder for the trace and graphs")
    p.add_argument("--steps", type=int, default=None, help="training steps to record")
    p.add_argument(
        "--no-tui",
        dest="interactive",
        action="store_false",
        help="print the summary even in a terminal",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("view", help="explore a trace in the terminal UI")
    p.add_argument("file")
    p.set_defaults(func=cmd_view)

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
    p.set_defaults(func=cmd_record)

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
    p.set_defaults(func=cmd_imports)

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
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("summary", help="totals per kind, top spans, processes, threads")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--top", type=int, default=15, help="rows in the top lists")
    p.add_argument(
        "--include-imports",
        action="store_true",
        help="count imports and numba compilations in the lists (they stand aside by default)",
    )
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("export", help="write Chrome/Perfetto JSON or JSON lines")
    p.add_argument("file")
    p.add_argument(
        "--format",
        choices=["chrome", "jsonl"],
        default="chrome",
        help="chrome: Perfetto/chrome://tracing JSON with flow arrows; jsonl: one span per line",
    )
    p.add_argument("-o", "--output", help="output file (default: FILE.json / FILE.jsonl)")
    p.set_defaults(func=cmd_export)
    _add_graph_parsers(sub)
    return parser


def _add_graph_parsers(sub: argparse._SubParsersAction) -> None:
    """``graph`` and ``import-chrome``."""
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
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("import-chrome", help="turn a Chrome trace JSON into a trace file")
    p.add_argument("file", help="Chrome trace JSON (viztracer, torch.profiler, export)")
    p.add_argument("-o", "--output", help="trace file to write (default: FILE.tsdb)")
    p.set_defaults(func=cmd_import_chrome)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``torchscope`` command."""
    ns = build_parser().parse_args(argv)
    try:
        return int(ns.func(ns) or 0)
    except TraceError as exc:
        print(one_line(f"torchscope: {exc}"), file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
