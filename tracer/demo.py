"""``torchscope demo``: record the default sample, then show it.

In a terminal it opens the TUI on the new trace; without one (CI, a pipe) it
prints the summary and writes the exports next to the trace instead.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from importlib.metadata import entry_points

from tracer.analyze.summary import render_text, summarize
from tracer.export import chrome as export_chrome
from tracer.file.trace import Trace, load
from tracer.recording.recorder import Recorder


def find_viewer() -> Callable[[str], int] | None:
    """The interactive viewer, found through the ``torchscope.viewers`` entry point.

    ``tracer`` never imports the UI (DESIGN.md); the UI package registers
    itself in pyproject.toml, so the command can open it without knowing it.
    """
    for entry in entry_points(group="torchscope.viewers"):
        try:
            return entry.load()
        except ImportError as exc:
            print(f"torchscope: viewer {entry.name} unavailable ({exc})", file=sys.stderr)
    return None


def record_demo(path: str, steps: int | None = None) -> str:
    """Runs ``samples.train_step`` under the recorder into ``path``."""
    from samples import train_step

    if os.path.exists(path):
        os.remove(path)
    with Recorder(
        path,
        argv=["samples/train_step.py"],
        meta={"target": "reimpl", "command": "torchscope demo"},
    ):
        train_step.main(**({} if steps is None else {"steps": steps}))
    return path


def run_demo(
    out_dir: str = "torchscope-demo", steps: int | None = None, interactive: bool = True
) -> int:
    """Records, then opens the TUI (terminal) or prints and writes files (no terminal)."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "train_step.tsdb")
    started = time.perf_counter()
    record_demo(path, steps)
    trace = load(path)
    print(
        f"recorded {trace.n:,} spans in {time.perf_counter() - started:.1f} s: {path}",
        file=sys.stderr,
    )
    viewer = find_viewer()
    if interactive and viewer is not None and sys.stdin.isatty() and sys.stdout.isatty():
        return viewer(path)
    print(render_text(summarize(trace)))
    print()
    for written in write_graphs(trace, out_dir):
        print(f"wrote {written}")
    chrome = os.path.join(out_dir, "train_step.json")
    export_chrome.export(trace, chrome)
    print(f"wrote {chrome} (open it in https://ui.perfetto.dev)")
    return 0


DEMO_GRAPHS = ("calls", "modules", "optim")


def write_graphs(trace: Trace, out_dir: str) -> list[str]:
    """The demo's graphs as SVG; a missing ``dot`` is reported, not fatal."""
    from tracer import graphs

    written = []
    for kind in DEMO_GRAPHS:
        path = os.path.join(out_dir, f"train_step-{kind}.svg")
        try:
            graphs.draw(graphs.build(trace, kind), path)
        except Exception as exc:  # a picture is a bonus: the summary is already out
            print(f"torchscope demo: could not draw the {kind} graph ({exc})", file=sys.stderr)
            continue
        written.append(path)
    return written
