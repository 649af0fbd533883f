"""The aligned tree of a ``Diff``, for a viewer to walk: lanes, their steps, and
each aligned node's children in time order, with what changed below them.

Everything is indexed once with numpy (children as one sorted array searched
by parent), so a viewer opens a node of a million-span pair in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit

from tracer.analyze.diff import CHANGES, Diff
from tracer.analyze.diff_report import changed_nodes


def _spread_up(parent: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """How many flagged nodes each node holds, itself included; a parent's id is
    always smaller than its child's (parents are numbered first)."""
    out = flag.astype(np.int64)
    for node in range(len(parent) - 1, -1, -1):
        p = parent[node]
        if p >= 0:
            out[p] += out[node]
    return out


spread_up = njit(cache=True, nogil=True)(_spread_up)


@dataclass(frozen=True)
class SegmentInfo:
    """One step of one lane (segment 0: before the first step)."""

    code: int
    lane: str
    lane_id: int
    segment: int
    changes: int


class DiffTree:
    """Navigation over a ``Diff``: segments, children, labels, times."""

    def __init__(self, d: Diff) -> None:
        self.diff = d
        n = d.n_nodes
        self._pos_a = self._positions(d.a.trace, d.row_a)
        self._pos_b = self._positions(d.b.trace, d.row_b)
        self._order = np.argsort(d.node_parent, kind="stable")
        self._sorted_parent = d.node_parent[self._order]
        self.changes_below = spread_up(d.node_parent, d.change > 0) if n else np.zeros(0, int)

    @staticmethod
    def _positions(trace, rows: np.ndarray) -> np.ndarray:
        """Each node's place in its trace's start order (-1: not in that trace)."""
        pos = np.empty(trace.n, dtype=np.int64)
        pos[trace.start_order] = np.arange(trace.n)
        return np.where(rows >= 0, pos[np.maximum(rows, 0)] if trace.n else -1, -1)

    def children(self, parent: int) -> np.ndarray:
        """Nodes under ``parent`` (a node, or a segment code): A's order, with each
        node of B only placed after the aligned node that precedes it in B."""
        lo = np.searchsorted(self._sorted_parent, parent, side="left")
        hi = np.searchsorted(self._sorted_parent, parent, side="right")
        kids = self._order[lo:hi]
        pa, pb = self._pos_a[kids], self._pos_b[kids]
        key = pa.copy()
        tie = np.zeros(len(kids), dtype=np.int64)
        in_b = np.flatnonzero(pb >= 0)
        if len(in_b) and (pa < 0).any():
            by_b = in_b[np.argsort(pb[in_b])]
            aligned = pa[by_b] >= 0
            last = np.maximum.accumulate(np.where(aligned, np.arange(len(by_b)), -1))
            only_b = ~aligned
            key[by_b[only_b]] = np.where(last[only_b] >= 0, pa[by_b[last[only_b]]], -1)
            tie[by_b[only_b]] = 1 + pb[by_b[only_b]]
        return kids[np.lexsort((tie, key))]

    def segments(self) -> list[SegmentInfo]:
        """Every (lane, step) that holds nodes, lane by lane in step order, with
        the changes in it (counted with numpy: a long run has tens of thousands)."""
        d = self.diff
        tops = np.flatnonzero(d.node_parent < 0)
        codes, first, inverse = np.unique(
            d.node_parent[tops], return_index=True, return_inverse=True
        )
        changes = np.bincount(
            inverse.reshape(-1), weights=self.changes_below[tops], minlength=len(codes)
        )
        lanes, segs = d.segments(tops[first])
        order = np.lexsort((segs, d.lane_rank[lanes])) if len(codes) else []
        return [
            SegmentInfo(int(codes[i]), d.lanes[lanes[i]], int(lanes[i]), int(segs[i]),
                        int(changes[i]))
            for i in order
        ]  # fmt: skip

    def segment_title(self, seg: SegmentInfo) -> str:
        """``step #2 (swa step, index 2)``, ``before the first step`` or ``all spans``."""
        d = self.diff
        info = d.step_info(seg.lane_id, seg.segment)
        if info is not None:
            index = "" if info["index"] is None else f", index {info['index']}"
            return f"step #{info['ordinal']} ({info['name']}{index})"
        return "before the first step" if seg.lane_id in d.step_lanes else "all spans"

    def change(self, node: int) -> str | None:
        """ "missing", "extra", "reordered" or None."""
        c = int(self.diff.change[node])
        return CHANGES[c - 1] if c else None

    def times(self, node: int) -> tuple[int | None, int | None]:
        """Inclusive ns of the node's span in A and in B (None where absent)."""
        d = self.diff
        ra, rb = int(d.row_a[node]), int(d.row_b[node])
        return (
            int(d.a.trace.dur_ns[ra]) if ra >= 0 else None,
            int(d.b.trace.dur_ns[rb]) if rb >= 0 else None,
        )

    @cached_property
    def changed(self) -> list[int]:
        """Reported nodes in reading order (as ``torchscope diff`` lists them)."""
        return changed_nodes(self.diff).tolist()

    def next_change(self, after: int | None = None) -> int | None:
        """The reported node after node ``after`` in reading order (wrapping round)."""
        nodes = self.changed
        if not nodes:
            return None
        if after is None or after not in nodes:
            return nodes[0]
        return nodes[(nodes.index(after) + 1) % len(nodes)]
