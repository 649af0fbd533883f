"""JSON lines export: one span per line, for jq, pandas and grep.

Each line is a self-contained object -- ``id``, ``parent``, ``kind``,
``name``, ``func``, ``pid``, ``tid``, ``thread``, ``device``, ``start_ns``,
``end_ns``, ``attrs`` -- in start order, parents before children. ``id`` is
the span's row in the loaded trace, so ``parent`` refers to an earlier line
(or is null for a root); times are the recorder's nanoseconds, unconverted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from tracer import progress
from tracer.file.output import atomic_output
from tracer.file.trace import Trace


def rows(trace: Trace) -> Iterator[dict[str, Any]]:
    """One dict per span, in start order."""
    strings = trace.strings
    pid, tid = trace.pid, trace.tid
    threads = trace.threads
    for row in trace.start_order.tolist():
        parent = int(trace.parent[row])
        thread = int(trace.thread[row])
        info = threads[thread] if thread >= 0 else None
        yield {
            "id": row,
            "parent": parent if parent >= 0 else None,
            "kind": str(strings[trace.kind[row]]),
            "name": str(strings[trace.name[row]]),
            "func": str(strings[trace.func[row]]),
            "pid": int(pid[row]),
            "tid": int(tid[row]),
            "thread": info.name if info else None,
            "device": info.device if info else None,
            "start_ns": int(trace.start_ns[row]),
            "end_ns": int(trace.end_ns[row]),
            "attrs": trace.attrs(row),
        }


def write(trace: Trace, out: TextIO) -> int:
    """Writes every span as one JSON line; returns the number of lines."""
    count = 0
    for item in progress.track(rows(trace), "writing JSON lines", total=trace.n):
        out.write(json.dumps(item, default=str, separators=(",", ":")))
        out.write("\n")
        count += 1
    return count


def export(trace: Trace, path: str) -> int:
    """Writes the JSON lines file at ``path``."""
    with atomic_output(path) as fh:
        return write(trace, fh)


__all__ = ["export", "rows", "write"]
