"""A loaded trace's collectives, matched: the peers of one span, ranks in order.

The views ask, for the span under the cursor, which spans of the other ranks
are the same collective: those with the same ``(group, seq)``
(``reimpl/_collectives.py``) in another process. One index per trace, built
on first use from the collective rows only.
"""

from __future__ import annotations

import weakref

import numpy as np

from tracer.file.trace import Trace

_index: weakref.WeakKeyDictionary[Trace, dict[tuple[str, int], list[int]]] = (
    weakref.WeakKeyDictionary()
)


def rank_of_part(trace: Trace) -> dict[int, int]:
    """part -> rank, for the processes that are ranks."""
    return {
        p.part: p.role_index
        for p in trace.processes
        if p.role == "rank" and p.role_index is not None
    }


def _points(trace: Trace) -> dict[tuple[str, int], list[int]]:
    found = _index.get(trace)
    if found is None:
        codes = [i for i, s in enumerate(trace.strings) if str(s).startswith("collective.")]
        rows = np.flatnonzero(np.isin(trace.kind, codes))
        found = {}
        groups, seqs = trace.attr_values(rows, "group"), trace.attr_values(rows, "seq")
        for row, group, seq in zip(rows.tolist(), groups.tolist(), seqs.tolist()):
            if isinstance(group, str) and isinstance(seq, int):
                found.setdefault((group, seq), []).append(row)
        _index[trace] = found
    return found


def peers(trace: Trace, row: int) -> list[int]:
    """The spans of the collective ``row`` belongs to, on every rank (``row``
    included), in rank order; ``[]`` when ``row`` is not a numbered collective."""
    attrs = trace.attrs(row)
    group, seq = attrs.get("group"), attrs.get("seq")
    if not isinstance(group, str) or not isinstance(seq, int):
        return []
    ranks = rank_of_part(trace)
    rows = _points(trace).get((group, seq), [])
    return sorted(rows, key=lambda r: (ranks.get(int(trace.part[r]), 1 << 30), r))
