"""The in-memory sink tests attach to ``reimpl._trace``: the Sink protocol, nothing more.

``next_id`` is a builtin (``itertools.count.__next__``) and ``append`` ends in
``list.append``: atomic under the GIL, so replica threads can share one sink.
"""

from __future__ import annotations

from itertools import count


class ListSink:
    """Keeps records, thread names, the process role and snapshots in memory."""

    def __init__(self) -> None:
        self.records: list[tuple] = []
        self.snapshots: list[tuple[str, str, dict]] = []
        self.threads: dict[int, tuple[str, str | None]] = {}
        self.role: tuple[str, int | None] | None = None
        self.next_id = count(1).__next__

    def append(self, record: tuple) -> None:
        """Keeps one record; pair-tuple attrs (hot paths, see reimpl/_trace.py) become dicts."""
        if type(record[8]) is tuple:
            record = (*record[:8], dict(record[8]))
        self.records.append(record)  # list.append: atomic, so replica threads can share

    def thread_info(self, tid: int, name: str, device: str | None) -> None:
        self.threads[tid] = (name, device)

    def process_role(self, role: str, index: int | None) -> None:
        self.role = (role, index)

    def snapshot(self, kind: str, key: str, payload: dict) -> None:
        self.snapshots.append((kind, key, payload))

    def of_kind(self, kind: str) -> list[tuple]:
        """The records of one kind, in close order."""
        return [r for r in self.records if r[5] == kind]

    of = of_kind

    def names(self, kind: str) -> list[str]:
        """The names of the records of one kind, in start (id) order."""
        return [r[6] for r in sorted(self.of_kind(kind))]

    def parents(self) -> dict[int, int | None]:
        """Span id -> parent id, rebuilt as the reader does: ids in start order,
        records in close order (single-threaded records)."""
        close = {r[0]: i for i, r in enumerate(self.records)}
        parent: dict[int, int | None] = {}
        stack: list[int] = []
        for sid in sorted(close):
            while stack and close[stack[-1]] < close[sid]:
                stack.pop()  # that span closed before this one: not an ancestor
            parent[sid] = stack[-1] if stack else None
            stack.append(sid)
        return parent
