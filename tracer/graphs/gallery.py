"""Regenerates the committed pictures in ``docs/graphs/`` (``docs/graphs.md`` shows them).

    python -m tracer.graphs.gallery [--out docs/graphs] [--only calls,imports]

The training pictures (calls, modules, optim) come from the real default
sample, ``samples/train_step.py``, the DataParallel ones from the DeOldify
sample, ``samples/dataparallel_hooks.py``, both run on reimpl, the
SyncBatchNorm one from ``torchscope record -m samples.syncbn`` (two gloo
ranks), and the import graph from ``torchscope imports torch``. A sample that
cannot run is replaced by the synthesized trace of ``tracer.graphs.synth``,
and the picture's title says so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence

from tracer.file.trace import Trace, load
from tracer.graphs import build, draw, synth
from tracer.recording.recorder import Recorder

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "graphs")


def record_training(path: str) -> str:
    """The default sample, two steps and one SWA step, recorded on reimpl."""
    from samples import train_step

    if os.path.exists(path):
        os.remove(path)
    with Recorder(path, argv=["samples/train_step.py"], meta={"target": "reimpl"}):
        train_step.main(steps=2, swa_steps=1)
    return path


def record_deoldify(path: str) -> str:
    """``samples/dataparallel_hooks.py --variant buggy``; synthesized if it cannot run."""
    try:
        from samples import dataparallel_hooks
    except ImportError:
        return synth.record_dataparallel(path, steps=2)
    if os.path.exists(path):
        os.remove(path)
    with Recorder(path, argv=["samples/dataparallel_hooks.py"], meta={"target": "reimpl"}):
        try:
            dataparallel_hooks.run("buggy")
        except RuntimeError:
            pass  # the bug being drawn
    return path


def record_syncbn(path: str, world_size: int = 2, steps: int = 2) -> str:
    """``torchscope record -m samples.syncbn`` (gloo ranks); synthesized if it cannot run."""
    args = [sys.executable, "-m", "tracer.cli", "record", "-o", path, "-m", "samples.syncbn"]
    args += ["--world-size", str(world_size), "--steps", str(steps), "--backend", "gloo"]
    if os.path.exists(path):
        os.remove(path)
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        done = None
    if done is None or done.returncode != 0:
        print(f"syncbn sample failed; synthesized instead: {done and done.stderr}", file=sys.stderr)
        return synth.record_syncbn(path, world_size=world_size, steps=steps)
    return path


def record_imports(path: str) -> str:
    """``import torch`` in a fresh interpreter; the synthesized one if that fails."""
    from tracer.recording.imports import run_imports

    with contextlib.redirect_stdout(io.StringIO()):
        code = run_imports("torch", path)
    return path if code == 0 else synth.record_imports(path, modules=400)


# picture name -> (graph kind, trace recorder, extra build options)
PICTURES: dict[str, tuple[str, str, dict]] = {
    "calls": ("calls", "training", {"top": 30}),
    "modules": ("modules", "training", {}),
    "optim": ("optim", "training", {"top": 8}),
    "modules-dataparallel": ("modules", "dataparallel", {}),
    "dataparallel": ("dataparallel", "dataparallel", {}),
    "syncbn": ("syncbn", "syncbn", {"step": 1}),
    "imports": ("imports", "imports", {"top": 25}),
}

RECORDERS: dict[str, Callable[[str], str]] = {
    "training": record_training,
    "dataparallel": record_deoldify,
    "syncbn": record_syncbn,
    "imports": record_imports,
}
SOURCES = {
    "training": "samples/train_step.py on reimpl",
    "dataparallel": "samples/dataparallel_hooks.py --variant buggy",
    "syncbn": "torchscope record -m samples.syncbn, 2 gloo ranks",
    "imports": "torchscope imports torch",
}


def make(out_dir: str, only: Sequence[str] | None = None) -> list[str]:
    """Records what the chosen pictures need and draws them; returns the written paths."""
    os.makedirs(out_dir, exist_ok=True)
    names = [n for n in PICTURES if not only or n in only]
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        traces: dict[str, Trace] = {}
        for name in names:
            kind, source, options = PICTURES[name]
            if source not in traces:
                traces[source] = load(RECORDERS[source](os.path.join(tmp, f"{source}.tsdb")))
            graph = build(traces[source], kind, **options)
            if traces[source].meta.get("synthesized"):
                graph.graph["title"] += " (synthesized trace, see tracer/graphs/synth.py)"
            else:
                graph.graph["title"] += f" ({SOURCES[source]})"
            result = draw(graph, os.path.join(out_dir, f"{name}.svg"))
            for warning in result.warnings:
                print(f"{name}: dot: {warning}", file=sys.stderr)
            written.append(result.path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.normpath(DOCS), help="folder for the SVGs")
    parser.add_argument("--only", help="comma-separated picture names: " + ", ".join(PICTURES))
    ns = parser.parse_args(argv)
    for path in make(ns.out, ns.only.split(",") if ns.only else None):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
