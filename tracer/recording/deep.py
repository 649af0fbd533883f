"""``--deep``: every Python call, recorded by viztracer, beneath the semantic spans.

viztracer stamps its events with the same monotonic clock as
``perf_counter_ns`` (microseconds with nanosecond decimals) and names threads
by their native id. Merging is therefore a matter of clocks and order: the
events become records, and the whole stream is renumbered so that ids are in
start order and records in close order again, which is all the reader needs
to nest a ``py.call`` of ``Module._call_impl`` around the ``module.forward``
span it produced, around the ``py.call`` of ``forward``.
"""

from __future__ import annotations

import threading
from typing import Any

FUNC = "viztracer"
_OWN_FRAMES = "tracer/recording/_import_hook.py"  # the hook's own calls are not the program's
DEFAULT_DEPTH = 40
DEFAULT_ENTRIES = 2_000_000


def start_viztracer(max_depth: int = DEFAULT_DEPTH, entries: int = DEFAULT_ENTRIES) -> Any:
    """Starts a viztracer (imported here: it is only needed for --deep)."""
    from viztracer import VizTracer

    viz = VizTracer(
        verbose=0, max_stack_depth=max_depth, tracer_entries=entries, ignore_c_function=True
    )
    viz.start()
    return viz


def viztracer_records(viz: Any) -> tuple[list[tuple], bool]:
    """Stops viztracer and turns its complete events into record tuples.

    Returns the records and whether viztracer's ring buffer overflowed (the
    oldest calls were dropped).
    """
    viz.stop()  # a no-op when already stopped
    viz.parse()
    data = viz.data
    native_to_ident = {t.native_id: t.ident for t in threading.enumerate()}
    records = []
    for ev in data.get("traceEvents", []):
        if ev.get("ph") != "X" or _OWN_FRAMES in ev.get("name", ""):
            continue
        start = round(ev["ts"] * 1000)
        end = start + max(round(ev.get("dur", 0) * 1000), 1)
        tid = native_to_ident.get(ev.get("tid"), ev.get("tid", 0))
        records.append((0, 0, tid, start, end, "py.call", ev["name"], FUNC, None))
    overflow = bool(data.get("viztracer_metadata", {}).get("overflow", False))
    return records, overflow


def merge(records: list[tuple], calls: list[tuple]) -> list[tuple]:
    """One stream: fresh ids in start order, records in close order.

    Thread-name markers (id 0 in ``records``) go first, in their order: in
    deep mode a reused thread id keeps the last name it was given.
    """
    markers = [r for r in records if r[0] == 0]
    spans = [r for r in records if r[0] != 0] + calls
    # Start order: earlier start first; at equal starts the longer span encloses.
    by_start = sorted(range(len(spans)), key=lambda i: (spans[i][3], -spans[i][4]))
    new_id = [0] * len(spans)
    for rank, i in enumerate(by_start, start=1):
        new_id[i] = rank
    # Close order: earlier end first; at equal ends the later start is inner.
    by_end = sorted(range(len(spans)), key=lambda i: (spans[i][4], -new_id[i]))
    id_of_old = {r[0]: new_id[i] for i, r in enumerate(spans) if r[0] != 0}
    out = list(markers)
    for i in by_end:
        r = spans[i]
        link = id_of_old.get(r[1], 0) if r[1] else 0
        out.append((new_id[i], link, *r[2:]))
    return out
