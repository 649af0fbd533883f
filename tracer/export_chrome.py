"""Chrome Trace Event format export: opens in Perfetto and chrome://tracing.

Spans become complete events (``ph: X``) with the kind as ``cat`` and the
attributes as ``args``; zero-length spans become instants (``ph: i``);
process and thread names go in metadata events (``ph: M``). Timestamps are
microseconds with nanosecond decimals, so nesting survives the conversion.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

from tracer.trace import Trace


def _metadata(trace: Trace) -> Iterator[dict[str, Any]]:
    pid_of = {p.part: p.pid for p in trace.processes}
    for p in trace.processes:
        yield {
            "ph": "M",
            "name": "process_name",
            "pid": p.pid,
            "tid": 0,
            "ts": 0,
            "args": {"name": p.label},
        }
        yield {
            "ph": "M",
            "name": "process_sort_index",
            "pid": p.pid,
            "tid": 0,
            "ts": 0,
            "args": {"sort_index": p.part},
        }
    for t in trace.threads:
        yield {
            "ph": "M",
            "name": "thread_name",
            "pid": pid_of.get(t.part, 0),
            "tid": t.tid,
            "ts": 0,
            "args": {"name": t.label},
        }


def events(trace: Trace, with_args: bool = True) -> Iterator[dict[str, Any]]:
    """Every Chrome event of the trace, metadata first, spans in start order."""
    yield from _metadata(trace)
    strings = trace.strings
    pid, tid = trace.pid, trace.tid
    t0 = int(trace.start_ns.min()) if trace.n else 0
    for row in trace.start_order:
        row = int(row)
        ev: dict[str, Any] = {
            "name": str(strings[trace.name[row]]),
            "cat": str(strings[trace.kind[row]]),
            "pid": int(pid[row]),
            "tid": int(tid[row]),
            "ts": (int(trace.start_ns[row]) - t0) / 1000.0,
        }
        dur = int(trace.dur_ns[row])
        if dur > 0:
            ev["ph"] = "X"
            ev["dur"] = dur / 1000.0
        else:
            ev["ph"] = "i"
            ev["s"] = "t"
        if with_args:
            args = trace.attrs(row)
            args["func"] = str(strings[trace.func[row]])
            ev["args"] = args
        yield ev


def write(trace: Trace, out: TextIO) -> int:
    """Writes the JSON object form ``{"traceEvents": [...]}``; returns the event count."""
    count = 0
    out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
    for ev in events(trace):
        if count:
            out.write(",\n")
        out.write(json.dumps(ev, default=str, separators=(",", ":")))
        count += 1
    out.write("\n]}\n")
    return count


def export(trace: Trace, path: str) -> int:
    """Writes the Chrome JSON file at ``path``."""
    with open(path, "w", encoding="utf-8") as fh:
        return write(trace, fh)


__all__ = ["events", "export", "write"]
