"""Loading a trace the way every command does: warnings printed, one line each."""

from __future__ import annotations

import sys

from tracer import progress
from tracer.file.errors import one_line


def load_reporting(path: str):  # -> Trace; tracer.file.trace imports numba: keep it lazy
    """Loads a trace and prints its warnings (blocks left out, a recovered flush),
    so every command says when what it shows is not the whole recording."""
    from tracer.file.trace import load

    with progress.shown():
        trace = load(path)
    for warning in trace.warnings:
        print(one_line(f"torchscope: warning: {path}: {warning}"), file=sys.stderr)
    return trace
