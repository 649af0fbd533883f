"""Names of a trace's lanes (its threads) that no other lane of the process has.

Used by the Chrome export and the TUI's timeline.
"""

from __future__ import annotations

from tracer.file.trace import Trace


def thread_names(trace: Trace) -> dict[int, str]:
    """Thread row -> its label, numbered when the same process met it before:
    each step's replica threads are new threads with the same name, and a
    timeline of five 'replica 0 [sim:0]' lanes says nothing about which is which."""
    seen: dict[tuple[int, str], int] = {}
    out = {}
    for t in trace.threads:
        key = (t.part, t.label)
        seen[key] = seen.get(key, 0) + 1
        out[t.row] = t.label if seen[key] == 1 else f"{t.label} #{seen[key]}"
    return out
