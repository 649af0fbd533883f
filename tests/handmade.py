"""Traces with hand-picked times, written record by record through the recorder's sink.

Analysis tests need numbers a person can check on paper (a self time of
210 ns, not "whatever ``self_times`` returned"). ``write`` takes a tree of
``Span`` objects, attaches the real recorder with ``tracer.record`` and feeds
its sink the record tuples of ``reimpl/_trace.py`` directly: ids in start
order, records in close order, as instrumented code would emit them, but
with fixed ``start_ns``/``end_ns``.

    trace = handmade.write(path, [Span("step", "step", 0, 1000, [...])])
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import tracer
from reimpl import _trace


@dataclass
class Span:
    """One span to write: kind, name, start and end in ns, children, optional thread."""

    kind: str
    name: str
    start: int
    end: int
    children: list[Span] = field(default_factory=list)
    thread: tuple[int, str, str | None] | None = None  # (tid, name, device); None: this one
    attrs: dict[str, Any] | None = None


def _walk(span: Span, depth: int, out: list[tuple[Span, int]]) -> None:
    out.append((span, depth))
    for child in span.children:
        _walk(child, depth + 1, out)


def write(path: str, roots: list[Span]) -> tracer.Trace:
    """Records ``roots`` (and everything under them) into ``path`` and loads the trace.

    Spans without a thread of their own are on this thread, named "main". A
    child on another thread than its parent is linked to it, as a replica is
    to its ``parallel_apply``.
    """
    flat: list[tuple[Span, int]] = []
    for root in roots:
        _walk(root, 0, flat)
    parent_of = {id(c): s for s, _ in flat for c in s.children}
    here = threading.get_ident()
    with tracer.record(path):
        sink = _trace.sink
        assert sink is not None
        # named here, not through _trace.set_thread_info: whatever an earlier test
        # (or a session fixture) called this thread, the trace says "main"
        sink.thread_info(here, "main", None)
        for span, _ in flat:
            if span.thread is not None:
                sink.thread_info(*span.thread)
        ids = {}
        for span, _ in sorted(flat, key=lambda sd: sd[0].start):  # stable: preorder on ties
            ids[id(span)] = sink.next_id()
        for span, _ in sorted(flat, key=lambda sd: (sd[0].end, -sd[1])):  # close order
            tid = span.thread[0] if span.thread else here
            parent = parent_of.get(id(span))
            parent_tid = None if parent is None else (parent.thread[0] if parent.thread else here)
            link = ids[id(parent)] if parent is not None and parent_tid != tid else 0
            sink.append(
                (ids[id(span)], link, tid, span.start, span.end, span.kind, span.name, "handmade",
                 span.attrs)
            )  # fmt: skip
    return tracer.load(path)


def rows(trace: tracer.Trace, name: str) -> list[int]:
    """The rows named ``name``, in start order."""
    return [int(r) for r in trace.start_order if trace.name_of(int(r)) == name]


WORKER = (4242, "worker 0", None)


def two_steps(scale: int = 1) -> list[Span]:
    """Two training steps on this thread and one span on another (times in ns,
    multiplied by ``scale``).

    ::

        step      0-1000   net 100-700 (fc 150-350, fc 360-650)   SGD 750-950
        step   1000-1900   net 1100-1500 (fc 1150-1450)           SGD 1600-1700
        data.next 1950-2100 on thread "worker 0"

    Self times by hand: step 1000-600-200 = 200 and 900-400-100 = 400; net
    600-200-290 = 110 and 400-300 = 100; every fc, SGD and data.next its
    own duration. Per (kind, name): step 2 spans, 1900 inclusive, 600 self;
    net 2, 1000, 210; net.fc 3, 790, 790; SGD 2, 300, 300; data.next 1, 150, 150.
    """

    def fc(start: int, end: int) -> Span:
        return Span("module.forward", "net.fc", start, end)

    roots = [
        Span(
            "step",
            "step",
            0,
            1000,
            [
                Span("module.forward", "net", 100, 700, [fc(150, 350), fc(360, 650)]),
                Span("optim.step", "SGD", 750, 950),
            ],
        ),
        Span(
            "step",
            "step",
            1000,
            1900,
            [
                Span("module.forward", "net", 1100, 1500, [fc(1150, 1450)]),
                Span("optim.step", "SGD", 1600, 1700),
            ],
        ),
        Span("data.next", "__next__", 1950, 2100, thread=WORKER),
    ]
    if scale != 1:
        flat: list[tuple[Span, int]] = []
        for root in roots:
            _walk(root, 0, flat)
        for span, _ in flat:
            span.start, span.end = span.start * scale, span.end * scale
    return roots
